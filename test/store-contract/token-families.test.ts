/**
 * Storage contract: token families: issuance, rotation, revocation, revocation feed (src/storage/token-families.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type Store } from '../../src/storage/store.js'
import { bundle, deviceGrant, hash, id, nextTokens, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('token families', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('a refresh token with its family in one read', () => {
    it('returns the same token and family as findRefreshTokenByHash and findGrant, revocation included', async () => {
      const b = bundle()
      b.grant.resources = ['https://api.example/a', 'https://api.example/b']
      b.grant.dpopJkt = 'jkt-family'
      await store.issueTokens(b)
      const hashOf = b.refreshToken!.tokenHash
      expect(await store.findRefreshTokenWithGrant(hashOf)).toEqual({
        token: await store.findRefreshTokenByHash(hashOf),
        grant: await store.findGrant(b.grant.id),
      })
      await store.revokeGrant(b.grant.id, NOW + 5)
      const after = await store.findRefreshTokenWithGrant(hashOf)
      expect(after?.token.grantRevokedAt).toBe(NOW + 5)
      expect(after?.grant).toEqual(await store.findGrant(b.grant.id))
      expect(after?.grant.revokedAt).toBe(NOW + 5)
      expect(await store.findRefreshTokenWithGrant(hash())).toBeUndefined()
    })
  })

  describe('refresh-token rotation (RFC 9700 §4.14.2)', () => {
    it('rotates a live token once and writes the next tokens', async () => {
      const b = bundle()
      await store.issueTokens(b)
      const next = nextTokens(b.grant.id)
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, next)).toEqual({
        ok: true,
        retried: false,
      })
      expect(await store.findRefreshTokenByHash(b.refreshToken!.tokenHash)).toMatchObject({
        rotatedAt: NOW + 10,
        rotatedJkt: null,
        replacedBy: next.refreshToken.id,
      })
      expect(await store.findRefreshTokenByHash(next.refreshToken.tokenHash)).toMatchObject({
        rotatedAt: null,
        grantRevokedAt: null,
      })
      expect(await store.findAccessTokenByHash(next.accessToken.tokenHash)).toBeDefined()
    })

    it('moves the family\'s current DPoP key with the rotation only when asked (RFC 9449 §5 key rotation)', async () => {
      const b = bundle()
      b.grant.dpopJkt = 'jkt-first'
      await store.issueTokens(b)
      const same = nextTokens(b.grant.id)
      await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, same)
      expect((await store.findGrant(b.grant.id))!.dpopJkt).toBe('jkt-first')
      const moved = { ...nextTokens(b.grant.id), familyDpopJkt: 'jkt-second' }
      expect(await store.rotateRefreshToken(same.refreshToken.tokenHash, NOW + 20, moved)).toEqual({ ok: true, retried: false })
      expect((await store.findGrant(b.grant.id))!.dpopJkt).toBe('jkt-second')
      // A refused rotation (reuse) writes nothing, the key included.
      expect(await store.rotateRefreshToken(same.refreshToken.tokenHash, NOW + 30, { ...nextTokens(b.grant.id), familyDpopJkt: 'jkt-thief' })).toEqual({
        ok: false,
        reason: 'reused',
      })
      expect((await store.findGrant(b.grant.id))!.dpopJkt).toBe('jkt-second')
      await store.rotateRefreshToken(moved.refreshToken.tokenHash, NOW + 40, { ...nextTokens(b.grant.id), familyDpopJkt: null })
      expect((await store.findGrant(b.grant.id))!.dpopJkt).toBeNull()
    })

    it('reports reuse of a rotated token and writes nothing', async () => {
      const b = bundle()
      await store.issueTokens(b)
      await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, nextTokens(b.grant.id))
      const replay = nextTokens(b.grant.id)
      expect(
        await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 20, replay),
      ).toEqual({ ok: false, reason: 'reused' })
      expect(await store.findRefreshTokenByHash(replay.refreshToken.tokenHash)).toBeUndefined()
      expect(await store.findAccessTokenByHash(replay.accessToken.tokenHash)).toBeUndefined()
    })

    it('reports a revoked family as revoked', async () => {
      const b = bundle()
      await store.issueTokens(b)
      await store.revokeGrant(b.grant.id, NOW + 5)
      expect(
        await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, nextTokens(b.grant.id)),
      ).toEqual({ ok: false, reason: 'revoked' })
    })

    it('reports an expired token and an expired family as expired', async () => {
      const b = bundle()
      b.refreshToken!.expiresAt = NOW + 100
      await store.issueTokens(b)
      expect(
        await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 100, nextTokens(b.grant.id)),
      ).toEqual({ ok: false, reason: 'expired' })

      const family = bundle({ grantExpiresAt: NOW + 50 })
      family.refreshToken!.expiresAt = null
      await store.issueTokens(family)
      expect(
        await store.rotateRefreshToken(
          family.refreshToken!.tokenHash,
          NOW + 50,
          nextTokens(family.grant.id),
        ),
      ).toEqual({ ok: false, reason: 'expired' })
    })

    it('reports an unknown token as unknown', async () => {
      expect(await store.rotateRefreshToken(hash(), NOW, nextTokens(id('g')))).toEqual({
        ok: false,
        reason: 'unknown',
      })
    })

    it('lets exactly one of 20 concurrent rotations of the same token win', async () => {
      const b = bundle()
      await store.issueTokens(b)
      const results = await Promise.all(
        Array.from({ length: 20 }, () =>
          store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, nextTokens(b.grant.id)),
        ),
      )
      expect(results.filter((r) => r.ok)).toHaveLength(1)
      expect(results.filter((r) => !r.ok && r.reason === 'reused')).toHaveLength(19)
    })
  })

  describe('refresh retries within the rotation grace (RFC 9700 §4.14.2 leeway)', () => {
    const grace = (dpopJkt: string | null, graceSeconds = 10) => ({ dpopJkt, graceSeconds })

    it('answers a retry with the rotating key within the grace: the unused first answer is revoked, the new tokens written', async () => {
      const b = bundle()
      await store.issueTokens(b)
      const first = nextTokens(b.grant.id)
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, first, grace('jkt-1'))).toEqual({ ok: true, retried: false })
      expect(await store.findRefreshTokenByHash(b.refreshToken!.tokenHash)).toMatchObject({ rotatedJkt: 'jkt-1', replacedBy: first.refreshToken.id })
      const retry = nextTokens(b.grant.id)
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 15, retry, grace('jkt-1'))).toEqual({ ok: true, retried: true })
      expect(await store.findRefreshTokenByHash(first.refreshToken.tokenHash)).toMatchObject({ revokedAt: NOW + 15, grantRevokedAt: null })
      expect(await store.findRefreshTokenByHash(retry.refreshToken.tokenHash)).toMatchObject({ revokedAt: null, rotatedAt: null })
      expect(await store.findAccessTokenByHash(retry.accessToken.tokenHash)).toBeDefined()
      expect(await store.findRefreshTokenByHash(b.refreshToken!.tokenHash)).toMatchObject({ replacedBy: retry.refreshToken.id })
    })

    it('reports reuse for another key, after the grace, or once the first answer was used', async () => {
      const b = bundle()
      await store.issueTokens(b)
      const first = nextTokens(b.grant.id)
      await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, first, grace('jkt-1'))
      const reused = { ok: false, reason: 'reused' }
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 12, nextTokens(b.grant.id), grace('jkt-2'))).toEqual(reused)
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 12, nextTokens(b.grant.id), grace(null))).toEqual(reused)
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 21, nextTokens(b.grant.id), grace('jkt-1'))).toEqual(reused)
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 12, nextTokens(b.grant.id), grace('jkt-1', 0))).toEqual(reused)
      // The client got its answer and used it: presenting the old token again is reuse.
      await store.rotateRefreshToken(first.refreshToken.tokenHash, NOW + 13, nextTokens(b.grant.id), grace('jkt-1'))
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 14, nextTokens(b.grant.id), grace('jkt-1'))).toEqual(reused)
      expect(await store.findRefreshTokenByHash(first.refreshToken.tokenHash)).toMatchObject({ revokedAt: null })
    })

    it('leaves exactly one live successor when 10 retries race (each later retry revokes the unused successor before it)', async () => {
      const b = bundle()
      await store.issueTokens(b)
      await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, nextTokens(b.grant.id), grace(null))
      const attempts = Array.from({ length: 10 }, () => nextTokens(b.grant.id))
      const results = await Promise.all(attempts.map((next) => store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 11, next, grace(null))))
      // Retries that overlap have one winner; a retry that starts after another committed is a
      // retry of its own and replaces that one's still-unused successor. Either way the old token
      // ends with exactly one live successor, and a refused retry writes nothing.
      const won = attempts.filter((_, i) => results[i]!.ok)
      expect(won.length).toBeGreaterThanOrEqual(1)
      expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.reason === 'reused')).toBe(true)
      const live = await Promise.all(won.map(async (next) => (await store.findRefreshTokenByHash(next.refreshToken.tokenHash))?.revokedAt === null))
      expect(live.filter(Boolean)).toHaveLength(1)
      for (const [i, next] of attempts.entries())
        if (!results[i]!.ok) expect(await store.findRefreshTokenByHash(next.refreshToken.tokenHash)).toBeUndefined()
    })
  })

  describe('revocation', () => {
    it('revokes a whole family: its tokens show grantRevokedAt', async () => {
      const b = bundle()
      await store.issueTokens(b)
      await store.revokeGrant(b.grant.id, NOW + 7)
      expect(await store.findAccessTokenByHash(b.accessToken.tokenHash)).toMatchObject({
        revokedAt: null,
        grantRevokedAt: NOW + 7,
      })
      expect(await store.findRefreshTokenByHash(b.refreshToken!.tokenHash)).toMatchObject({
        grantRevokedAt: NOW + 7,
      })
      // Revoking again keeps the first revocation time.
      await store.revokeGrant(b.grant.id, NOW + 9)
      expect((await store.findGrant(b.grant.id))?.revokedAt).toBe(NOW + 7)
    })

    it('revokes every live family of a subject and returns how many', async () => {
      const subject = id('user')
      const families = [bundle({ subject }), bundle({ subject }), bundle({ subject })]
      for (const f of families) await store.issueTokens(f)
      const bystander = bundle()
      await store.issueTokens(bystander)
      await store.revokeGrant(families[0]!.grant.id, NOW)
      expect(await store.revokeGrantsBySubject(subject, NOW + 1)).toBe(2)
      expect(await store.revokeGrantsBySubject(subject, NOW + 2)).toBe(0)
      expect((await store.findGrant(bystander.grant.id))?.revokedAt).toBeNull()
      expect(
        (await store.findAccessTokenByHash(families[2]!.accessToken.tokenHash))?.grantRevokedAt,
      ).toBe(NOW + 1)
    })

    it('revokes every live family of a client and returns how many', async () => {
      const clientId = id('client')
      await store.issueTokens(bundle({ clientId }))
      await store.issueTokens(bundle({ clientId, subject: null }))
      expect(await store.revokeGrantsByClient(clientId, NOW)).toBe(2)
    })

    it('revokes one access token without touching its family', async () => {
      const b = bundle()
      await store.issueTokens(b)
      await store.revokeAccessToken(b.accessToken.tokenHash, NOW + 3)
      expect(await store.findAccessTokenByHash(b.accessToken.tokenHash)).toMatchObject({
        revokedAt: NOW + 3,
        grantRevokedAt: null,
      })
    })

    it('writes a client_credentials family without refresh token', async () => {
      const b = bundle({ subject: null })
      delete b.refreshToken
      b.accessToken.format = 'opaque'
      await store.issueTokens(b)
      expect(await store.findAccessTokenByHash(b.accessToken.tokenHash)).toMatchObject({
        subject: null,
        format: 'opaque',
      })
    })
  })

  describe('resource indicators (RFC 8707) on device grants, families and access tokens', () => {
    it('round-trips resources and leaves them absent when none were given', async () => {
      const g = deviceGrant({ resources: ['https://api.example/', 'https://b.example/x'] })
      await store.createDeviceGrant(g)
      expect((await store.findDeviceGrantByUserCode(g.userCode))?.resources).toEqual(['https://api.example/', 'https://b.example/x'])
      const plain = deviceGrant()
      await store.createDeviceGrant(plain)
      expect((await store.findDeviceGrantByUserCode(plain.userCode))?.resources).toBeUndefined()

      const b = bundle()
      b.grant.resources = ['https://api.example/']
      b.accessToken.resources = ['https://api.example/']
      await store.issueTokens(b)
      expect((await store.findGrant(b.grant.id))?.resources).toEqual(['https://api.example/'])
      expect((await store.findAccessTokenByHash(b.accessToken.tokenHash))?.resources).toEqual(['https://api.example/'])
    })
  })

  describe('revocation feed', () => {
    it('lists tokens revoked directly or with their family since a time, unexpired only', async () => {
      const since = NOW + 100
      const direct = bundle()
      const family = bundle()
      const before = bundle()
      const expired = bundle()
      const live = bundle()
      for (const b of [direct, family, before, expired, live]) await store.issueTokens(b)
      await store.revokeAccessToken(direct.accessToken.tokenHash, since + 5)
      await store.revokeGrant(family.grant.id, since)
      await store.revokeGrant(before.grant.id, since - 1)
      await store.revokeGrant(expired.grant.id, since + 1)

      const feed = await store.listRevocationsSince(since, NOW + 300 - 1)
      const jtis = feed.accessTokens.map((t) => t.jti)
      expect(jtis).toContain(direct.accessToken.jti)
      expect(jtis).toContain(family.accessToken.jti)
      expect(jtis).toContain(expired.accessToken.jti)
      expect(jtis).not.toContain(before.accessToken.jti)
      expect(jtis).not.toContain(live.accessToken.jti)
      expect(feed.accessTokens.find((t) => t.jti === direct.accessToken.jti)).toEqual({
        jti: direct.accessToken.jti,
        revokedAt: since + 5,
        expiresAt: NOW + 300,
      })
      const grantIds = feed.grants.map((g) => g.id)
      expect(grantIds).toContain(family.grant.id)
      expect(grantIds).not.toContain(before.grant.id)
      expect(grantIds).not.toContain(direct.grant.id)

      // At exp the token no longer needs listing: the resource server refuses it anyway.
      const after = await store.listRevocationsSince(since, NOW + 300)
      expect(after.accessTokens.map((t) => t.jti)).not.toContain(expired.accessToken.jti)
    })
  })

  describe('last use', () => {
    it('records last use at most once per interval', async () => {
      const fam = bundle({ subject: id('touch') })
      await store.issueTokens(fam)
      expect(await store.touchGrant(fam.grant.id, NOW + 100, '192.0.2.1', 60)).toBe(true)
      expect(await store.touchGrant(fam.grant.id, NOW + 130, '192.0.2.2', 60)).toBe(false)
      expect(await store.touchGrant(fam.grant.id, NOW + 160, '192.0.2.3', 60)).toBe(true)
      const [row] = await store.listGrantSummaries({ ids: [fam.grant.id] }, { limit: 1 })
      expect(row).toMatchObject({ lastUsedAt: NOW + 160, lastUsedIp: '192.0.2.3' })
      expect(await store.countGrants({ ids: [fam.grant.id], lastUsedBefore: NOW + 161 })).toBe(1)
      expect(await store.countGrants({ ids: [fam.grant.id], lastUsedBefore: NOW + 160 })).toBe(0)
    })
  })
})
