/**
 * Storage contract: the ephemeral state of several instances (src/storage/ephemeral.ts) — RFC 8628
 * §3.5 poll times and RFC 9449 §11.1 DPoP jtis off the durable commit path — on PostgreSQL with
 * UNLOGGED tables and on PostgreSQL + Redis (test/support/store-contract.ts). SQLite keeps poll
 * times in its one process (test/sqlite-store.test.ts), so these cases skip there.
 */
import { Redis } from 'ioredis'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresStore } from '../../src/storage/postgres.js'
import { StoreUnavailableError, type Store } from '../../src/storage/store.js'
import { deviceGrant, id, NOW } from '../support/store-fixtures.js'
import { describeStoreContract, REDIS_URL } from '../support/store-contract.js'
import { withPgClient } from '../support/pg-schema.js'

describeStoreContract('ephemeral state of several instances', (contract) => {
  let store: Store
  const others: Store[] = []
  beforeAll(() => {
    store = contract.store
  })
  afterEach(async () => {
    for (const s of others.splice(0)) await s.close()
  })
  /** Another instance on the same database (and Redis): its own pool, its own poll write-back. */
  const anotherInstance = async () => {
    const s = await contract.adapter.open()
    others.push(s)
    return s
  }
  const shared = contract.adapter.ephemeral !== undefined
  /** The physical version of a device grant row (`xmin`, `ctid`): changes with every UPDATE that writes it. */
  const rowVersion = (id: string): Promise<string> =>
    withPgClient(contract.adapter.url(), async (c) => {
      const { rows } = await c.query<{ v: string }>('select xmin::text || ctid::text as v from device_grants where id = $1', [id])
      return rows[0]!.v
    })

  describe.runIf(shared)('RFC 8628 §3.5 poll times across instances', () => {
    it('decides a poll on one instance against the previous poll made on another', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      const b = await anotherInstance()
      expect(await store.registerPoll(g.id, NOW)).toEqual({ tooFast: false, intervalSeconds: 5 })
      expect(await b.registerPoll(g.id, NOW + 1)).toEqual({ tooFast: true, intervalSeconds: 10 })
      expect(await store.registerPoll(g.id, NOW + 5)).toEqual({ tooFast: true, intervalSeconds: 15 })
      expect(await b.registerPoll(g.id, NOW + 20)).toEqual({ tooFast: false, intervalSeconds: 15 })
    })

    it('counts exactly one on-time poll among 20 concurrent polls on two instances', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      const b = await anotherInstance()
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? b : store).registerPoll(g.id, NOW)))
      expect(results.filter((r) => !r.tooFast)).toHaveLength(1)
      expect(Math.max(...results.map((r) => r.intervalSeconds))).toBe(5 + 19 * 5)
    })

    it('writes the decided poll state back to the device grant row (seen by every instance)', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      const b = await anotherInstance()
      await b.registerPoll(g.id, NOW)
      await b.registerPoll(g.id, NOW + 1)
      await b.close() // flushes its write-back
      others.splice(others.indexOf(b), 1)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({ lastPolledAt: NOW + 1, intervalSeconds: 10 })
    })

    it('keeps the newest poll state in the row when instances write back out of order', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      const early = await anotherInstance()
      const late = await anotherInstance()
      await early.registerPoll(g.id, NOW)
      expect(await late.registerPoll(g.id, NOW + 1)).toEqual({ tooFast: true, intervalSeconds: 10 })
      await late.close()
      await early.close() // writes (NOW, 5) after (NOW + 1, 10): must not move the row back
      others.splice(0)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({ lastPolledAt: NOW + 1, intervalSeconds: 10 })
    })

    it('does not rewrite a row that already holds a state as new as the one written back (no new row version)', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      const early = await anotherInstance()
      const late = await anotherInstance()
      await early.registerPoll(g.id, NOW)
      await late.registerPoll(g.id, NOW + 1)
      await late.close()
      const version = await rowVersion(g.id)
      await early.close() // (NOW, 5) is older than the row's (NOW + 1, 10): nothing to write
      others.splice(0)
      expect(await rowVersion(g.id)).toBe(version)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({ lastPolledAt: NOW + 1, intervalSeconds: 10 })
    })

    it('after the ephemeral state is lost, resumes from the written-back row (at most the last second is forgotten)', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      const b = await anotherInstance()
      await b.registerPoll(g.id, NOW)
      await b.registerPoll(g.id, NOW + 1)
      await b.close()
      others.splice(0)
      await contract.adapter.loseEphemeral!()
      // Row: last poll NOW + 1, interval 10. NOW + 5 is too fast against it.
      expect(await store.registerPoll(g.id, NOW + 5)).toEqual({ tooFast: true, intervalSeconds: 15 })
    })

    it('refuses a poll of an unknown device grant', async () => {
      await expect(store.registerPoll(id('dg'), NOW)).rejects.toThrow(/no device grant/)
    })
  })

  describe.runIf(shared)('RFC 9449 §11.1 DPoP jti replay across instances', () => {
    it('reports a jti remembered on one instance as a replay on another', async () => {
      const b = await anotherInstance()
      const jti = id('jti')
      expect(await store.rememberDpopJti(jti, NOW + 65, NOW)).toBe(true)
      expect(await b.rememberDpopJti(jti, NOW + 65, NOW + 1)).toBe(false)
    })

    it('accepts exactly one of 20 concurrent duplicates on two instances', async () => {
      const b = await anotherInstance()
      const jti = id('jti')
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? b : store).rememberDpopJti(jti, NOW + 65, NOW)))
      expect(results.filter(Boolean)).toHaveLength(1)
    })

    it('forgets jtis when the ephemeral state is lost (the documented replay window)', async () => {
      const jti = id('jti')
      expect(await store.rememberDpopJti(jti, NOW + 65, NOW)).toBe(true)
      await contract.adapter.loseEphemeral!()
      expect(await store.rememberDpopJti(jti, NOW + 65, NOW + 1)).toBe(true)
    })
  })

  describe.runIf(contract.adapter.ephemeral === 'redis')('Redis keys', () => {
    it('expires a jti entry when its proof is no longer accepted (TTL from the injected clock)', async () => {
      const jti = id('jti')
      await store.rememberDpopJti(jti, NOW + 65, NOW)
      const redis = new Redis(REDIS_URL!)
      try {
        const ttl = await redis.ttl(`${contract.adapter.redisKeyPrefix}jti:${jti}`)
        expect(ttl).toBeGreaterThan(60)
        expect(ttl).toBeLessThanOrEqual(65)
      } finally {
        redis.disconnect()
      }
    })

    it('expires a poll entry 15 minutes after the last poll', async () => {
      const g = deviceGrant()
      await store.createDeviceGrant(g)
      await store.registerPoll(g.id, NOW)
      const redis = new Redis(REDIS_URL!)
      try {
        const ttl = await redis.ttl(`${contract.adapter.redisKeyPrefix}poll:${g.id}`)
        expect(ttl).toBeGreaterThan(890)
        expect(ttl).toBeLessThanOrEqual(900)
      } finally {
        redis.disconnect()
      }
    })

    it('keeps a rate-limit counter in Redis, expiring one window after its window ends', async () => {
      const key = id('ip')
      const start = 1_750_000_020 // multiple of 60
      expect(await store.incrementCounter(key, 60, start + 10)).toBe(1)
      expect(await store.incrementCounter(key, 60, start + 20)).toBe(2)
      const redis = new Redis(REDIS_URL!)
      try {
        expect(await redis.get(`${contract.adapter.redisKeyPrefix}rc:60:${start}:${key}`)).toBe('2')
        const ttl = await redis.ttl(`${contract.adapter.redisKeyPrefix}rc:60:${start}:${key}`)
        expect(ttl).toBeGreaterThan(100)
        expect(ttl).toBeLessThanOrEqual(110) // 2 × 60 − 10: set on the window's first hit
      } finally {
        redis.disconnect()
      }
    })
  })
})

describe('ephemeral state on Redis that cannot be reached', () => {
  it('fails a poll and a DPoP check with StoreUnavailableError (503), not a crash or a hang', async () => {
    // Neither database is reached: the Redis command fails first (the store connects lazily).
    const store = await createPostgresStore('postgres://postgres@127.0.0.1:1/none', {
      ephemeral: { kind: 'redis', url: 'redis://127.0.0.1:1', keyPrefix: 'dg_unreachable:' },
    })
    try {
      await expect(store.registerPoll(id('dg'), NOW)).rejects.toBeInstanceOf(StoreUnavailableError)
      await expect(store.rememberDpopJti(id('jti'), NOW + 65, NOW)).rejects.toBeInstanceOf(StoreUnavailableError)
    } finally {
      await store.close()
    }
  })
})
