/**
 * Storage contract: sliding-window rate limits (src/storage/rate-slots.ts), on every adapter
 * (test/support/store-contract.ts). The user-code entry limiter (RFC 8628 §5.1) relies on these.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type Store } from '../../src/storage/store.js'
import { id, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('rate slots', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('sliding window', () => {
    it('allows `limit` takes in any span of the window, across a clock-aligned boundary', async () => {
      const key = id('src')
      const aligned = Math.ceil(NOW / 600) * 600
      // Five takes just before an aligned boundary …
      for (let i = 0; i < 5; i++) expect(await store.takeRateSlot(key, 5, 600, aligned - 1)).toMatchObject({ taken: true, used: i + 1 })
      // … and none just after it: the window slides with the takes, it is not reset at the boundary.
      expect(await store.takeRateSlot(key, 5, 600, aligned + 1)).toEqual({ taken: false, retryAfterSeconds: 598 })
      expect(await store.readRateSlots(key, 5, 600, aligned + 1)).toEqual({ used: 5, retryAfterSeconds: 598 })
      // A whole window after the first take, one slot frees.
      expect(await store.takeRateSlot(key, 5, 600, aligned - 1 + 600)).toMatchObject({ taken: true })
    })

    it('gives a released slot back, and a release after the slot was taken again changes nothing', async () => {
      const key = id('src')
      const first = await store.takeRateSlot(key, 2, 600, NOW)
      const second = await store.takeRateSlot(key, 2, 600, NOW)
      expect(first.taken && second.taken).toBe(true)
      expect((await store.takeRateSlot(key, 2, 600, NOW)).taken).toBe(false)
      if (!first.taken) return
      await store.releaseRateSlot(key, first.slot, NOW)
      expect(await store.readRateSlots(key, 2, 600, NOW)).toEqual({ used: 1, retryAfterSeconds: undefined })
      const again = await store.takeRateSlot(key, 2, 600, NOW + 5)
      expect(again).toMatchObject({ taken: true, slot: first.slot })
      await store.releaseRateSlot(key, first.slot, NOW) // stale: taken again at NOW + 5
      expect((await store.readRateSlots(key, 2, 600, NOW + 5)).used).toBe(2)
    })

    it('takes exactly `limit` slots under 30 concurrent takes (one conditional update each)', async () => {
      const key = id('src')
      const results = await Promise.all(Array.from({ length: 30 }, () => store.takeRateSlot(key, 5, 600, NOW)))
      expect(results.filter((r) => r.taken)).toHaveLength(5)
      expect(new Set(results.flatMap((r) => (r.taken ? [r.slot] : []))).size).toBe(5)
    })

    it('holds across instances sharing the database', async () => {
      if (!contract.adapter.multiInstance) return
      const other = await contract.adapter.open()
      try {
        const key = id('src')
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? store : other).takeRateSlot(key, 5, 600, NOW)),
        )
        expect(results.filter((r) => r.taken)).toHaveLength(5)
      } finally {
        await other.close()
      }
    })

    it('keeps its slots across a purge (only rows free at every window are deleted)', async () => {
      const key = id('src')
      for (let i = 0; i < 3; i++) await store.takeRateSlot(key, 3, 600, NOW)
      await store.purgeExpired(NOW + 10)
      expect((await store.takeRateSlot(key, 3, 600, NOW + 10)).taken).toBe(false)
      await store.purgeExpired(NOW + 86_400)
      expect(await store.readRateSlots(key, 3, 600, NOW + 86_400)).toEqual({ used: 0, retryAfterSeconds: undefined })
    })

    it('refuses a non-positive limit or window as a programming error', async () => {
      await expect(store.takeRateSlot(id('k'), 0, 600, NOW)).rejects.toBeInstanceOf(TypeError)
      await expect(store.readRateSlots(id('k'), 5, 0, NOW)).rejects.toBeInstanceOf(TypeError)
    })
  })
})
