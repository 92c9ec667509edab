/**
 * The one storage contract suite (src/storage/store.ts), run against every adapter on a real
 * database: SQLite on a temporary file always; PostgreSQL when DEVICEGATE_TEST_PG_URL is set,
 * each run in its own schema.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore } from '../src/storage/index.js'
import { createPostgresStore } from '../src/storage/postgres.js'
import { chainHash } from '../src/governance/audit.js'
import {
  StoreConflictError,
  type AnomalyRecord,
  type AuditEventBody,
  type NewAuditEvent,
  StoreUnavailableError,
  type DeviceGrantRecord,
  type DeviceRecord,
  type Store,
} from '../src/storage/store.js'
import { bundle, deviceGrant, hash, id, nextTokens, NOW } from './support/store-fixtures.js'

interface Adapter {
  name: string
  /** Opens a migrated store; a second call opens another, independent instance (own pool). */
  open(): Promise<Store>
  /** Whether two instances can race across connections (separate pools). */
  multiInstance: boolean
  setup(): Promise<void>
  teardown(): Promise<void>
}

const sqliteAdapter = (): Adapter => {
  let dir = ''
  return {
    name: 'sqlite',
    multiInstance: false,
    async setup() {
      dir = await mkdtemp(join(tmpdir(), 'devicegate-store-'))
    },
    open: () => openStore(`sqlite:${join(dir, 'nested', 'devicegate.db')}`),
    async teardown() {
      await rm(dir, { recursive: true, force: true })
    },
  }
}

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL

const postgresAdapter = (baseUrl: string): Adapter => {
  const schema = `dg_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = () => new pg.Client({ connectionString: baseUrl })
  const schemaUrl = () => {
    const url = new URL(baseUrl)
    url.searchParams.set('options', `-c search_path=${schema}`)
    return url.toString()
  }
  return {
    name: 'postgres',
    multiInstance: true,
    async setup() {
      const client = admin()
      await client.connect()
      await client.query(`create schema ${schema}`)
      await client.end()
    },
    open: () => openStore(schemaUrl()),
    async teardown() {
      const client = admin()
      await client.connect()
      await client.query(`drop schema if exists ${schema} cascade`)
      await client.end()
    },
  }
}

if (!PG_URL) {
  console.warn(
    'PostgreSQL contract tests SKIPPED: set DEVICEGATE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run them',
  )
}

const ADAPTERS: Array<{ adapter: Adapter; run: boolean }> = [
  { adapter: sqliteAdapter(), run: true },
  { adapter: postgresAdapter(PG_URL ?? 'postgres://unset/unset'), run: Boolean(PG_URL) },
]

for (const { adapter, run } of ADAPTERS) {
  const suite = run ? describe : describe.skip

  suite(`${adapter.name} store contract`, () => {
    let store: Store

    beforeAll(async () => {
      await adapter.setup()
      store = await adapter.open()
    })
    afterAll(async () => {
      await store?.close()
      await adapter.teardown()
    })

    async function approvedGrant(over: Partial<DeviceGrantRecord> = {}) {
      const g = deviceGrant(over)
      await store.createDeviceGrant(g)
      expect(await store.decideDeviceGrant(g.id, 'approved', 'alice', NOW + 10)).toBe(true)
      return g
    }

    describe('migrations', () => {
      it('are idempotent: migrating an up-to-date database changes nothing', async () => {
        await store.migrate()
        const again = await adapter.open()
        await again.close()
      })
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

      it('rejects a user-code collision with StoreConflictError', async () => {
        const g = deviceGrant()
        await store.createDeviceGrant(g)
        const clash = store.createDeviceGrant(deviceGrant({ userCode: g.userCode }))
        await expect(clash).rejects.toBeInstanceOf(StoreConflictError)
        await expect(clash).rejects.toMatchObject({ code: 'ERR_STORE_CONFLICT' })
      })

      it('rejects a device-code-hash collision with StoreConflictError', async () => {
        const g = deviceGrant()
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
        const g = await approvedGrant()
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
        const g = await approvedGrant()
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
              const g = await approvedGrant()
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
        const g = await approvedGrant({ expiresAt: NOW + 60 })
        const tokens = bundle()
        expect(await store.redeemDeviceGrant(g.id, NOW + 60, tokens)).toBe(false)
        expect(await store.findGrant(tokens.grant.id)).toBeUndefined()
        expect((await store.findDeviceGrantByUserCode(g.userCode))?.status).toBe('approved')
      })
    })

    describe('refresh-token rotation (RFC 9700 §4.14.2)', () => {
      it('rotates a live token once and writes the next tokens', async () => {
        const b = bundle()
        await store.issueTokens(b)
        const next = nextTokens(b.grant.id)
        expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, next)).toEqual({
          ok: true,
        })
        expect(await store.findRefreshTokenByHash(b.refreshToken!.tokenHash)).toMatchObject({
          rotatedAt: NOW + 10,
        })
        expect(await store.findRefreshTokenByHash(next.refreshToken.tokenHash)).toMatchObject({
          rotatedAt: null,
          grantRevokedAt: null,
        })
        expect(await store.findAccessTokenByHash(next.accessToken.tokenHash)).toBeDefined()
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

    describe('web sessions', () => {
      it('finds a session until it expires and forgets a deleted one', async () => {
        const s = {
          idHash: hash(),
          csrfToken: 'csrf',
          subject: 'alice',
          authTime: NOW,
          createdAt: NOW,
          expiresAt: NOW + 100,
        }
        await store.createWebSession(s)
        expect(await store.findWebSession(s.idHash, NOW + 99)).toEqual(s)
        expect(await store.findWebSession(s.idHash, NOW + 100)).toBeUndefined()
        await store.deleteWebSession(s.idHash)
        expect(await store.findWebSession(s.idHash, NOW)).toBeUndefined()
      })
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
    })

    describe('DPoP replay cache (RFC 9449 §11.1)', () => {
      it('accepts a jti once and reports the replay', async () => {
        const jti = id('jti')
        expect(await store.rememberDpopJti(jti, NOW + 60)).toBe(true)
        expect(await store.rememberDpopJti(jti, NOW + 60)).toBe(false)
      })

      it('accepts exactly one of concurrent duplicates', async () => {
        const jti = id('jti')
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.rememberDpopJti(jti, NOW + 60)),
        )
        expect(results.filter(Boolean)).toHaveLength(1)
      })
    })

    describe('purgeExpired', () => {
      it('deletes expired sessions, counters, jtis and old unredeemed device grants only', async () => {
        const later = NOW + 10 * 86_400
        const liveSession = { idHash: hash(), csrfToken: 'c', subject: null, authTime: null, createdAt: NOW, expiresAt: later + 1 }
        const deadSession = { ...liveSession, idHash: hash(), expiresAt: later }
        await store.createWebSession(liveSession)
        await store.createWebSession(deadSession)
        const key = id('ip')
        await store.incrementCounter(key, 60, later - 60)
        await store.incrementCounter(key, 60, later)
        const oldJti = id('jti')
        const liveJti = id('jti')
        await store.rememberDpopJti(oldJti, later)
        await store.rememberDpopJti(liveJti, later + 60)

        const stale = deviceGrant({ expiresAt: later - 86_400 - 1 })
        const recent = deviceGrant({ expiresAt: later - 60 })
        await store.createDeviceGrant(stale)
        await store.createDeviceGrant(recent)
        const redeemed = await approvedGrant({ expiresAt: NOW + 600 })
        expect(await store.redeemDeviceGrant(redeemed.id, NOW + 20, bundle())).toBe(true)

        await store.purgeExpired(later)

        expect(await store.findWebSession(liveSession.idHash, NOW)).toBeDefined()
        expect(await store.findWebSession(deadSession.idHash, NOW)).toBeUndefined()
        expect(await store.readCounter(key, 60, later - 60)).toBe(0)
        expect(await store.readCounter(key, 60, later)).toBe(1)
        expect(await store.rememberDpopJti(oldJti, later + 60)).toBe(true)
        expect(await store.rememberDpopJti(liveJti, later + 60)).toBe(false)
        expect(await store.findDeviceGrantByUserCode(stale.userCode)).toBeUndefined()
        expect(await store.findDeviceGrantByUserCode(recent.userCode)).toBeDefined()
        expect(await store.findDeviceGrantByUserCode(redeemed.userCode)).toBeDefined()
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

    describe('governance (issue 5)', () => {
      const chain = (prev: string, e: AuditEventBody) => chainHash(prev, e)
      const event = (type: string, over: Partial<NewAuditEvent> = {}): NewAuditEvent => ({
        time: NOW,
        type,
        actor: 'alice',
        clientId: 'cli',
        subject: 'alice',
        ip: '203.0.113.7',
        grantId: null,
        details: '{}',
        ...over,
      })

      it('appends audit events with contiguous seq and a hash chain, and moves the head', async () => {
        const before = await store.readAuditHead()
        const written = await store.appendAuditEvents([event('token.issued'), event('token.refreshed')], chain)
        expect(written.map((r) => r.seq)).toEqual([before.seq + 1, before.seq + 2])
        expect(written[0]!.prevHash).toBe(before.hash)
        expect(written[1]!.prevHash).toBe(written[0]!.hash)
        expect(written[1]!.hash).toBe(chainHash(written[0]!.hash, written[1]!))
        expect(await store.readAuditHead()).toEqual({ seq: before.seq + 2, hash: written[1]!.hash })
        const listed = await store.listAuditEvents({ afterSeq: before.seq, limit: 10 })
        expect(listed).toEqual(written)
        expect(await store.appendAuditEvents([], chain)).toEqual([])
      })

      // SQLite: one process holds one connection per store, and better-sqlite3 waits for a lock
      // synchronously, so two connections in one process would deadlock; there the concurrency is
      // within one instance. PostgreSQL runs two pools (two instances).
      it('serialises concurrent appends (two instances where the adapter allows): one chain, nothing lost', async () => {
        const other = adapter.multiInstance ? await adapter.open() : store
        try {
          const before = await store.readAuditHead()
          await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              (i % 2 === 0 ? store : other).appendAuditEvents([event('admin.action', { details: `{"i":${i}}` }), event('admin.action')], chain),
            ),
          )
          const rows = await store.listAuditEvents({ afterSeq: before.seq, limit: 100 })
          expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => before.seq + 1 + i))
          let prev = before.hash
          for (const r of rows) {
            expect(r.prevHash).toBe(prev)
            expect(r.hash).toBe(chainHash(prev, r))
            prev = r.hash
          }
          expect((await store.readAuditHead()).hash).toBe(prev)
        } finally {
          if (other !== store) await other.close()
        }
      })

      it('lists audit events since a time and keeps one checkpoint per seq', async () => {
        const [late] = await store.appendAuditEvents([event('session.signed_in', { time: NOW + 5000 })], chain)
        const since = await store.listAuditEvents({ sinceTime: NOW + 5000, limit: 10 })
        expect(since.map((r) => r.seq)).toContain(late!.seq)
        expect(since.every((r) => r.time >= NOW + 5000)).toBe(true)
        await store.insertAuditCheckpoint({ seq: late!.seq, hash: late!.hash, time: NOW, signature: 'a' })
        await store.insertAuditCheckpoint({ seq: late!.seq, hash: 'other', time: NOW + 1, signature: 'b' })
        const cps = (await store.listAuditCheckpoints()).filter((c) => c.seq === late!.seq)
        expect(cps).toEqual([{ seq: late!.seq, hash: late!.hash, time: NOW, signature: 'a' }])
      })

      it('stores an anomaly once per dedupe key and lists anomalies since a time', async () => {
        const key = id('dedupe')
        const anomaly = (over: Partial<AnomalyRecord> = {}): AnomalyRecord => ({
          id: id('an'),
          kind: 'slow_down_ignored',
          time: NOW + 7000,
          dedupeKey: key,
          clientId: 'cli',
          subject: null,
          grantId: null,
          ip: '203.0.113.7',
          action: 'alert',
          details: '{}',
          ...over,
        })
        expect(await store.insertAnomaly(anomaly())).toBe(true)
        expect(await store.insertAnomaly(anomaly())).toBe(false)
        expect(await store.insertAnomaly(anomaly({ dedupeKey: null }))).toBe(true)
        expect(await store.insertAnomaly(anomaly({ dedupeKey: null }))).toBe(true)
        const listed = await store.listAnomalies({ sinceTime: NOW + 7000, kind: 'slow_down_ignored', limit: 10 })
        expect(listed).toHaveLength(3)
        expect(await store.listAnomalies({ sinceTime: NOW + 7001, limit: 10 })).toEqual([])
      })

      it('upserts, lists and clears principal overrides', async () => {
        const user = id('user')
        await store.setPrincipalOverride({ kind: 'user', id: user, state: 'disabled', changedAt: NOW, changedBy: 'admin:ops' })
        await store.setPrincipalOverride({ kind: 'user', id: user, state: 'deleted', changedAt: NOW + 1, changedBy: null })
        const mine = (await store.listPrincipalOverrides()).filter((o) => o.id === user)
        expect(mine).toEqual([{ kind: 'user', id: user, state: 'deleted', changedAt: NOW + 1, changedBy: null }])
        expect(await store.clearPrincipalOverride('user', user)).toBe(true)
        expect(await store.clearPrincipalOverride('user', user)).toBe(false)
      })

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
        const dg = await approvedGrant({ requestIp: ip })
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
        const dg = await approvedGrant({ requestIp: '192.0.2.44', requestUserAgent: 'dg-test' })
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

      it('lists and denies open device authorizations by filter; counts pending ones', async () => {
        const client = id('dgclient')
        const pending = deviceGrant({ clientId: client, createdAt: NOW + 50, expiresAt: NOW + 650 })
        await store.createDeviceGrant(pending)
        const approved = await approvedGrant({ clientId: client, createdAt: NOW + 51 })
        expect((await store.listDeviceGrants({ clientId: client }, 10)).map((g) => g.id)).toEqual([pending.id, approved.id])
        expect((await store.listDeviceGrants({ clientId: client, subject: 'alice' }, 10)).map((g) => g.id)).toEqual([approved.id])
        const pendingBefore = await store.countPendingDeviceGrants(NOW + 60)
        await expect(store.denyOpenDeviceGrants({}, NOW)).rejects.toBeInstanceOf(TypeError)
        expect(await store.denyOpenDeviceGrants({ clientId: client }, NOW + 60)).toBe(2)
        expect(await store.countPendingDeviceGrants(NOW + 60)).toBe(pendingBefore - 1)
        expect((await store.findDeviceGrantByUserCode(approved.userCode))?.status).toBe('denied')
        expect(await store.redeemDeviceGrant(approved.id, NOW + 61, bundle())).toBe(false)
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
}

describe.runIf(Boolean(PG_URL))('postgres store availability', () => {
  it('reports an unreachable server as StoreUnavailableError', async () => {
    const store = await createPostgresStore('postgres://postgres@127.0.0.1:1/none', {
      connectionTimeoutMillis: 2_000,
    })
    try {
      await expect(store.findGrant('x')).rejects.toBeInstanceOf(StoreUnavailableError)
      await expect(store.migrate()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
    } finally {
      await store.close()
    }
  })
})
