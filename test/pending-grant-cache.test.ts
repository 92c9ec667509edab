/**
 * Each PostgreSQL instance's cache of pending device grants (src/storage/pending-grant-cache.ts,
 * src/storage/postgres-listen.ts): polls of a code known to be pending read nothing, a status
 * change is forgotten on every instance when its notification arrives, and the whole cache goes
 * when the listening connection is lost. The cache alone always; on PostgreSQL with
 * DEVICEGATE_TEST_PG_URL (skipped loudly otherwise).
 */
import { randomBytes } from 'node:crypto'
import type pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { openStore } from '../src/storage/index.js'
import { PendingGrantCache } from '../src/storage/pending-grant-cache.js'
import type { Store } from '../src/storage/store.js'
import { freshPgSchema, withPgClient } from './support/pg-schema.js'
import { accessToken, deviceGrant, hash, id } from './support/store-fixtures.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('pending grant cache tests on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL')

describe('PendingGrantCache', () => {
  it('caches a pending record only while live, and not when its grant was forgotten after the ticket was taken', () => {
    const cache = new PendingGrantCache()
    const g = deviceGrant()
    cache.offer(cache.ticket(), g)
    expect(cache.get(g.id)).toBeUndefined()
    cache.start()
    const before = cache.ticket()
    cache.forget(g.id)
    cache.offer(before, g)
    expect(cache.get(g.id)).toBeUndefined()
    cache.offer(cache.ticket(), g)
    expect(cache.get(g.id)).toBe(g)
    const approved = deviceGrant({ status: 'approved' })
    cache.offer(cache.ticket(), approved)
    expect(cache.get(approved.id)).toBeUndefined()
  })

  it('still caches a read when only other grants were forgotten while it was in flight', () => {
    const cache = new PendingGrantCache()
    cache.start()
    const [a, b] = [deviceGrant(), deviceGrant()]
    const ticketA = cache.ticket()
    const ticketB = cache.ticket()
    cache.forget('some other grant')
    cache.forget(b.id)
    cache.forget('yet another grant')
    cache.offer(ticketA, a)
    cache.offer(ticketB, b)
    expect(cache.get(a.id)).toBe(a)
    expect(cache.get(b.id)).toBeUndefined()
    // A read of b begun after its forget is cached.
    cache.offer(cache.ticket(), b)
    expect(cache.get(b.id)).toBe(b)
  })

  it('refuses every read begun before a stop or a restart of listening, whatever was forgotten', () => {
    const cache = new PendingGrantCache()
    cache.start()
    const g = deviceGrant()
    const before = cache.ticket()
    cache.stop()
    cache.start()
    cache.offer(before, g)
    expect(cache.get(g.id)).toBeUndefined()
    const beforeRestart = cache.ticket()
    cache.start()
    cache.offer(beforeRestart, g)
    expect(cache.get(g.id)).toBeUndefined()
    cache.offer(cache.ticket(), g)
    expect(cache.get(g.id)).toBe(g)
  })

  it('remembers at most its maximum of forgotten ids, and then refuses the reads begun before those it let go', () => {
    const cache = new PendingGrantCache({ maxForgotten: 3 })
    cache.start()
    const [a, b] = [deviceGrant(), deviceGrant()]
    const early = cache.ticket()
    cache.forget(a.id)
    const late = cache.ticket()
    for (let i = 0; i < 1_000; i++) cache.forget(`other ${i}`)
    expect(cache.forgottenSize).toBe(3)
    // a's forget is no longer remembered: a read of a begun before it must still not be cached,
    // nor (unable to tell) any read begun before the forgets let go.
    cache.offer(early, a)
    expect(cache.get(a.id)).toBeUndefined()
    cache.offer(late, b)
    expect(cache.get(b.id)).toBeUndefined()
    const now = cache.ticket()
    cache.forget('one more')
    cache.offer(now, b)
    expect(cache.get(b.id)).toBe(b)
  })

  it('forgets a grant by id, and everything when stopped', () => {
    const cache = new PendingGrantCache()
    cache.start()
    const [a, b] = [deviceGrant(), deviceGrant()]
    cache.offer(cache.ticket(), a)
    cache.offer(cache.ticket(), b)
    cache.forget(a.id)
    expect(cache.get(a.id)).toBeUndefined()
    expect(cache.get(b.id)).toBe(b)
    cache.stop()
    expect(cache.size).toBe(0)
    expect(cache.ticket()).toBeUndefined()
  })

  it('serves a record no longer than its maximum age and keeps at most its maximum number, dropping the oldest', () => {
    let now = 1_000
    const cache = new PendingGrantCache({ maxEntries: 2, maxAgeMs: 100, clock: () => now })
    cache.start()
    const [a, b, c] = [deviceGrant(), deviceGrant(), deviceGrant()]
    for (const g of [a, b, c]) cache.offer(cache.ticket(), g)
    expect(cache.size).toBe(2)
    expect(cache.get(a.id)).toBeUndefined()
    expect(cache.get(c.id)).toBe(c)
    now += 100
    expect(cache.get(c.id)).toBeUndefined()
  })
})

/** Waits until `check` holds (notifications arrive asynchronously), at most `ms`. */
async function eventually(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe.skipIf(!PG_URL)('the pending device grant cache of several instances on PostgreSQL', () => {
  let schema: Awaited<ReturnType<typeof freshPgSchema>>
  let url = ''
  const application = `dg_cache_${randomBytes(4).toString('hex')}`
  const stores: Store[] = []
  /** A migrated store (an instance) with its own pool, listener and the cache returned with it. */
  const instance = async () => {
    const cache = new PendingGrantCache()
    const store = await openStore(url, { pendingGrantCache: cache })
    stores.push(store)
    await eventually(() => cache.live)
    return { store, cache }
  }
  const admin = <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => withPgClient(url, fn)

  beforeAll(async () => {
    schema = await freshPgSchema(PG_URL!, 'dg_cache')
    const u = new URL(schema.url)
    u.searchParams.set('application_name', application)
    url = u.toString()
  })
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close()
  })
  afterAll(async () => {
    await schema?.drop()
  })

  it('answers a pending code from the cache after the first read, and sees another instance approve it once notified; it is redeemed exactly once', async () => {
    const a = await instance()
    const b = await instance()
    const g = deviceGrant({ expiresAt: Math.floor(Date.now() / 1000) + 600 })
    await a.store.createDeviceGrant(g)
    expect((await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('pending')
    expect((await b.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('pending')
    expect(a.cache.get(g.id)?.id).toBe(g.id)
    expect(b.cache.get(g.id)?.id).toBe(g.id)
    // The cache is keyed by id: a key with the right id and another hash is still not found.
    expect(await a.store.findDeviceGrantByDeviceCodeHash(`${g.id}.${hash()}`)).toBeUndefined()
    expect(a.cache.get(g.id)?.id).toBe(g.id)

    const now = Math.floor(Date.now() / 1000)
    expect(await b.store.decideDeviceGrant(g.id, 'approved', 'alice', now)).toBe(true)
    // The deciding instance forgets at once; the other when the notification (sent on commit) arrives.
    expect((await b.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('approved')
    await eventually(() => a.cache.get(g.id) === undefined)
    expect(await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({ status: 'approved', subject: 'alice' })

    const bundle = (grantId: string) => ({
      grant: { id: grantId, clientId: 'cli', subject: 'alice', scope: 'openid', createdAt: now, revokedAt: null, deviceGrantId: g.id, expiresAt: now + 3600, dpopJkt: null },
      accessToken: accessToken(grantId, { issuedAt: now, expiresAt: now + 600 }),
    })
    const redeemed = await Promise.all([a.store.redeemDeviceGrant(g.id, now, bundle(id('g'))), b.store.redeemDeviceGrant(g.id, now, bundle(id('g')))])
    expect(redeemed.filter(Boolean)).toHaveLength(1)
  })

  it('serves a stale pending state while it is not told of a change, and drops the whole cache when its listening connection is lost', async () => {
    const a = await instance()
    const g = deviceGrant({ expiresAt: Math.floor(Date.now() / 1000) + 600 })
    await a.store.createDeviceGrant(g)
    expect((await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('pending')
    // A change the trigger does not announce (replica mode skips ordinary triggers): the cache cannot know.
    await admin((c) => c.query(`set session_replication_role = replica; update device_grants set status = 'denied' where id = '${g.id}'`))
    expect((await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('pending')

    const killed = await admin(async (c) => {
      const { rows } = await c.query(
        `select pg_terminate_backend(pid) as ok from pg_stat_activity
          where application_name = $1 and pid <> pg_backend_pid() and (query ilike 'listen %' or query ilike '%pg_trigger%')`,
        [application],
      )
      return rows.length
    })
    expect(killed).toBe(1)
    await eventually(() => !a.cache.live)
    expect(a.cache.size).toBe(0)
    expect((await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('denied')
    // It listens again (after about a second) and caches again.
    await eventually(() => a.cache.live)
  })

  it('caches nothing while the trigger that announces changes is disabled', async () => {
    const a = await instance()
    await admin((c) => c.query('alter table device_grants disable trigger device_grants_status_changed'))
    try {
      await eventually(() => !a.cache.live, 10_000)
      const g = deviceGrant({ expiresAt: Math.floor(Date.now() / 1000) + 600 })
      await a.store.createDeviceGrant(g)
      await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)
      expect(a.cache.size).toBe(0)
    } finally {
      await admin((c) => c.query('alter table device_grants enable trigger device_grants_status_changed'))
    }
  }, 15_000)
})

describe.skipIf(!PG_URL)('the pending device grant cache in a schema whose name holds a space', () => {
  const schema = `dg cache ${process.pid} ${randomBytes(4).toString('hex')}`
  const stores: Store[] = []
  const admin = (text: string) => withPgClient(PG_URL!, (c) => c.query(text))
  beforeAll(() => admin(`create schema "${schema}"`))
  afterAll(async () => {
    for (const s of stores.splice(0)) await s.close()
    await admin(`drop schema if exists "${schema}" cascade`)
  })

  it('forgets a grant another instance approved once notified (the notification names the schema, spaces and all)', async () => {
    const u = new URL(PG_URL!)
    // PostgreSQL's `options`: a space inside a value is escaped with a backslash.
    u.searchParams.set('options', `-c search_path="${schema.replaceAll(' ', '\\ ')}"`)
    const instance = async () => {
      const cache = new PendingGrantCache()
      const store = await openStore(u.toString(), { pendingGrantCache: cache })
      stores.push(store)
      await eventually(() => cache.live)
      return { store, cache }
    }
    const a = await instance()
    const b = await instance()
    const g = deviceGrant({ expiresAt: Math.floor(Date.now() / 1000) + 600 })
    await a.store.createDeviceGrant(g)
    expect((await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('pending')
    expect(a.cache.get(g.id)?.id).toBe(g.id)
    expect(await b.store.decideDeviceGrant(g.id, 'approved', 'alice', Math.floor(Date.now() / 1000))).toBe(true)
    await eventually(() => a.cache.get(g.id) === undefined)
    expect((await a.store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash))?.status).toBe('approved')
  })
})
