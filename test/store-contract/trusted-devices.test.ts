/**
 * Storage contract: the trusted device registry (src/storage/trusted-devices.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { StoreConflictError, type DeviceRecord, type Store } from '../../src/storage/store.js'
import { bundle, id, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('trusted devices', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('trusted device registry', () => {
    const device = (over: Partial<DeviceRecord> = {}): DeviceRecord => ({
      jkt: id('jkt'),
      label: 'laptop',
      registeredAt: NOW,
      registeredBy: 'admin',
      retiredAt: null,
      ...over,
    })

    it('registers, finds, labels, lists newest first and refuses a duplicate jkt', async () => {
      const a = device({ registeredAt: NOW - 10 })
      const b = device()
      await store.registerDevice(a)
      await store.registerDevice(b)
      await expect(store.registerDevice({ ...a, label: 'again' })).rejects.toBeInstanceOf(StoreConflictError)
      expect(await store.findDevice(a.jkt)).toEqual(a)
      expect(await store.findDevice('unknown')).toBeUndefined()
      expect(await store.labelDevice(a.jkt, 'build agent')).toBe(true)
      expect(await store.labelDevice('unknown', 'x')).toBe(false)
      expect((await store.findDevice(a.jkt))?.label).toBe('build agent')
      const listed = (await store.listDevices()).map((d) => d.jkt)
      expect(listed.indexOf(b.jkt)).toBeLessThan(listed.indexOf(a.jkt))
    })

    it('retires once', async () => {
      const d = device()
      await store.registerDevice(d)
      expect(await store.retireDevice(d.jkt, NOW + 5)).toBe(true)
      expect(await store.retireDevice(d.jkt, NOW + 6)).toBe(false)
      expect((await store.findDevice(d.jkt))?.retiredAt).toBe(NOW + 5)
    })

    it('lists and revokes the families and tokens bound to a key, and only those', async () => {
      const jkt = id('jkt')
      const bound = bundle()
      bound.grant.dpopJkt = jkt
      bound.accessToken.dpopJkt = jkt
      bound.refreshToken!.dpopJkt = jkt
      // A bearer family whose later access token was bound (refresh with a proof).
      const mixed = bundle()
      mixed.accessToken.dpopJkt = jkt
      const other = bundle()
      other.grant.dpopJkt = id('jkt')
      for (const b of [bound, mixed, other]) await store.issueTokens(b)

      expect((await store.listGrantsByDpopJkt(jkt)).map((g) => g.id)).toEqual([bound.grant.id])
      expect(await store.revokeGrantsByDpopJkt(jkt, NOW + 10)).toBe(1)
      expect(await store.revokeGrantsByDpopJkt(jkt, NOW + 11)).toBe(0)
      expect((await store.findGrant(bound.grant.id))?.revokedAt).toBe(NOW + 10)
      expect((await store.findAccessTokenByHash(mixed.accessToken.tokenHash))?.revokedAt).toBe(NOW + 10)
      expect((await store.findRefreshTokenByHash(bound.refreshToken!.tokenHash))?.revokedAt).toBe(NOW + 10)
      expect((await store.findGrant(mixed.grant.id))?.revokedAt).toBeNull()
      expect((await store.findGrant(other.grant.id))?.revokedAt).toBeNull()
    })
  })
})
