/**
 * What the SQLite store does that PostgreSQL does not: poll times decided in memory and written
 * back (RFC 8628 §3.5 bookkeeping needs no per-poll write), and WAL checkpoints run by a worker
 * thread rather than inside a request's commit.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore, type Store } from '../src/storage/index.js'
import { POLL_WRITE_BACK_MS } from '../src/storage/poll-times.js'
import { CHECKPOINT_INTERVAL_MS, WAL_SIZE_LIMIT_BYTES } from '../src/storage/sqlite-checkpointer.js'
import { configureSqliteConnection } from '../src/storage/sqlite.js'
import { bundle, deviceGrant, NOW } from './support/store-fixtures.js'

let dir: string
let n = 0
const file = () => join(dir, `store-${n++}.db`)

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'devicegate-sqlite-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('SQLite poll times (RFC 8628 §3.5 slow_down bookkeeping in memory)', () => {
  it('reads see the grown interval at once, and a reopened store sees it from the row', async () => {
    const path = file()
    let store: Store = await openStore(`sqlite:${path}`)
    const g = deviceGrant()
    await store.createDeviceGrant(g)
    expect(await store.registerPoll(g.id, NOW)).toEqual({ tooFast: false, intervalSeconds: 5 })
    expect(await store.registerPoll(g.id, NOW + 1)).toEqual({ tooFast: true, intervalSeconds: 10 })
    expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({ intervalSeconds: 10, lastPolledAt: NOW + 1 })
    await store.close()
    store = await openStore(`sqlite:${path}`)
    expect(await store.findDeviceGrantByUserCode(g.userCode)).toMatchObject({ intervalSeconds: 10, lastPolledAt: NOW + 1 })
    // The grown interval still applies after the restart: 9 s after the last poll is too fast.
    expect(await store.registerPoll(g.id, NOW + 10)).toEqual({ tooFast: true, intervalSeconds: 15 })
    await store.close()
  })

  it('writes poll times back to the row within the write-back delay, without a close', async () => {
    const path = file()
    const store = await openStore(`sqlite:${path}`)
    const g = deviceGrant()
    await store.createDeviceGrant(g)
    await store.registerPoll(g.id, NOW)
    await store.registerPoll(g.id, NOW)
    await sleep(POLL_WRITE_BACK_MS + 300)
    const other = await openStore(`sqlite:${path}`) // another process's view: the row only
    expect(await other.findDeviceGrantByUserCode(g.userCode)).toMatchObject({ intervalSeconds: 10, lastPolledAt: NOW })
    await other.close()
    await store.close()
  })

  it('rejects a poll of an unknown device grant', async () => {
    const store = await openStore(`sqlite:${file()}`)
    await expect(store.registerPoll('dg_missing', NOW)).rejects.toThrow(/no device grant/)
    await store.close()
  })

  it('decides a poll after the lookup by device code from the row that lookup read, and never from a row older than its own decisions', async () => {
    const path = file()
    const store = await openStore(`sqlite:${path}`)
    const other = new Database(path)
    other.pragma('busy_timeout = 5000')
    try {
      const g = deviceGrant()
      await store.createDeviceGrant(g)
      // Another process polled this code at NOW with a grown interval (a restart, say).
      other.prepare('update device_grants set last_polled_at = ?, interval_seconds = 10 where id = ?').run(NOW, g.id)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({ lastPolledAt: NOW, intervalSeconds: 10 })
      // RFC 8628 §3.5: 9 s after the last poll with a 10 s interval is too fast.
      expect(await store.registerPoll(g.id, NOW + 9)).toEqual({ tooFast: true, intervalSeconds: 15 })
      // The row is older than this process's decision until written back: a later lookup must
      // not put that older state in place of the decision.
      other.prepare('update device_grants set last_polled_at = null, interval_seconds = 5 where id = ?').run(g.id)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({ lastPolledAt: NOW + 9, intervalSeconds: 15 })
      expect(await store.registerPoll(g.id, NOW + 10)).toEqual({ tooFast: true, intervalSeconds: 20 })
    } finally {
      other.close()
      await store.close()
    }
  })
})

describe('SQLite WAL checkpoints (off the request path)', () => {
  it('copies committed pages into the database file while the store is open', async () => {
    const path = file()
    const store = await openStore(`sqlite:${path}`)
    const before = (await stat(path)).size
    for (let i = 0; i < 2_000; i++) await store.createDeviceGrant(deviceGrant())
    await sleep(CHECKPOINT_INTERVAL_MS * 4)
    // The request connection never checkpoints (wal_autocheckpoint = 0); only the worker can
    // have grown the main file.
    expect((await stat(path)).size).toBeGreaterThan(before + 100_000)
    await store.close()
    // Closing the last connection copies the rest back and removes the WAL.
    expect((await stat(`${path}-wal`).catch(() => ({ size: 0 }))).size).toBe(0)
  })

  it('starts the WAL over under a steady stream of commits instead of letting it grow', async () => {
    const path = file()
    const store = await openStore(`sqlite:${path}`)
    // One commit per write, never a quiet moment: ~8 pages per commit, well over 100 MB of WAL
    // frames in all if the WAL never started over.
    const until = Date.now() + 3_000
    while (Date.now() < until) await store.createDeviceGrant(deviceGrant())
    // Without the reset it passes 1 GB here; with it, one worker tick's worth of frames over the
    // reset size (ticks come later on a busy machine, hence the margin).
    const wal = (await stat(`${path}-wal`)).size
    expect(wal).toBeLessThanOrEqual(2 * WAL_SIZE_LIMIT_BYTES)
    await store.close()
  })
})

describe('SQLite hot reads (prepared statements, rows read as arrays)', () => {
  it('return the same records as the Kysely path: every column, with its value, null or number', async () => {
    const store = await openStore(`sqlite:${file()}`)
    try {
      const full = deviceGrant({
        status: 'approved',
        subject: 'alice',
        decidedAt: NOW + 3,
        lastPolledAt: NOW + 1,
        intervalSeconds: 10,
        dpopJkt: 'jkt-1',
        requestUserAgent: 'curl/8 "quoted" \\ ü',
        resources: ['https://api.example/', 'https://other.example/'],
      })
      const sparse = deviceGrant({ requestUserAgent: null })
      for (const g of [full, sparse]) {
        await store.createDeviceGrant(g)
        const hot = await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash) // direct executor
        expect(hot).toEqual(await store.findDeviceGrantByUserCode(g.userCode)) // Kysely's driver
        expect(hot).toEqual(g)
      }
      expect(await store.findDeviceGrantByDeviceCodeHash('0'.repeat(64))).toBeUndefined()
    } finally {
      await store.close()
    }
  })
})

describe('SQLite group commit (writes of one event-loop turn share one commit)', () => {
  it('resolves a write only once it is committed: another connection sees it at once', async () => {
    const path = file()
    const store = await openStore(`sqlite:${path}`)
    const other = await openStore(`sqlite:${path}`)
    const grants = Array.from({ length: 40 }, () => deviceGrant())
    await Promise.all(grants.map((g) => store.createDeviceGrant(g)))
    for (const g of [grants[0]!, grants[39]!]) expect(await other.findDeviceGrantByUserCode(g.userCode)).toMatchObject({ id: g.id })
    await other.close()
    await store.close()
  })

  it('fails a conflicting write alone; the others of its batch are kept', async () => {
    const store = await openStore(`sqlite:${file()}`)
    const first = deviceGrant()
    const clash = { ...deviceGrant(), userCode: first.userCode }
    const last = deviceGrant()
    const results = await Promise.allSettled([first, clash, last].map((g) => store.createDeviceGrant(g)))
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((results[1] as PromiseRejectedResult).reason.name).toBe('StoreConflictError')
    expect(await store.findDeviceGrantByUserCode(first.userCode)).toMatchObject({ id: first.id })
    expect(await store.findDeviceGrantByDeviceCodeHash(last.deviceCodeHash)).toMatchObject({ id: last.id })
    expect(await store.findDeviceGrantByDeviceCodeHash(clash.deviceCodeHash)).toBeUndefined()
    await store.close()
  })

  it('runs an explicit transaction inside the batch: joined when it succeeds, undone alone when it fails', async () => {
    const store = await openStore(`sqlite:${file()}`)
    const g = deviceGrant()
    await store.createDeviceGrant(g)
    await store.decideDeviceGrant(g.id, 'approved', 'alice', NOW)
    const taken = bundle()
    await store.issueTokens(taken)
    // The redemption updates the device grant, then hits a taken access-token hash: its whole
    // transaction must be undone (the device grant stays approved) while the insert of the same
    // turn is kept, and the audit append (another explicit transaction) commits with them.
    const fresh = bundle()
    const clash = { ...fresh, accessToken: { ...fresh.accessToken, tokenHash: taken.accessToken.tokenHash } }
    const other = deviceGrant()
    const [redeemed, created, audited] = await Promise.allSettled([
      store.redeemDeviceGrant(g.id, NOW, clash),
      store.createDeviceGrant(other),
      store.appendAuditEvents([{ time: NOW, type: 'test.event', actor: null, clientId: null, subject: null, ip: null, grantId: null, details: '{}' }], () => 'f'.repeat(64)),
    ])
    expect(redeemed.status).toBe('rejected')
    expect((redeemed as PromiseRejectedResult).reason.name).toBe('StoreConflictError')
    expect([created.status, audited.status]).toEqual(['fulfilled', 'fulfilled'])
    expect(await store.findDeviceGrantByUserCode(g.userCode)).toMatchObject({ status: 'approved', grantId: null })
    expect(await store.findDeviceGrantByUserCode(other.userCode)).toMatchObject({ id: other.id })
    // And the same redemption with fresh tokens succeeds.
    expect(await store.redeemDeviceGrant(g.id, NOW, bundle())).toBe(true)
    expect(await store.findDeviceGrantByUserCode(g.userCode)).toMatchObject({ status: 'redeemed' })
    await store.close()
  })
})

describe('SQLite shared read transaction (hot reads of one event-loop turn share one snapshot)', () => {
  const insertSql = `insert into device_grants (id, device_code_hash, user_code, client_id, scope, status, created_at, expires_at, interval_seconds, request_ip) values (?, ?, ?, 'cli', 'openid', 'pending', ${NOW}, ${NOW + 600}, 5, '127.0.0.1')`

  it('a write after a hot read of the same turn succeeds although another process committed in between (no SQLITE_BUSY_SNAPSHOT)', async () => {
    const path = file()
    const store = await openStore(`sqlite:${path}`)
    const known = deviceGrant()
    await store.createDeviceGrant(known)
    const other = new Database(path)
    other.pragma('busy_timeout = 5000')
    try {
      // All in one turn: the read opens the turn's read snapshot, another connection commits,
      // then this store writes.
      const read = store.findDeviceGrantByDeviceCodeHash(known.deviceCodeHash)
      const foreign = deviceGrant()
      other.prepare(insertSql).run(foreign.id, foreign.deviceCodeHash, foreign.userCode)
      const mine = deviceGrant()
      const written = store.createDeviceGrant(mine)
      expect(await read).toMatchObject({ id: known.id })
      await expect(written).resolves.toBeUndefined()
      expect(other.prepare('select id from device_grants where id = ?').pluck().get(mine.id)).toBe(mine.id)
      expect(await store.findDeviceGrantByDeviceCodeHash(foreign.deviceCodeHash)).toMatchObject({ id: foreign.id })
    } finally {
      other.close()
      await store.close()
    }
  })

  it("a hot read of a later turn sees another process's commit (the snapshot ends with the turn)", async () => {
    const path = file()
    const store = await openStore(`sqlite:${path}`)
    const other = new Database(path)
    other.pragma('busy_timeout = 5000')
    try {
      const foreign = deviceGrant()
      expect(await store.findDeviceGrantByDeviceCodeHash(foreign.deviceCodeHash)).toBeUndefined()
      // Another process commits while this turn's read snapshot may still be open.
      other.prepare(insertSql).run(foreign.id, foreign.deviceCodeHash, foreign.userCode)
      await new Promise((r) => setImmediate(r))
      expect(await store.findDeviceGrantByDeviceCodeHash(foreign.deviceCodeHash)).toMatchObject({ id: foreign.id, status: 'pending' })
    } finally {
      other.close()
      await store.close()
    }
  })
})

describe('SQLite connection settings (durability of the serving connection, files shared with the CLI)', () => {
  it('sets WAL with synchronous=NORMAL, a 5 s busy timeout, foreign keys, in-memory statement journals, and leaves checkpoints to the worker', () => {
    const database = new Database(file())
    configureSqliteConnection(database, database.name)
    const value = (name: string) => database.pragma(name, { simple: true })
    expect(value('journal_mode')).toBe('wal')
    expect(value('synchronous')).toBe(1) // NORMAL
    expect(value('busy_timeout')).toBe(5_000)
    expect(value('foreign_keys')).toBe(1)
    expect(value('temp_store')).toBe(2) // MEMORY
    expect(value('journal_size_limit')).toBe(WAL_SIZE_LIMIT_BYTES)
    expect(value('wal_autocheckpoint')).toBe(0)
    // Other processes (the CLI) must still open the file.
    expect(value('locking_mode')).toBe('normal')
    database.close()
  })
})
