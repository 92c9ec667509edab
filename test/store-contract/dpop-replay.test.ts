/**
 * Storage contract: DPoP replay detection (src/storage/dpop-replay.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type Store } from '../../src/storage/store.js'
import { id, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('DPoP replay', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('DPoP replay cache (RFC 9449 §11.1)', () => {
    it('accepts a jti once and reports the replay', async () => {
      const jti = id('jti')
      expect(await store.rememberDpopJti(jti, NOW + 60, NOW)).toBe(true)
      expect(await store.rememberDpopJti(jti, NOW + 60, NOW)).toBe(false)
    })

    it('accepts exactly one of concurrent duplicates', async () => {
      const jti = id('jti')
      const results = await Promise.all(
        Array.from({ length: 20 }, () => store.rememberDpopJti(jti, NOW + 60, NOW)),
      )
      expect(results.filter(Boolean)).toHaveLength(1)
    })
  })
})
