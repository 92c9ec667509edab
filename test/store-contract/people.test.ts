/**
 * Storage contract: the identity domain (src/storage/people.ts) — people keyed by upstream
 * (iss, sub), optimistic versions, groups and memberships, single-use upstream sign-in states,
 * once-only SET jtis — on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { newPerson } from '../../src/identity/people.js'
import { StoreConflictError, type Store } from '../../src/storage/store.js'
import { describeStoreContract } from '../support/store-contract.js'

const NOW = 1_800_000_000

describeStoreContract('people (identity)', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })
  describe('people, groups, upstream sign-ins, received SETs', () => {

    it('keys people by (upstream issuer, sub): a second person with the same pair is a conflict', async () => {
      const people = store
      await people.insertPerson(newPerson('p1', NOW, { userName: 'ann', source: 'provider', upstreamIssuer: 'https://idp', upstreamSub: 's-1', groups: ['eng'] }))
      await expect(people.insertPerson(newPerson('p2', NOW, { userName: 'ann2', source: 'provider', upstreamIssuer: 'https://idp', upstreamSub: 's-1' }))).rejects.toBeInstanceOf(
        StoreConflictError,
      )
      expect((await people.findPersonByUpstream('https://idp', 's-1'))?.groups).toEqual(['eng'])
    })

    it('updates a person only at the expected version (optimistic concurrency)', async () => {
      const people = store
      const p = (await people.findPerson('p1'))!
      expect(await people.updatePerson({ ...p, displayName: 'Ann', version: 2 }, 1)).toBe(true)
      expect(await people.updatePerson({ ...p, displayName: 'Lost', version: 2 }, 1)).toBe(false)
      expect((await people.findPerson('p1'))?.displayName).toBe('Ann')
    })

    it('stores groups with members and lists memberships by person', async () => {
      const people = store
      await people.insertGroup({ id: 'g1', displayName: 'admins', externalId: null, members: ['p1'], version: 1, createdAt: NOW, updatedAt: NOW })
      expect((await people.listMemberships()).get('p1')).toEqual(['admins'])
      expect(await people.updateGroup({ id: 'g1', displayName: 'admins', externalId: 'x', members: [], version: 2, createdAt: NOW, updatedAt: NOW }, 1)).toBe(true)
      expect((await people.listMemberships()).get('p1')).toBeUndefined()
      await expect(people.insertGroup({ id: 'g2', displayName: 'admins', externalId: null, members: [], version: 1, createdAt: NOW, updatedAt: NOW })).rejects.toBeInstanceOf(StoreConflictError)
    })

    it('hands out an upstream sign-in state once, and never after it expired', async () => {
      const people = store
      const login = { stateHash: 'h1', provider: 'okta', nonce: 'n', codeVerifier: 'v', returnTo: '/device', stepUp: true, createdAt: NOW, expiresAt: NOW + 600 }
      await people.createUpstreamLogin(login)
      expect(await people.takeUpstreamLogin('h1', NOW + 1)).toEqual(login)
      expect(await people.takeUpstreamLogin('h1', NOW + 1)).toBeUndefined()
      await people.createUpstreamLogin({ ...login, stateHash: 'h2' })
      expect(await people.takeUpstreamLogin('h2', NOW + 600)).toBeUndefined()
    })

    it('records a SET jti once per issuer (RFC 8417 §2.2): the second time is a retransmission', async () => {
      const people = store
      expect(await people.recordSecurityEvent('https://tx', 'j1', ['e'], 'pending', NOW)).toBe(true)
      expect(await people.recordSecurityEvent('https://tx', 'j1', ['e'], 'pending', NOW)).toBe(false)
      expect(await people.recordSecurityEvent('https://other', 'j1', ['e'], 'pending', NOW)).toBe(true)
    })
  })
})
