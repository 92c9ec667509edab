/**
 * Storage contract: shared rate-limit counters (src/storage/rate-counters.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type Store } from '../../src/storage/store.js'
import { id, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('rate counters', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('rate counters', () => {
    it('counts per aligned fixed window', async () => {
      const key = id('ip')
      const start = 1_750_000_020 // multiple of 60
      expect(await store.readCounter(key, 60, start)).toBe(0)
      expect(await store.incrementCounter(key, 60, start)).toBe(1)
      expect(await store.incrementCounter(key, 60, start + 59)).toBe(2)
      expect(await store.readCounter(key, 60, start + 30)).toBe(2)
      expect(await store.incrementCounter(key, 60, start + 60)).toBe(1)
      // Another window length is another counter.
      expect(await store.incrementCounter(key, 3600, start)).toBe(1)
    })

    it('loses no increments under concurrency', async () => {
      const key = id('ip')
      const counts = await Promise.all(
        Array.from({ length: 30 }, () => store.incrementCounter(key, 60, NOW)),
      )
      expect([...counts].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
    })
  })
})
