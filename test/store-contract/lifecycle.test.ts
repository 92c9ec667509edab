/**
 * Storage contract: migrations and purgeExpired (src/storage/store.ts `StoreLifecycle`), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { createPostgresStore } from '../../src/storage/postgres.js'
import { StoreUnavailableError, type Store } from '../../src/storage/store.js'
import { bundle, deviceGrant, hash, id, NOW } from '../support/store-fixtures.js'
import { approvedGrant, describeStoreContract, PG_URL } from '../support/store-contract.js'

describeStoreContract('schema and upkeep', (contract) => {
  const { adapter } = contract
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('migrations', () => {
    it('are idempotent: migrating an up-to-date database changes nothing', async () => {
      await store.migrate()
      const again = await adapter.open()
      await again.close()
    })
  })

  describe('purgeExpired', () => {
    it('deletes expired sessions, counters, jtis and old unredeemed device grants only', async () => {
      const later = NOW + 10 * 86_400
      const liveSession = { idHash: hash(), csrfToken: 'c', subject: null, authTime: null, createdAt: NOW, expiresAt: later + 1 }
      const deadSession = { ...liveSession, idHash: hash(), expiresAt: later }
      await store.createWebSession(liveSession)
      await store.createWebSession(deadSession)
      const key = id('ip')
      await store.incrementCounter(key, 60, later - 60)
      await store.incrementCounter(key, 60, later)
      const oldJti = id('jti')
      const liveJti = id('jti')
      await store.rememberDpopJti(oldJti, later, later - 60)
      await store.rememberDpopJti(liveJti, later + 60, later - 60)

      const stale = deviceGrant({ expiresAt: later - 86_400 - 1 })
      const recent = deviceGrant({ expiresAt: later - 60 })
      await store.createDeviceGrant(stale)
      await store.createDeviceGrant(recent)
      const redeemed = await approvedGrant(store, { expiresAt: NOW + 600 })
      expect(await store.redeemDeviceGrant(redeemed.id, NOW + 20, bundle())).toBe(true)

      await store.purgeExpired(later)

      expect(await store.findWebSession(liveSession.idHash, NOW)).toBeDefined()
      expect(await store.findWebSession(deadSession.idHash, NOW)).toBeUndefined()
      // Redis keeps counters itself, expiring each a window after its window ends (redis-ephemeral.ts), not at purge.
      if (adapter.ephemeral !== 'redis') expect(await store.readCounter(key, 60, later - 60)).toBe(0)
      expect(await store.readCounter(key, 60, later)).toBe(1)
      // Redis expires jtis itself, by their TTL (test/store-contract/ephemeral.test.ts), not at purge.
      if (adapter.ephemeral !== 'redis') expect(await store.rememberDpopJti(oldJti, later + 60, later)).toBe(true)
      expect(await store.rememberDpopJti(liveJti, later + 60, later)).toBe(false)
      expect(await store.findDeviceGrantByUserCode(stale.userCode)).toBeUndefined()
      expect(await store.findDeviceGrantByUserCode(recent.userCode)).toBeDefined()
      expect(await store.findDeviceGrantByUserCode(redeemed.userCode)).toBeDefined()
    })
  })
})

describe.runIf(Boolean(PG_URL))('postgres store availability', () => {
  it('reports an unreachable server as StoreUnavailableError', async () => {
    const store = await createPostgresStore('postgres://postgres@127.0.0.1:1/none', {
      connectionTimeoutMillis: 2_000,
    })
    try {
      await expect(store.findGrant('x')).rejects.toBeInstanceOf(StoreUnavailableError)
      await expect(store.migrate()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
    } finally {
      await store.close()
    }
  })
})
