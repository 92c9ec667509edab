/**
 * Storage contract: inventory and central revocation of token families (src/storage/grant-inventory.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type Store } from '../../src/storage/store.js'
import { bundle, id, nextTokens, NOW } from '../support/store-fixtures.js'
import { approvedGrant, describeStoreContract } from '../support/store-contract.js'

describeStoreContract('grant inventory', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('inventory and central revocation', () => {
    it('revokes families by filter in one call, effective at once for token lookups', async () => {
      const subject = id('subj')
      const client = id('client')
      const a = bundle({ subject })
      const b = bundle({ subject, clientId: client })
      const c = bundle({ subject: id('other') })
      for (const x of [a, b, c]) await store.issueTokens(x)
      await expect(store.revokeGrantsWhere({}, NOW)).rejects.toBeInstanceOf(TypeError)
      await expect(store.revokeGrantsWhere({ revoked: false }, NOW)).rejects.toBeInstanceOf(TypeError)
      expect(await store.countGrants({ subject, revoked: false })).toBe(2)
      expect(await store.revokeGrantsWhere({ subject, clientId: client }, NOW + 1)).toBe(1)
      expect((await store.findAccessTokenByHash(b.accessToken.tokenHash))?.grantRevokedAt).toBe(NOW + 1)
      expect((await store.findRefreshTokenByHash(a.refreshToken!.tokenHash))?.grantRevokedAt).toBeNull()
      expect(await store.revokeGrantsWhere({ ids: [a.grant.id, b.grant.id, 'missing'] }, NOW + 2)).toBe(1)
      expect(await store.revokeGrantsWhere({ ids: [] }, NOW + 2)).toBe(0)
      expect((await store.findGrant(c.grant.id))?.revokedAt).toBeNull()
      expect(await store.countGrants({ subject, revoked: true })).toBe(2)
    })

    it('revokes everything created before a time (kill switch) with one UPDATE', async () => {
      const subject = id('kill')
      const old = bundle({ subject })
      old.grant.createdAt = NOW - 100_000
      const recent = bundle({ subject })
      for (const x of [old, recent]) await store.issueTokens(x)
      await store.revokeGrantsWhere({ createdBefore: NOW - 50_000 }, NOW + 3)
      expect((await store.findGrant(old.grant.id))?.revokedAt).toBe(NOW + 3)
      expect((await store.findGrant(recent.grant.id))?.revokedAt).toBeNull()
    })

    it('revokes families minted from device authorizations, by id list or request address', async () => {
      const subject = id('phish')
      const ip = `198.51.100.${Math.floor(Math.random() * 200) + 1}`
      const dg = await approvedGrant(store, { requestIp: ip })
      const fam = bundle({ subject })
      fam.grant.deviceGrantId = dg.id
      await store.issueTokens(fam)
      const other = bundle({ subject })
      await store.issueTokens(other)
      expect(await store.countGrants({ requestIp: ip })).toBe(1)
      expect(await store.revokeGrantsWhere({ deviceGrantIds: [dg.id] }, NOW + 4)).toBe(1)
      expect(await store.revokeGrantsWhere({ requestIp: ip }, NOW + 5)).toBe(0)
      expect((await store.findGrant(other.grant.id))?.revokedAt).toBeNull()
    })

    it('lists grant summaries with issuance facts, newest first, keyset-paged, and a lineage', async () => {
      const subject = id('inv')
      const dg = await approvedGrant(store, { requestIp: '192.0.2.44', requestUserAgent: 'dg-test' })
      const fams = [bundle({ subject }), bundle({ subject }), bundle({ subject })]
      fams.forEach((f, i) => (f.grant.createdAt = NOW + i))
      fams[2]!.grant.deviceGrantId = dg.id
      for (const f of fams) await store.issueTokens(f)
      const first = await store.listGrantSummaries({ subject }, { limit: 2 })
      expect(first.map((g) => g.id)).toEqual([fams[2]!.grant.id, fams[1]!.grant.id])
      expect(first[0]).toMatchObject({ requestIp: '192.0.2.44', requestUserAgent: 'dg-test', requestedAt: NOW, approvedAt: NOW + 10, lastUsedAt: null })
      const last = first[1]!
      const second = await store.listGrantSummaries({ subject }, { limit: 2, after: { createdAt: last.createdAt, id: last.id } })
      expect(second.map((g) => g.id)).toEqual([fams[0]!.grant.id])
      await store.rotateRefreshToken(fams[2]!.refreshToken!.tokenHash, NOW + 20, nextTokens(fams[2]!.grant.id))
      const lineage = await store.findGrantLineage(fams[2]!.grant.id)
      expect(lineage?.deviceGrant?.id).toBe(dg.id)
      expect(lineage?.accessTokens).toHaveLength(2)
      expect(lineage?.refreshTokens).toHaveLength(2)
      expect(lineage?.refreshTokens.find((r) => r.id === fams[2]!.refreshToken!.id)?.rotatedAt).toBe(NOW + 20)
      expect(await store.findGrantLineage('missing')).toBeUndefined()
    })

    it('lists the owners of live families', async () => {
      const subject = id('owner')
      const fam = bundle({ subject, clientId: id('ownerclient') })
      await store.issueTokens(fam)
      const owners = await store.listLiveGrantOwners()
      expect(owners.subjects).toContain(subject)
      expect(owners.clientIds).toContain(fam.grant.clientId)
      await store.revokeGrant(fam.grant.id, NOW)
      expect((await store.listLiveGrantOwners()).subjects).not.toContain(subject)
    })
  })
})
