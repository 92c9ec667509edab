/**
 * Storage contract: device authorizations and polling (src/storage/device-grants.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { StoreConflictError, type Store } from '../../src/storage/store.js'
import { bundle, deviceGrant, hash, id, NOW } from '../support/store-fixtures.js'
import { approvedGrant, describeStoreContract } from '../support/store-contract.js'

describeStoreContract('device grants', (contract) => {
  const { adapter } = contract
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('device authorizations (RFC 8628 §3.1–3.5)', () => {
    it('finds a created device grant by device code hash and by user code', async () => {
      const g = deviceGrant({ dpopJkt: 'jkt-1', requestUserAgent: null })
      await store.createDeviceGrant(g)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toEqual(g)
      expect(await store.findDeviceGrantByUserCode(g.userCode)).toEqual(g)
      expect(await store.findDeviceGrantByDeviceCodeHash(hash())).toBeUndefined()
      expect(await store.findDeviceGrantByUserCode('ZZZZZZZZ')).toBeUndefined()
    })

    it('finds a key "<id>.<hash>" only with its own hash: a real id with another hash, or a prefix of it, is not found', async () => {
      const g = deviceGrant()
      await store.createDeviceGrant(g)
      const other = deviceGrant()
      await store.createDeviceGrant(other)
      const otherHash = other.deviceCodeHash.slice(other.id.length + 1)
      for (const key of [`${g.id}.${hash()}`, `${g.id}.${otherHash}`, g.deviceCodeHash.slice(0, -1), `${g.deviceCodeHash}0`, `${g.id}.`, `${g.id}`, g.deviceCodeHash.slice(g.id.length + 1)])
        expect(await store.findDeviceGrantByDeviceCodeHash(key), key).toBeUndefined()
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toEqual(g)
    })

    it('finds a key of the format before (no ".") by the key itself, and not by the grant id', async () => {
      const g = deviceGrant({ deviceCodeHash: hash() })
      await store.createDeviceGrant(g)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toEqual(g)
      expect(await store.findDeviceGrantByDeviceCodeHash(`${g.id}.${g.deviceCodeHash}`)).toBeUndefined()
    })

    it('refuses a key "<id>.<hash>" of another id with TypeError, writing nothing', async () => {
      const g = deviceGrant()
      await expect(store.createDeviceGrant({ ...g, deviceCodeHash: `${id('dg')}.${hash()}` })).rejects.toBeInstanceOf(TypeError)
      expect(await store.findDeviceGrantByUserCode(g.userCode)).toBeUndefined()
    })

    it('rejects an id collision with StoreConflictError', async () => {
      const g = deviceGrant()
      await store.createDeviceGrant(g)
      await expect(store.createDeviceGrant(deviceGrant({ id: g.id }))).rejects.toBeInstanceOf(StoreConflictError)
    })

    it('rejects a user-code collision with StoreConflictError', async () => {
      const g = deviceGrant()
      await store.createDeviceGrant(g)
      const clash = store.createDeviceGrant(deviceGrant({ userCode: g.userCode }))
      await expect(clash).rejects.toBeInstanceOf(StoreConflictError)
      await expect(clash).rejects.toMatchObject({ code: 'ERR_STORE_CONFLICT' })
    })

    it('rejects a device-code-hash collision (format before) with StoreConflictError', async () => {
      const g = deviceGrant({ deviceCodeHash: hash() })
      await store.createDeviceGrant(g)
      await expect(
        store.createDeviceGrant(deviceGrant({ deviceCodeHash: g.deviceCodeHash })),
      ).rejects.toBeInstanceOf(StoreConflictError)
    })

    it('adds 5 seconds to the interval on a too-fast poll and keeps it for later polls', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      expect(await store.registerPoll(g.id, NOW)).toEqual({ tooFast: false, intervalSeconds: 5 })
      expect(await store.registerPoll(g.id, NOW)).toEqual({ tooFast: true, intervalSeconds: 10 })
      // 5 s later is enough for the old interval but not for the grown one.
      expect(await store.registerPoll(g.id, NOW + 5)).toEqual({
        tooFast: true,
        intervalSeconds: 15,
      })
      expect(await store.registerPoll(g.id, NOW + 20)).toEqual({
        tooFast: false,
        intervalSeconds: 15,
      })
      const stored = await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)
      expect(stored).toMatchObject({ intervalSeconds: 15, lastPolledAt: NOW + 20 })
    })

    it('counts exactly one on-time poll among concurrent polls', async () => {
      const g = deviceGrant({ intervalSeconds: 5 })
      await store.createDeviceGrant(g)
      const results = await Promise.all(
        Array.from({ length: 10 }, () => store.registerPoll(g.id, NOW)),
      )
      expect(results.filter((r) => !r.tooFast)).toHaveLength(1)
      const stored = await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)
      expect(stored?.intervalSeconds).toBe(5 + 9 * 5)
    })

    it('records a decision only once', async () => {
      const g = deviceGrant()
      await store.createDeviceGrant(g)
      expect(await store.decideDeviceGrant(g.id, 'denied', 'bob', NOW + 1)).toBe(true)
      expect(await store.decideDeviceGrant(g.id, 'approved', 'alice', NOW + 2)).toBe(false)
      expect(await store.findDeviceGrantByUserCode(g.userCode)).toMatchObject({
        status: 'denied',
        subject: 'bob',
        decidedAt: NOW + 1,
      })
    })

    it('refuses a decision after the device grant expired', async () => {
      const g = deviceGrant({ expiresAt: NOW + 60 })
      await store.createDeviceGrant(g)
      expect(await store.decideDeviceGrant(g.id, 'approved', 'alice', NOW + 60)).toBe(false)
      expect((await store.findDeviceGrantByUserCode(g.userCode))?.status).toBe('pending')
    })

    it('redeems an approved device grant and writes its token family', async () => {
      const g = await approvedGrant(store)
      const tokens = bundle()
      tokens.grant.deviceGrantId = g.id
      expect(await store.redeemDeviceGrant(g.id, NOW + 20, tokens)).toBe(true)
      expect(await store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash)).toMatchObject({
        status: 'redeemed',
        grantId: tokens.grant.id,
      })
      expect(await store.findGrant(tokens.grant.id)).toEqual(tokens.grant)
      expect(await store.findAccessTokenByHash(tokens.accessToken.tokenHash)).toEqual({
        ...tokens.accessToken,
        grantRevokedAt: null,
      })
      expect(await store.findRefreshTokenByHash(tokens.refreshToken!.tokenHash)).toEqual({
        ...tokens.refreshToken,
        rotatedJkt: null,
        replacedBy: null,
        grantRevokedAt: null,
      })
    })

    it('does not redeem a pending or denied device grant', async () => {
      const pending = deviceGrant()
      await store.createDeviceGrant(pending)
      expect(await store.redeemDeviceGrant(pending.id, NOW, bundle())).toBe(false)
      const denied = deviceGrant()
      await store.createDeviceGrant(denied)
      await store.decideDeviceGrant(denied.id, 'denied', 'alice', NOW)
      const tokens = bundle()
      expect(await store.redeemDeviceGrant(denied.id, NOW, tokens)).toBe(false)
      expect(await store.findGrant(tokens.grant.id)).toBeUndefined()
    })

    it('redeems an approved device grant exactly once under 50 concurrent calls', async () => {
      const g = await approvedGrant(store)
      const attempts = Array.from({ length: 50 }, () => bundle())
      const results = await Promise.all(
        attempts.map((tokens) => store.redeemDeviceGrant(g.id, NOW + 20, tokens)),
      )
      expect(results.filter(Boolean)).toHaveLength(1)
      const winner = attempts[results.indexOf(true)]!
      const losers = attempts.filter((_, i) => !results[i])
      expect(await store.findGrant(winner.grant.id)).toBeDefined()
      for (const loser of losers.slice(0, 5)) {
        expect(await store.findGrant(loser.grant.id)).toBeUndefined()
        expect(await store.findAccessTokenByHash(loser.accessToken.tokenHash)).toBeUndefined()
      }
    })

    it.runIf(adapter.multiInstance)(
      'redeems exactly once when two store instances (two pools) race',
      async () => {
        const other = await adapter.open()
        try {
          for (let round = 0; round < 5; round++) {
            const g = await approvedGrant(store)
            const results = await Promise.all(
              Array.from({ length: 20 }, (_, i) =>
                (i % 2 ? other : store).redeemDeviceGrant(g.id, NOW + 20, bundle()),
              ),
            )
            expect(results.filter(Boolean)).toHaveLength(1)
          }
        } finally {
          await other.close()
        }
      },
    )

    it('does not redeem an approved device grant after it expired', async () => {
      const g = await approvedGrant(store, { expiresAt: NOW + 60 })
      const tokens = bundle()
      expect(await store.redeemDeviceGrant(g.id, NOW + 60, tokens)).toBe(false)
      expect(await store.findGrant(tokens.grant.id)).toBeUndefined()
      expect((await store.findDeviceGrantByUserCode(g.userCode))?.status).toBe('approved')
    })
  })

  describe('phishing remediation queries', () => {
    it('lists and denies open device authorizations by filter; counts pending ones', async () => {
      const client = id('dgclient')
      const pending = deviceGrant({ clientId: client, createdAt: NOW + 50, expiresAt: NOW + 650 })
      await store.createDeviceGrant(pending)
      const approved = await approvedGrant(store, { clientId: client, createdAt: NOW + 51 })
      expect((await store.listDeviceGrants({ clientId: client }, 10)).map((g) => g.id)).toEqual([pending.id, approved.id])
      expect((await store.listDeviceGrants({ clientId: client, subject: 'alice' }, 10)).map((g) => g.id)).toEqual([approved.id])
      const pendingBefore = await store.countPendingDeviceGrants(NOW + 60)
      await expect(store.denyOpenDeviceGrants({}, NOW)).rejects.toBeInstanceOf(TypeError)
      expect(await store.denyOpenDeviceGrants({ clientId: client }, NOW + 60)).toBe(2)
      expect(await store.countPendingDeviceGrants(NOW + 60)).toBe(pendingBefore - 1)
      expect((await store.findDeviceGrantByUserCode(approved.userCode))?.status).toBe('denied')
      expect(await store.redeemDeviceGrant(approved.id, NOW + 61, bundle())).toBe(false)
    })
  })
})

describeStoreContract('device grant review claims', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  it('claims a pending grant for one reviewer at a time (one conditional update), renewable, until it runs out', async () => {
    const g = deviceGrant()
    await store.createDeviceGrant(g)
    expect(await store.claimDeviceGrantReview(g.id, 'r1', NOW + 120, NOW)).toBe(true)
    expect(await store.claimDeviceGrantReview(g.id, 'r2', NOW + 130, NOW + 10)).toBe(false)
    expect(await store.claimDeviceGrantReview(g.id, 'r1', NOW + 150, NOW + 30)).toBe(true) // renewed
    expect(await store.claimDeviceGrantReview(g.id, 'r2', NOW + 249, NOW + 149)).toBe(false)
    expect(await store.claimDeviceGrantReview(g.id, 'r2', NOW + 270, NOW + 150)).toBe(true) // r1's ran out
  })

  it('lets only the claim holder decide when a reviewer is given; closes the grant to everyone after', async () => {
    const g = deviceGrant()
    await store.createDeviceGrant(g)
    expect(await store.claimDeviceGrantReview(g.id, 'r1', NOW + 120, NOW)).toBe(true)
    expect(await store.decideDeviceGrant(g.id, 'approved', 'mallory', NOW + 1, 'r2')).toBe(false)
    expect((await store.findDeviceGrantByUserCode(g.userCode))?.status).toBe('pending')
    expect(await store.decideDeviceGrant(g.id, 'denied', 'alice', NOW + 2, 'r1')).toBe(true)
    expect(await store.claimDeviceGrantReview(g.id, 'r2', NOW + 500, NOW + 400)).toBe(false)
  })

  it('gives the claim to exactly one of 20 racing reviewers (across instances where the adapter has them)', async () => {
    const g = deviceGrant()
    await store.createDeviceGrant(g)
    const other = contract.adapter.multiInstance ? await contract.adapter.open() : store
    try {
      const wins = await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? store : other).claimDeviceGrantReview(g.id, `r${i}`, NOW + 120, NOW)),
      )
      expect(wins.filter(Boolean)).toHaveLength(1)
    } finally {
      if (other !== store) await other.close()
    }
  })
})
