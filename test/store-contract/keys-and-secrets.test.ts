/**
 * Storage contract: signing keys and server secrets (src/storage/keys-and-secrets.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { StoreConflictError, type Store } from '../../src/storage/store.js'
import { id, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('keys and secrets', (contract) => {
  const { adapter } = contract
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('signing keys', () => {
    it('inserts, lists newest first, rejects a duplicate kid and retires', async () => {
      const key = (kid: string, createdAt: number) => ({
        kid,
        alg: 'ES256',
        publicJwk: '{"kty":"EC"}',
        privateJwk: '{"kty":"EC","d":"x"}',
        createdAt,
        retiredAt: null,
        publishUntil: null,
      })
      const older = key(id('kid'), NOW)
      const newer = key(id('kid'), NOW + 10)
      await store.insertSigningKey(older)
      await store.insertSigningKey(newer)
      await expect(store.insertSigningKey(older)).rejects.toBeInstanceOf(StoreConflictError)
      await store.retireSigningKey(older.kid, NOW + 20, NOW + 3620)
      const keys = (await store.listSigningKeys()).filter((k) =>
        [older.kid, newer.kid].includes(k.kid),
      )
      expect(keys).toEqual([newer, { ...older, retiredAt: NOW + 20, publishUntil: NOW + 3620 }])
    })

    it('replaces a private key only while it still holds the expected value (compare-and-set)', async () => {
      const kid = id('kid')
      await store.insertSigningKey({ kid, alg: 'ES256', publicJwk: '{}', privateJwk: 'plain', createdAt: NOW, retiredAt: null, publishUntil: null })
      expect(await store.replaceSigningKeyPrivateJwk(kid, 'plain', 'sealed-1')).toBe(true)
      expect(await store.replaceSigningKeyPrivateJwk(kid, 'plain', 'sealed-2')).toBe(false)
      expect(await store.replaceSigningKeyPrivateJwk(id('kid'), 'plain', 'x')).toBe(false)
      expect((await store.listSigningKeys()).find((k) => k.kid === kid)!.privateJwk).toBe('sealed-1')
    })
  })

  describe('server secrets', () => {
    it('keeps the first value stored under a name; later candidates are ignored', async () => {
      const name = id('secret')
      expect(await store.ensureServerSecret(name, 'first', NOW)).toBe('first')
      expect(await store.ensureServerSecret(name, 'second', NOW + 1)).toBe('first')
    })

    it.runIf(adapter.multiInstance)('agrees on one value when instances race', async () => {
      const other = await adapter.open()
      try {
        const name = id('secret')
        const values = await Promise.all(
          Array.from({ length: 10 }, (_, i) => (i % 2 ? store : other).ensureServerSecret(name, `v${i}`, NOW)),
        )
        expect(new Set(values).size).toBe(1)
      } finally {
        await other.close()
      }
    })
  })
})
