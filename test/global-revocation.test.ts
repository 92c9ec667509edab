/**
 * Global Token Revocation (draft-parecki-oauth-global-token-revocation): a security tool with the
 * dedicated scope revokes every token of a person by subject identifier; answers per the draft;
 * audited; each revoked family emits a CAEP session-revoked SET.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EVENT_TYPES } from '../src/signals/ssf/events.js'
import { sha256Hex } from '../src/system.js'
import { startTestServer, type TestServer } from './support/server.js'
import { clientToken, deviceLogin, json, signalsConfig } from './support/signals.js'

let t: TestServer
let tool: string
const url = () => `${t.url}/global-token-revocation`
const dir = mkdtempSync(join(tmpdir(), 'devicegate-gtr-'))
const dbFile = join(dir, 'devicegate.db')

beforeAll(async () => {
  t = await startTestServer({ config: await signalsConfig(), storageUrl: `sqlite:${dbFile}` })
  tool = await clientToken(t.url, 'sec-tool')
})
afterAll(async () => {
  await t?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function liveFamilies(refreshTokens: string[]): Promise<number> {
  let live = 0
  for (const r of refreshTokens) if ((await t.server.store.findRefreshTokenByHash(sha256Hex(r)))!.grantRevokedAt === null) live++
  return live
}

describe('draft-parecki-oauth-global-token-revocation', () => {
  it('is announced in the authorization server metadata', async () => {
    const meta = await json(`${t.url}/.well-known/oauth-authorization-server`, 'GET', undefined)
    // §6: the endpoint and how to authenticate, as IANA OAuth Access Token Types.
    expect(meta.body).toMatchObject({ global_token_revocation_endpoint: `${t.issuer}/global-token-revocation`, global_token_revocation_endpoint_auth_methods_supported: ['Bearer', 'DPoP'] })
  })

  it('revokes every family of the user named by iss_sub (204), audits it and emits session-revoked for the user and for each family', async () => {
    const receiver = await clientToken(t.url, 'receiver')
    const stream = await json(`${t.url}/ssf/stream`, 'POST', receiver, { delivery: { method: 'urn:ietf:rfc:8936' } })
    const poll = stream.body.delivery.endpoint_url.replace(t.issuer, t.url)
    const a = await deviceLogin(t.url)
    const b = await deviceLogin(t.url)
    expect(await liveFamilies([a.refresh_token, b.refresh_token])).toBe(2)
    const res = await json(url(), 'POST', tool, { sub_id: { format: 'iss_sub', iss: t.issuer, sub: 'alice' } })
    expect(res.status).toBe(204)
    expect(res.body).toBeUndefined()
    expect(await liveFamilies([a.refresh_token, b.refresh_token])).toBe(0)
    const audit = await t.server.store.listAuditEvents({ limit: 10_000 })
    expect(audit.find((e) => e.type === 'global_revocation.requested')).toMatchObject({ actor: 'client:sec-tool', subject: 'alice' })
    expect(audit.some((e) => e.type === 'token.revoked' && e.actor === 'client:sec-tool')).toBe(true)
    const sets = (await json(poll, 'POST', receiver, { returnImmediately: true })).body.sets as Record<string, string>
    const events = Object.values(sets).map((s) => JSON.parse(Buffer.from(s.split('.')[1]!, 'base64url').toString()) as { events: Record<string, unknown>; sub_id: any })
    // One session-revoked naming the user alone (all their sessions), then one per family.
    expect(events).toHaveLength(3)
    for (const e of events) expect(Object.keys(e.events)).toEqual([EVENT_TYPES.sessionRevoked])
    // The user-level SET names no session; each family's names its session and application.
    const userLevel = events.filter((e) => e.sub_id.session === undefined)
    expect(userLevel).toHaveLength(1)
    const perFamily = events.filter((e) => e.sub_id.session !== undefined)
    expect(perFamily).toHaveLength(2)
    for (const e of events) expect(e.sub_id.user.identifiers[0]).toEqual({ format: 'iss_sub', iss: t.issuer, sub: 'alice' })
  })

  it('finds the user by email (case-insensitively) and by opaque username', async () => {
    const a = await deviceLogin(t.url)
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'email', email: 'ALICE@example.COM' } })).status).toBe(204)
    const b = await deviceLogin(t.url)
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'opaque', id: 'alice' } })).status).toBe(204)
    expect(await liveFamilies([a.refresh_token, b.refresh_token])).toBe(0)
  })

  it('answers 404 for an unknown user or another issuer\'s subject, 400 for malformed requests', async () => {
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'iss_sub', iss: t.issuer, sub: 'nobody' } })).status).toBe(404)
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'iss_sub', iss: 'https://other.example', sub: 'alice' } })).status).toBe(404)
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'email', email: 'nobody@example.com' } })).status).toBe(404)
    for (const body of [{}, { sub_id: 'alice' }, { sub_id: { format: 'phone_number', phone_number: '+1' } }, { sub_id: { format: 'iss_sub', iss: t.issuer } }, '{oops', [1]]) {
      const res = await json(url(), 'POST', tool, body)
      expect(res.status, JSON.stringify(body)).toBe(400)
      expect(res.body).toMatchObject({ error: 'invalid_request' })
    }
  })

  it('§3.4.2: answers a malformed identifier with 400 invalid_request in every format (U+0000 or another control character in opaque, email, iss_sub, aliases), not 404, revoking nothing', async () => {
    const a = await deviceLogin(t.url)
    for (const bad of ['ali\u0000ce', 'ali\u0001ce', 'alice\n', 'ali\u007fce', 'ali\u0085ce']) {
      for (const subId of [
        { format: 'opaque', id: bad },
        { format: 'email', email: `${bad}@example.com` },
        { format: 'iss_sub', iss: t.issuer, sub: bad },
        { format: 'iss_sub', iss: `${t.issuer}${bad}`, sub: 'alice' },
        { format: 'aliases', identifiers: [{ format: 'opaque', id: 'alice' }, { format: 'opaque', id: bad }] },
      ]) {
        const res = await json(url(), 'POST', tool, { sub_id: subId })
        expect(res.status, JSON.stringify(subId)).toBe(400)
        expect(res.headers.get('cache-control')).toBe('no-store')
        expect(res.body).toMatchObject({ error: 'invalid_request' })
      }
    }
    expect(await liveFamilies([a.refresh_token])).toBe(1)
  })

  it('needs a token (401) carrying the dedicated scope (403)', async () => {
    const none = await json(url(), 'POST', undefined, { sub_id: { format: 'opaque', id: 'alice' } })
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm="devicegate"/)
    const wrong = await json(url(), 'POST', await clientToken(t.url, 'receiver'), { sub_id: { format: 'opaque', id: 'alice' } })
    expect(wrong.status).toBe(403)
    expect(wrong.body).toMatchObject({ error: 'insufficient_scope' })
    const user = await deviceLogin(t.url)
    const asUser = await json(url(), 'POST', user.access_token, { sub_id: { format: 'opaque', id: 'alice' } })
    expect(asUser.status).toBe(403)
  })

  it('§3.1: refuses a body that is not application/json with 400 invalid_request, revoking nothing', async () => {
    const a = await deviceLogin(t.url)
    for (const [type, body] of [
      ['application/x-www-form-urlencoded', 'sub_id=alice'],
      ['text/plain', JSON.stringify({ sub_id: { format: 'opaque', id: 'alice' } })],
      ['application/xml', '<sub_id format="opaque" id="alice"/>'],
    ] as const) {
      const res = await fetch(url(), { method: 'POST', headers: { authorization: `Bearer ${tool}`, 'content-type': type }, body })
      expect(res.status, type).toBe(400)
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    }
    const none = await fetch(url(), { method: 'POST', headers: { authorization: `Bearer ${tool}` } })
    expect(none.status).toBe(400)
    expect(await liveFamilies([a.refresh_token])).toBe(1)
  })

  it('§3.1: refuses a JSON body that cannot be stored (a lone surrogate, RFC 8259 §8.2; nesting past 32 levels) with 400 invalid_request, revoking nothing', async () => {
    const a = await deviceLogin(t.url)
    for (const body of ['{"sub_id":{"format":"opaque","id":"alice\\ud800"}}', `{"sub_id":{"format":"opaque","id":"alice"},"x":${'['.repeat(40)}${']'.repeat(40)}}`]) {
      const res = await fetch(url(), { method: 'POST', headers: { authorization: `Bearer ${tool}`, 'content-type': 'application/json' }, body })
      expect(res.status, body.slice(0, 60)).toBe(400)
      expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    }
    expect(await liveFamilies([a.refresh_token])).toBe(1)
  })

  it('§3.4.1: answers 204 with no body and no content type', async () => {
    await deviceLogin(t.url)
    const res = await fetch(url(), { method: 'POST', headers: { authorization: `Bearer ${tool}`, 'content-type': 'application/json' }, body: JSON.stringify({ sub_id: { format: 'opaque', id: 'alice' } }) })
    expect(res.status).toBe(204)
    expect(res.headers.get('content-type')).toBeNull()
    expect(await res.text()).toBe('')
  })

  it('§3.2: finds a person by their subject at an upstream identity provider (iss_sub with the IdP issuer)', async () => {
    const now = t.clock.nowSeconds()
    await t.server.store.insertPerson({
      id: 'p-6f1c', userName: 'carol', displayName: 'Carol', email: 'carol@example.com', status: 'active', source: 'provider', groups: [], risk: 0,
      upstreamIssuer: 'https://idp.example.com/', upstreamSub: 'af19c476f1dc4470fa3d0d9a25', externalId: null, manager: null, passwordHash: null, passwordChangedAt: null, scimJson: null, version: 1, createdAt: now, updatedAt: now,
    })
    const res = await json(url(), 'POST', tool, { sub_id: { format: 'iss_sub', iss: 'https://idp.example.com/', sub: 'af19c476f1dc4470fa3d0d9a25' } })
    expect(res.status).toBe(204)
    await t.server.governance.audit?.flush()
    const audit = await t.server.store.listAuditEvents({ limit: 10_000 })
    expect(audit.filter((e) => e.type === 'global_revocation.requested').map((e) => e.subject)).toContain('p-6f1c')
    // The same IdP, another subject: no such user.
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'iss_sub', iss: 'https://idp.example.com/', sub: 'someone-else' } })).status).toBe(404)
    // Found by the e-mail address the people store holds, and by login name as an opaque id.
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'email', email: 'Carol@Example.com' } })).status).toBe(204)
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'opaque', id: 'carol' } })).status).toBe(204)
  })

  it('RFC 9493 aliases: revokes the one user its identifiers name; 400 when they name different users', async () => {
    const a = await deviceLogin(t.url)
    const same = await json(url(), 'POST', tool, { sub_id: { format: 'aliases', identifiers: [{ format: 'email', email: 'alice@example.com' }, { format: 'opaque', id: 'alice' }] } })
    expect(same.status).toBe(204)
    expect(await liveFamilies([a.refresh_token])).toBe(0)
    const two = await json(url(), 'POST', tool, { sub_id: { format: 'aliases', identifiers: [{ format: 'opaque', id: 'alice' }, { format: 'opaque', id: 'mallory' }] } })
    expect(two.status).toBe(400)
    expect(two.body).toMatchObject({ error: 'invalid_request' })
  })

  it('§3.4.2: answers 422 when the user was found but their tokens could not be revoked, and a retry then succeeds', async () => {
    const a = await deviceLogin(t.url)
    const db = new Database(dbFile)
    try {
      db.exec("CREATE TRIGGER gtr_fail BEFORE UPDATE OF revoked_at ON grants BEGIN SELECT RAISE(ABORT, 'simulated failure'); END")
      const failed = await json(url(), 'POST', tool, { sub_id: { format: 'opaque', id: 'alice' } })
      expect(failed.status).toBe(422)
      expect(failed.headers.get('cache-control')).toBe('no-store')
      expect(failed.body).toMatchObject({ error: 'server_error' })
      expect(JSON.stringify(failed.body)).not.toContain('simulated')
      expect(await liveFamilies([a.refresh_token])).toBe(1)
      db.exec('DROP TRIGGER gtr_fail')
    } finally {
      db.close()
    }
    expect((await json(url(), 'POST', tool, { sub_id: { format: 'opaque', id: 'alice' } })).status).toBe(204)
    expect(await liveFamilies([a.refresh_token])).toBe(0)
  })
})
