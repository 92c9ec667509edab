/**
 * Global Token Revocation (draft-parecki-oauth-global-token-revocation): a security tool with the
 * dedicated scope revokes every token of a person by subject identifier; answers per the draft;
 * audited; each revoked family emits a CAEP session-revoked SET.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EVENT_TYPES } from '../src/signals/ssf/events.js'
import { sha256Hex } from '../src/system.js'
import { startTestServer, type TestServer } from './support/server.js'
import { clientToken, deviceLogin, json, signalsConfig } from './support/signals.js'

let t: TestServer
let tool: string
const url = () => `${t.url}/global-token-revocation`

beforeAll(async () => {
  t = await startTestServer({ config: await signalsConfig() })
  tool = await clientToken(t.url, 'sec-tool')
})
afterAll(async () => {
  await t?.close()
})

async function liveFamilies(refreshTokens: string[]): Promise<number> {
  let live = 0
  for (const r of refreshTokens) if ((await t.server.store.findRefreshTokenByHash(sha256Hex(r)))!.grantRevokedAt === null) live++
  return live
}

describe('draft-parecki-oauth-global-token-revocation', () => {
  it('is announced in the authorization server metadata', async () => {
    const meta = await json(`${t.url}/.well-known/oauth-authorization-server`, 'GET', undefined)
    expect(meta.body).toMatchObject({ global_token_revocation_endpoint: `${t.issuer}/global-token-revocation` })
  })

  it('revokes every family of the user named by iss_sub (204), audits it and emits session-revoked for each', async () => {
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
    expect(events).toHaveLength(2)
    for (const e of events) {
      expect(Object.keys(e.events)).toEqual([EVENT_TYPES.sessionRevoked])
      expect(e.sub_id.user.identifiers[0]).toEqual({ format: 'iss_sub', iss: t.issuer, sub: 'alice' })
    }
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
})
