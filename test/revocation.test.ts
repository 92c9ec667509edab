/**
 * Governance: central revocation (user, client, grant, token, DPoP key, kill switch,
 * phishing pattern, dry run), its immediate effect on introspection and refresh, the inventory
 * with last use, and the 100,000-family revocation figure.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { describeLineage, listInventory } from '../src/governance/inventory.js'
import { RevocationService, RevocationTargetError } from '../src/governance/revocation.js'
import { openStore } from '../src/storage/index.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: TestServer
beforeAll(async () => {
  t = await startTestServer({ config: await fixtureConfigFile({ trusted_proxies: ['127.0.0.1'] }) })
})
afterAll(async () => t?.close())

/** Device flow to tokens for `user`, the device at `ip` (X-Forwarded-For from a trusted proxy). */
async function login(user = 'alice', ip = '203.0.113.10') {
  const headers = { 'x-forwarded-for': ip }
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' }, headers)
  expect(auth.status).toBe(200)
  await approveAs(t.url, auth.json.user_code, 'approve', user)
  const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' }, headers)
  expect(tok.status).toBe(200)
  return tok.json as { access_token: string; refresh_token: string }
}
const introspect = async (token: string, extra: Record<string, string> = {}) =>
  (await postForm(`${t.url}/introspect`, { token, ...extra }, { authorization: basic('rs', FIXTURE.rsSecret) })).json
const refresh = (token: string) => postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: token, client_id: 'cli' })
const revocation = () => t.server.governance.revocation
const admin = { actor: 'admin:test' }

describe('central revocation', () => {
  it('revokes every family of a user at once for introspection and refresh, and audits it', async () => {
    const a1 = await login('alice')
    const a2 = await login('alice')
    const m = await login('mallory')
    const dry = await revocation().revoke({ kind: 'user', subject: 'alice' }, { ...admin, dryRun: true })
    expect(dry.grants).toBeGreaterThanOrEqual(2)
    expect((await introspect(a1.access_token)).active).toBe(true)

    const result = await revocation().revoke({ kind: 'user', subject: 'alice' }, { ...admin, reason: 'left the company' })
    expect(result.grants).toBe(dry.grants)
    for (const tok of [a1, a2]) {
      expect(await introspect(tok.access_token)).toEqual({ active: false })
      expect(await introspect(tok.refresh_token)).toEqual({ active: false })
      expect((await refresh(tok.refresh_token)).json.error).toBe('invalid_grant')
    }
    expect((await introspect(m.access_token)).active).toBe(true)
    await t.server.governance.audit!.flush()
    const events = await t.server.store.listAuditEvents({ afterSeq: 0, limit: 10_000 })
    const revoked = events.filter((e) => e.type === 'token.revoked' && e.subject === 'alice').at(-1)!
    expect(revoked.actor).toBe('admin:test')
    expect(JSON.parse(revoked.details)).toMatchObject({ via: 'central', target: { kind: 'user' }, grants: result.grants, reason: 'left the company' })
  })

  it('revokes one family by grant id or by a token string, and leaves the others alone', async () => {
    const a = await login('alice')
    const b = await login('alice')
    const grantId = (await t.server.store.findAccessTokenByHash((await import('../src/system.js')).sha256Hex(a.access_token)))!.grantId
    expect((await revocation().revoke({ kind: 'grant', grantId }, admin)).grants).toBe(1)
    expect((await introspect(a.refresh_token)).active).toBe(false)
    expect((await introspect(b.access_token)).active).toBe(true)
    expect((await revocation().revoke({ kind: 'token', token: b.refresh_token }, admin)).grants).toBe(1)
    expect((await introspect(b.access_token)).active).toBe(false)
    expect((await revocation().revoke({ kind: 'token', token: 'unknown' }, admin)).grants).toBe(0)
  })

  it('kill switch: revokes everything issued before a time, not what comes after', async () => {
    const old = await login('mallory')
    t.clock.advance(10)
    const cut = t.clock.nowSeconds()
    t.clock.advance(10)
    const fresh = await login('mallory')
    const result = await revocation().revoke({ kind: 'before', time: cut }, admin)
    expect(result.grants).toBeGreaterThanOrEqual(1)
    expect((await introspect(old.access_token)).active).toBe(false)
    expect((await introspect(fresh.access_token)).active).toBe(true)
  })

  it('phishing remediation: dry run lists, then revokes families and denies open codes from a CIDR', async () => {
    const phished = await login('alice', '198.51.100.23')
    const phished2 = await login('mallory', '198.51.100.200')
    const safe = await login('alice', '192.0.2.50')
    // An approved but not yet redeemed code from the same network must never turn into tokens.
    const open = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' }, { 'x-forwarded-for': '198.51.100.99' })
    await approveAs(t.url, open.json.user_code)

    const dry = await revocation().revoke({ kind: 'pattern', pattern: { requestIp: '198.51.100.0/24' } }, { ...admin, dryRun: true })
    expect(dry).toMatchObject({ dryRun: true, grants: 2, deviceAuthorizations: 1 })
    expect(dry.listed.map((g) => g.requestIp).sort()).toEqual(['198.51.100.200', '198.51.100.23'])
    expect((await introspect(phished.access_token)).active).toBe(true)

    const onlyAlice = await revocation().revoke({ kind: 'pattern', pattern: { requestIp: '198.51.100.0/24', approvedBy: 'alice' } }, { ...admin, dryRun: true })
    expect(onlyAlice.grants).toBe(1)

    const done = await revocation().revoke({ kind: 'pattern', pattern: { requestIp: '198.51.100.0/24' } }, admin)
    expect(done).toMatchObject({ grants: 2, deviceAuthorizations: 1 })
    expect((await introspect(phished.access_token)).active).toBe(false)
    expect((await introspect(phished2.refresh_token)).active).toBe(false)
    expect((await introspect(safe.access_token)).active).toBe(true)
    const poll = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: open.json.device_code, client_id: 'cli' })
    expect(poll.json.error).toBe('access_denied')
    await expect(revocation().revoke({ kind: 'pattern', pattern: {} }, admin)).rejects.toBeInstanceOf(RevocationTargetError)
    await expect(revocation().revoke({ kind: 'pattern', pattern: { requestIp: '10.0.0.0/99' } }, admin)).rejects.toBeInstanceOf(RevocationTargetError)
  })

  it('revokes by client', async () => {
    const cc = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect((await introspect(cc.json.access_token)).active).toBe(true)
    expect((await revocation().revoke({ kind: 'client', clientId: 'conf' }, admin)).grants).toBeGreaterThanOrEqual(1)
    expect((await introspect(cc.json.access_token)).active).toBe(false)
  })
})

describe('inventory', () => {
  it('shows families with lineage, origin and last use (from introspection with client_ip, at most once a minute)', async () => {
    t.clock.freeze() // last use is compared to the second; real time must not tick between request and check
    t.clock.advance(5) // a creation second of its own: the newest family below is this one
    const tok = await login('mallory', '203.0.113.77')
    await introspect(tok.access_token, { client_ip: '192.0.2.9' })
    const page = await listInventory(t.server.store, t.clock, { subject: 'mallory', status: 'active', limit: 1 })
    const item = page.items[0]!
    expect(item).toMatchObject({ status: 'active', subject: 'mallory', client_id: 'cli', last_used_ip: '192.0.2.9' })
    expect(item.device_authorization).toMatchObject({ request_ip: '203.0.113.77' })
    expect(item.last_used_at).toBe(t.clock.nowSeconds())
    const firstUse = item.last_used_at
    t.clock.advance(10)
    await introspect(tok.access_token, { client_ip: '192.0.2.9' })
    const lastUsed = async () => (await t.server.store.listGrantSummaries({ ids: [item.grant_id] }, { limit: 1 }))[0]!.lastUsedAt
    expect(await lastUsed()).toBe(firstUse)
    t.clock.advance(60)
    await introspect(tok.access_token, { client_ip: '192.0.2.9' })
    expect(await lastUsed()).toBe(t.clock.nowSeconds())

    const r = await refresh(tok.refresh_token)
    expect(r.status).toBe(200)
    const lineage = (await describeLineage(t.server.store, t.clock, item.grant_id)) as any
    expect(lineage.lineage.device_authorization.request_ip).toBe('203.0.113.77')
    expect(lineage.lineage.approval.subject).toBe('mallory')
    expect(lineage.lineage.access_tokens).toHaveLength(2)
    expect(lineage.lineage.refresh_tokens).toHaveLength(2)
    expect(page.next_cursor).not.toBeNull()
    const next = await listInventory(t.server.store, t.clock, { subject: 'mallory', status: 'active', limit: 1, cursor: page.next_cursor! })
    expect(next.items[0]?.grant_id).not.toBe(item.grant_id)
  })
})

describe('revoking 100,000 families of one user (SQLite)', () => {
  it('revokes every family of the user and no one else\'s, in one UPDATE rather than a loop (the timed figure is bench scenario g)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devicegate-revoke-'))
    const file = join(dir, 'big.db')
    try {
      const store = await openStore(`sqlite:${file}`)
      const db = new Database(file)
      const now = Math.floor(Date.now() / 1000)
      const insertGrant = db.prepare('insert into grants (id, client_id, subject, scope, created_at, expires_at) values (?, ?, ?, ?, ?, ?)')
      const insertAccess = db.prepare("insert into access_tokens (token_hash, jti, grant_id, client_id, subject, scope, issued_at, expires_at, format) values (?, ?, ?, 'cli', 'bulk', 'read', ?, ?, 'jwt')")
      db.transaction(() => {
        for (let i = 0; i < 100_000; i++) {
          insertGrant.run(`g${i}`, 'cli', 'bulk', 'read', now - 100, now + 86_400)
          insertAccess.run(randomBytes(16).toString('hex'), `j${i}`, `g${i}`, now - 100, now + 600)
        }
        for (let i = 0; i < 1000; i++) insertGrant.run(`other${i}`, 'cli', 'someone-else', 'read', now - 100, now + 86_400)
      })()
      db.close()
      const service = new RevocationService(store, { nowSeconds: () => now })
      const started = performance.now()
      const result = await service.revoke({ kind: 'user', subject: 'bulk' }, { actor: 'test', listLimit: 0 })
      const ms = performance.now() - started
      console.log(`revoked ${result.grants} families of one user in ${ms.toFixed(0)} ms (SQLite)`)
      expect(result.grants).toBe(100_000)
      // A bound, not a benchmark: a statement per family would take tens of seconds; the target
      // (under 1 s) is measured by `npm run bench -- --scenarios g` on a quiet machine.
      expect(ms).toBeLessThan(5000)
      expect(await store.countGrants({ subject: 'bulk', revoked: false })).toBe(0)
      expect(await store.countGrants({ subject: 'someone-else', revoked: false })).toBe(1000)
      await store.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
