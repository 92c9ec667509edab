/**
 * devicegate's own protected resources besides `/userinfo` (see resource-access-errors.test.ts):
 * Shared Signals stream management and poll, global token revocation, the signals admin API
 * (webhooks), the governance admin API and `/metrics`.
 *
 * - RFC 6750 §3.1: a request without credentials (or with another scheme) gets 401 and the bare
 *   challenge(s), with no error code "or other error information": the JSON body is `{}`.
 * - RFC 9449 §9 with §8.2: when `dpop.require_nonce` is on, every answer of the routes that take
 *   a DPoP-bound token carries the current `DPoP-Nonce` — 2xx and errors alike — so a client
 *   learns it without a use_dpop_nonce round trip; the public, cacheable SSF configuration does not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ath, dpopKey, makeProof } from './support/dpop.js'
import { basic, postForm, startTestServer, type TestServer } from './support/server.js'
import { clientToken, RECEIVER_SECRET, signalsConfig } from './support/signals.js'

const ALGS = 'ES256 EdDSA RS256 PS256'
const bare = (realm: string) => `Bearer realm="${realm}", DPoP realm="${realm}", algs="${ALGS}"`
const NONCE = /^[A-Za-z0-9_-]{43}$/

/** One answer as the wire has it: status, challenge, content type, nonce and body text. */
async function call(url: string, method: string, headers: Record<string, string> = {}, body?: string) {
  const res = await fetch(url, { method, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers }, ...(body !== undefined ? { body } : {}) })
  return {
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
    contentType: res.headers.get('content-type'),
    nonce: res.headers.get('dpop-nonce'),
    cacheControl: res.headers.get('cache-control'),
    body: await res.text(),
  }
}

describe('RFC 6750 §3.1: no credentials at the protected resources — the bare challenge, body {}', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await signalsConfig() })
  })
  afterAll(async () => t?.close())

  const cases: Array<[string, string, string, string | undefined]> = [
    ['SSF stream management', 'GET', '/ssf/stream', bare('devicegate-ssf')],
    ['SSF poll', 'POST', '/ssf/poll/some-stream', bare('devicegate-ssf')],
    ['global token revocation', 'POST', '/global-token-revocation', bare('devicegate')],
    ['the signals admin API', 'GET', '/admin/api/webhooks', bare('devicegate-admin')],
    ['the governance admin API', 'GET', '/admin/api/grants', 'Bearer realm="devicegate-admin"'],
  ]
  for (const [name, method, path, challenge] of cases)
    it(`${name}: no Authorization, a blank one or another scheme is 401 with the bare challenge and {}`, async () => {
      for (const headers of [{}, { authorization: '' }, { authorization: basic('receiver', RECEIVER_SECRET) }] as Record<string, string>[]) {
        const res = await call(`${t.url}${path}`, method, headers, method === 'POST' ? '{}' : undefined)
        expect({ ...res, headers }).toEqual({ status: 401, challenge, contentType: 'application/json; charset=utf-8', nonce: null, cacheControl: 'no-store', body: '{}', headers })
      }
    })

  const withBody: Array<[string, string, string, string]> = [
    ['SSF stream management', 'POST', '/ssf/stream', bare('devicegate-ssf')],
    ['SSF poll', 'POST', '/ssf/poll/some-stream', bare('devicegate-ssf')],
    ['global token revocation', 'POST', '/global-token-revocation', bare('devicegate')],
    ['the signals admin API', 'POST', '/admin/api/webhooks/x/resume', bare('devicegate-admin')],
  ]
  for (const [name, method, path, challenge] of withBody)
    it(`${name}: no credentials with a malformed body is still 401 with the bare challenge and {} — the body is not judged first (RFC 6750 §3.1)`, async () => {
      for (const [type, body] of [['application/json', '{'], ['application/json', '[1]'], ['text/plain', 'x']]) {
        const res = await call(`${t.url}${path}`, method, { 'content-type': type! }, body)
        expect({ type, body, status: res.status, challenge: res.challenge, text: res.body }).toEqual({ type, body, status: 401, challenge, text: '{}' })
      }
    })

  it('an unknown token still gets its error code in challenge and body (RFC 6750 §3.1 invalid_token)', async () => {
    const res = await call(`${t.url}/ssf/stream`, 'GET', { authorization: 'Bearer not-a-token' })
    expect(res.status).toBe(401)
    expect(res.challenge).toMatch(/error="invalid_token"/)
    expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_token' })
  })
})

describe('RFC 9449 §9 with §8.2: the current DPoP-Nonce on every answer of the DPoP-taking resources (dpop.require_nonce)', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await signalsConfig({}).then((c) => ({ ...c, dpop: { ...(c as { dpop?: object }).dpop, require_nonce: true } })) })
  })
  afterAll(async () => t?.close())

  it('SSF stream management: 200, the bare 401, 401 invalid_token and 403 carry the current nonce; the SSF configuration does not', async () => {
    const none = await call(`${t.url}/ssf/stream`, 'GET')
    expect(none).toMatchObject({ status: 401, challenge: bare('devicegate-ssf'), body: '{}' })
    expect(none.nonce).toMatch(NONCE)
    const token = await clientToken(t.url, 'receiver')
    const ok = await call(`${t.url}/ssf/stream`, 'GET', { authorization: `Bearer ${token}` })
    expect(ok.status).toBe(200)
    expect(ok.cacheControl).toBe('no-store')
    expect(ok.nonce).toBe(none.nonce)
    const unknown = await call(`${t.url}/ssf/stream`, 'GET', { authorization: 'Bearer not-a-token' })
    expect(unknown).toMatchObject({ status: 401, nonce: none.nonce })
    const noScope = await call(`${t.url}/ssf/stream`, 'GET', { authorization: `Bearer ${await clientToken(t.url, 'no-scope')}` })
    expect(noScope).toMatchObject({ status: 403, nonce: none.nonce })
    const configuration = await call(`${t.url}/.well-known/ssf-configuration`, 'GET')
    expect(configuration.status).toBe(200)
    expect(configuration.nonce).toBeNull()
  })

  it('global token revocation and the signals admin API: the bare 401 carries the current nonce', async () => {
    for (const [method, path] of [['POST', '/global-token-revocation'], ['GET', '/admin/api/webhooks']] as const) {
      const res = await call(`${t.url}${path}`, method, {}, method === 'POST' ? '{}' : undefined)
      expect(res.status, path).toBe(401)
      expect(res.nonce, path).toMatch(NONCE)
    }
  })

  it('a DPoP client that learnt the nonce from an answer uses it at once: no use_dpop_nonce answer on the way', async () => {
    const key = await dpopKey()
    // A DPoP-bound client_credentials token for the SSF receiver (the token endpoint's own nonce first).
    const first = await postForm(`${t.url}/token`, { grant_type: 'client_credentials' }, { authorization: basic('receiver', RECEIVER_SECRET), DPoP: await makeProof(key, { htu: `${t.issuer}/token`, now: t.clock.nowSeconds() }) })
    expect(first.json.error).toBe('use_dpop_nonce')
    const asNonce = first.headers.get('dpop-nonce')!
    const issued = await postForm(`${t.url}/token`, { grant_type: 'client_credentials' }, { authorization: basic('receiver', RECEIVER_SECRET), DPoP: await makeProof(key, { htu: `${t.issuer}/token`, now: t.clock.nowSeconds(), nonce: asNonce }) })
    expect(issued.status, issued.text).toBe(200)
    expect(issued.json.token_type).toBe('DPoP')
    const token = issued.json.access_token as string
    const learnt = (await call(`${t.url}/ssf/stream`, 'GET')).nonce!
    const res = await call(`${t.url}/ssf/stream`, 'GET', {
      authorization: `DPoP ${token}`,
      dpop: await makeProof(key, { htm: 'GET', htu: `${t.issuer}/ssf/stream`, ath: ath(token), now: t.clock.nowSeconds(), nonce: learnt }),
    })
    expect(res.status, res.body).toBe(200)
    expect(res.nonce).toBe(learnt)
  })
})
