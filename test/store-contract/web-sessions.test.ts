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
  })
})
