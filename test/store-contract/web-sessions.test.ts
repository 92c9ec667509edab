/**
 * Storage contract: verification-page sessions (src/storage/web-sessions.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type Store } from '../../src/storage/store.js'
import { hash, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('web sessions', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('web sessions', () => {
    it('finds a session until it expires and forgets a deleted one', async () => {
      const s = {
        idHash: hash(),
        csrfToken: 'csrf',
        subject: 'alice',
        authTime: NOW,
        createdAt: NOW,
        expiresAt: NOW + 100,
      }
      await store.createWebSession(s)
      expect(await store.findWebSession(s.idHash, NOW + 99)).toEqual(s)
      expect(await store.findWebSession(s.idHash, NOW + 100)).toBeUndefined()
      await store.deleteWebSession(s.idHash)
      expect(await store.findWebSession(s.idHash, NOW)).toBeUndefined()
    })

    const session = (expiresAt: number) => ({ idHash: hash(), csrfToken: 'csrf', subject: 'alice', authTime: NOW, createdAt: NOW, expiresAt })

    it('extends a live session (sliding inactivity deadline) and never revives an expired one', async () => {
      const s = session(NOW + 100)
      await store.createWebSession(s)
      expect(await store.extendWebSession(s.idHash, NOW + 500, NOW + 50)).toBe(true)
      expect(await store.findWebSession(s.idHash, NOW + 499)).toMatchObject({ expiresAt: NOW + 500 })
      expect(await store.extendWebSession(s.idHash, NOW + 900, NOW + 500)).toBe(false)
      expect(await store.findWebSession(s.idHash, NOW + 500)).toBeUndefined()
      expect(await store.extendWebSession(hash(), NOW + 900, NOW)).toBe(false)
    })

    it('takes an expired session exactly once, and leaves a live one alone', async () => {
      const live = session(NOW + 100)
      const ended = session(NOW + 100)
      await store.createWebSession(live)
      await store.createWebSession(ended)
      expect(await store.takeExpiredWebSession(live.idHash, NOW + 99)).toBeUndefined()
      expect(await store.findWebSession(live.idHash, NOW + 99)).toEqual(live)
      const taken = await Promise.all([1, 2, 3].map(() => store.takeExpiredWebSession(ended.idHash, NOW + 100)))
      expect(taken.filter((t) => t !== undefined)).toEqual([ended])
      expect(await store.takeExpiredWebSession(ended.idHash, NOW + 100)).toBeUndefined()
      expect(await store.takeExpiredWebSession(hash(), NOW)).toBeUndefined()
    })
  })
})
