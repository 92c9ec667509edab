/**
 * Storage contract: declared token storage per device authorization (src/storage/storage-classes.ts),
 * on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { StoreConflictError, type Store } from '../../src/storage/store.js'
import { describeStoreContract } from '../support/store-contract.js'
import { deviceGrant, id, NOW } from '../support/store-fixtures.js'

describeStoreContract('storage classes', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('declarations kept with the grant', () => {
    it('declares once per device grant, re-declares only a different class, finds and counts', async () => {
      const a = id('dg')
      const b = id('dg')
      const client = id('client')
      await store.declareStorageClass({ deviceGrantId: a, clientId: client, storageClass: 'keyring', declaredAt: NOW })
      await store.declareStorageClass({ deviceGrantId: a, clientId: client, storageClass: 'plaintext', declaredAt: NOW })
      await store.declareStorageClass({ deviceGrantId: b, clientId: client, storageClass: 'unknown', declaredAt: NOW + 10 })
      expect(await store.findStorageClass(a)).toEqual({ deviceGrantId: a, clientId: client, storageClass: 'keyring', declaredAt: NOW, redeclaredAt: null })
      expect(await store.redeclareStorageClass(a, 'keyring', NOW + 5)).toBe(false)
      expect(await store.redeclareStorageClass(a, 'encrypted_file', NOW + 5)).toBe(true)
      expect(await store.findStorageClass(a)).toMatchObject({ storageClass: 'encrypted_file', redeclaredAt: NOW + 5 })
      expect(await store.redeclareStorageClass(id('none'), 'memory', NOW)).toBe(false)
      const many = await store.findStorageClasses([a, b, id('missing')])
      expect([...many.keys()].sort()).toEqual([a, b].sort())
      expect(await store.countStorageClasses({ since: NOW, clientId: client })).toEqual({ keyring: 0, memory: 0, encrypted_file: 1, plaintext: 0, unknown: 1 })
      expect(await store.countStorageClasses({ since: NOW + 1, clientId: client })).toMatchObject({ encrypted_file: 0, unknown: 1 })
      expect(await store.listStorageClassClients(NOW)).toContain(client)
    })

    it('createDeviceGrant with a storage class records the declaration with the grant; a user-code clash writes neither', async () => {
      const g = deviceGrant()
      await store.createDeviceGrant(g, 'keyring')
      expect(await store.findStorageClass(g.id)).toEqual({ deviceGrantId: g.id, clientId: g.clientId, storageClass: 'keyring', declaredAt: g.createdAt, redeclaredAt: null })
      const clash = deviceGrant({ userCode: g.userCode })
      await expect(store.createDeviceGrant(clash, 'plaintext')).rejects.toBeInstanceOf(StoreConflictError)
      expect(await store.findStorageClass(clash.id)).toBeUndefined()
      const plain = deviceGrant()
      await store.createDeviceGrant(plain)
      expect(await store.findStorageClass(plain.id)).toBeUndefined()
    })
  })
})
