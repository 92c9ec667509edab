/**
 * The resource-server helper (`devicegate/resource`) and the revocation feed: RFC 6750 §3 and
 * RFC 9449 §7 challenges, every DPoP proof check at the resource, audience (RFC 8707), expiry,
 * revocation within the configured delay, introspection mode, JWKS refetch on an unknown kid.
 */
import type { FastifyInstance } from 'fastify'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildResourceApi } from '../examples/resource-api.js'
import { parseConfig } from '../src/config/load.js'
import { createResourceServer, ResourceAuthError } from '../src/resource/index.js'
import { ath, dpopKey, makeProof, type DpopKey, type ProofOptions } from './support/dpop.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const RS_CREDENTIALS = { clientId: 'rs', clientSecret: FIXTURE.rsSecret }

let t: TestServer
let api: FastifyInstance
let apiUrl = ''
let audience = ''
let k1: DpopKey
let k2: DpopKey

beforeAll(async () => {
  // The API's audience must be known before the AS config: reserve the API port first.
  const { createServer } = await import('node:net')
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => resolve(p))
    })
  })
  apiUrl = `http://127.0.0.1:${port}`
  audience = `${apiUrl}/`
  const base = await fixtureConfigFile()
  t = await startTestServer({
    config: parseConfig({
      ...base,
      clients: [
        ...base.clients,
        { client_id: 'api-cli', name: 'API CLI', type: 'public', grant_types: [DEVICE_GRANT, 'refresh_token'], scopes: ['read', 'write', 'offline_access'], default_scopes: ['read'], resources: [audience] },
        { client_id: 'api-opaque', name: 'Opaque API CLI', type: 'public', grant_types: [DEVICE_GRANT], scopes: ['read'], resources: [audience], access_token_format: 'opaque' },
      ],
    }),
  })
  api = await buildResourceApi({ issuer: t.url, audience, baseUrl: apiUrl, credentials: RS_CREDENTIALS })
  await api.listen({ host: '127.0.0.1', port })
  k1 = await dpopKey()
  k2 = await dpopKey()
})
afterAll(async () => {
  await api?.close()
  await t?.close()
})

/** Device flow for `api-cli`; bound to `key` when given; `resource` = the API unless told. */
async function tokens(opts: { key?: DpopKey; scope?: string; resource?: string | null; clientId?: string } = {}) {
  const form: Record<string, string> = { client_id: opts.clientId ?? 'api-cli', scope: opts.scope ?? 'read' }
  if (opts.resource !== null) form.resource = opts.resource ?? audience
  const da = await postForm(`${t.url}/device_authorization`, form)
  expect(da.status).toBe(200)
  await approveAs(t.url, da.json.user_code)
  const headers: Record<string, string> = opts.key ? { DPoP: await makeProof(opts.key, { htu: `${t.url}/token`, now: t.clock.nowSeconds() }) } : {}
  const res = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: da.json.device_code, client_id: form.client_id! }, headers)
  expect(res.status).toBe(200)
  return res.json as { access_token: string; token_type: string }
}

async function callApi(path: string, init: { token?: string; scheme?: string; proof?: string | string[]; method?: string } = {}) {
  const headers = new Headers()
  if (init.token) headers.set('authorization', `${init.scheme ?? 'DPoP'} ${init.token}`)
  for (const p of [init.proof ?? []].flat()) headers.append('DPoP', p)
  const res = await fetch(apiUrl + path, { method: init.method ?? 'GET', headers })
  const text = await res.text()
  return { status: res.status, wwwAuthenticate: res.headers.get('www-authenticate') ?? '', cacheControl: res.headers.get('cache-control'), body: text ? JSON.parse(text) : undefined }
}

const apiProof = (key: DpopKey, token: string, opts: Partial<ProofOptions> = {}) =>
  makeProof(key, { htm: 'GET', htu: `${apiUrl}/me`, ath: ath(token), ...opts })

describe('RFC 6750 §3 / RFC 9449 §7.1 challenges', () => {
  it('answers a request without credentials with 401, a DPoP challenge with algs and a Bearer challenge, no error code', async () => {
    const res = await callApi('/me')
    expect(res.status).toBe(401)
    expect(res.wwwAuthenticate).toMatch(/DPoP realm="example-api", algs="ES256 EdDSA RS256 PS256"/)
    expect(res.wwwAuthenticate).toMatch(/Bearer realm="example-api"/)
    expect(res.wwwAuthenticate).not.toMatch(/error=/)
    expect(res.cacheControl).toBe('no-store')
    // RFC 6750 §3.1: no error code "or other error information" in the body either.
    expect(res.body).toEqual({})
  })

  it('answers a malformed Bearer or DPoP Authorization header with 400 invalid_request (RFC 6750 §3.1)', async () => {
    for (const authorization of ['Bearer', 'DPoP a b', 'Bearer not!a!token']) {
      const res = await fetch(`${apiUrl}/me`, { headers: { authorization } })
      expect(res.status, authorization).toBe(400)
      expect(res.headers.get('www-authenticate'), authorization).toMatch(/error="invalid_request"/)
      expect(res.headers.get('cache-control')).toBe('no-store')
    }
  })

  it('answers two Authorization header fields with 400 invalid_request, whichever comes first (RFC 6750 §3.1, RFC 9110 §5.3)', async () => {
    const { access_token } = await tokens()
    const { request } = await import('node:http')
    const u = new URL(`${apiUrl}/me`)
    for (const fields of [[`Bearer ${access_token}`, 'Basic abc'], ['Basic abc', `Bearer ${access_token}`]]) {
      const res = await new Promise<{ status: number; challenge: unknown }>((resolve, reject) => {
        const req = request({ host: u.hostname, port: u.port, path: u.pathname, headers: ['host', u.host, ...fields.flatMap((f) => ['authorization', f])] }, (r) => {
          r.resume().on('end', () => resolve({ status: r.statusCode!, challenge: r.headers['www-authenticate'] }))
        })
        req.on('error', reject).end()
      })
      expect(res.status, fields[0]!.split(' ')[0]).toBe(400)
      expect(String(res.challenge)).toMatch(/error="invalid_request"/)
    }
  })

  it('answers another scheme (Basic) like no credentials: 401, both challenges, no error code (RFC 6750 §3.1, unsupported method)', async () => {
    const res = await fetch(`${apiUrl}/me`, { headers: { authorization: 'Basic abc' } })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('DPoP realm="example-api", algs="ES256 EdDSA RS256 PS256", Bearer realm="example-api"')
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.text()).toBe('{}')
  })
})

describe('DPoP-bound tokens at the resource (RFC 9449 §7)', () => {
  let token = ''
  beforeAll(async () => {
    const issued = await tokens({ key: k1, scope: 'read' })
    expect(issued.token_type).toBe('DPoP')
    token = issued.access_token
  })

  it('accepts the token with a valid proof and reports who and what', async () => {
    const res = await callApi('/me', { token, proof: await apiProof(k1, token) })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ sub: 'alice', client_id: 'api-cli', scope: 'read', token_type: 'DPoP', jkt: k1.jkt })
  })

  it('refuses bearer use of a DPoP-bound token with DPoP error="invalid_token" (RFC 9449 §7.2)', async () => {
    const res = await callApi('/me', { token, scheme: 'Bearer' })
    expect(res.status).toBe(401)
    expect(res.wwwAuthenticate).toMatch(/^DPoP .*error="invalid_token"/)
    expect(res.wwwAuthenticate).toMatch(/algs="ES256 EdDSA RS256 PS256"/)
  })

  const BAD: Array<[string, (token: string) => Promise<string | string[] | undefined>]> = [
    ['no proof', async () => undefined],
    ['two DPoP headers', async (tk) => [await apiProof(k1, tk), await apiProof(k1, tk)]],
    ['a wrong ath', async (tk) => apiProof(k1, tk, { ath: ath(tk + 'x') })],
    ['no ath', async () => makeProof(k1, { htm: 'GET', htu: `${apiUrl}/me` })],
    ['htm POST for a GET', async (tk) => apiProof(k1, tk, { htm: 'POST' })],
    ['htu of another path', async (tk) => apiProof(k1, tk, { htu: `${apiUrl}/notes` })],
    ['htu of the authorization server', async (tk) => apiProof(k1, tk, { htu: `${t.url}/me` })],
    ['a stale iat', async (tk) => apiProof(k1, tk, { iatOffset: -600 })],
    ['alg none', async (tk) => apiProof(k1, tk, { alg: 'none' })],
    ['alg HS256', async (tk) => apiProof(k1, tk, { alg: 'HS256' })],
    ['a private jwk', async (tk) => apiProof(k1, tk, { jwk: k1.privateJwk })],
    ['typ JWT', async (tk) => apiProof(k1, tk, { typ: 'JWT' })],
    ['a corrupted signature', async (tk) => apiProof(k1, tk, { badSignature: true })],
  ]
  for (const [name, make] of BAD) {
    it(`refuses ${name} with 401 DPoP error="invalid_dpop_proof"`, async () => {
      const res = await callApi('/me', { token, ...(await make(token).then((p) => (p === undefined ? {} : { proof: p }))) })
      expect(res.status).toBe(401)
      expect(res.wwwAuthenticate).toMatch(/^DPoP .*error="invalid_dpop_proof"/)
      expect(res.cacheControl).toBe('no-store')
    })
  }

  it('refuses two DPoP header fields by RFC 9449 §4.3 check 1 (read from the raw lines), whichever line is empty', async () => {
    const proof = await apiProof(k1, token)
    const { request } = await import('node:http')
    const u = new URL(`${apiUrl}/me`)
    for (const fields of [[proof, await apiProof(k1, token)], [proof, ''], ['', proof]]) {
      // node's client sends an array as separate field lines (fetch would join them into one).
      const res = await new Promise<{ status: number; challenge: unknown; body: string }>((resolve, reject) => {
        const req = request({ host: u.hostname, port: u.port, path: u.pathname, headers: { authorization: `DPoP ${token}`, dpop: fields } }, (r) => {
          let body = ''
          r.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: r.statusCode!, challenge: r.headers['www-authenticate'], body }))
        })
        req.on('error', reject).end()
      })
      expect(res.status).toBe(401)
      expect(String(res.challenge)).toMatch(/^DPoP .*error="invalid_dpop_proof", error_description="exactly one DPoP header is allowed"/)
      expect(JSON.parse(res.body)).toEqual({ error: 'invalid_dpop_proof', error_description: 'exactly one DPoP header is allowed' })
    }
    // Nothing was burnt: the proof alone is accepted.
    expect((await callApi('/me', { token, proof })).status).toBe(200)
  })

  it('RFC 9449 §4.3 check 9, §11.1 with baseUrl set: an absolute-form request (GET http://other.example/me, RFC 9112 §3.2.2) is judged against baseUrl, so a proof made for another server is refused', async () => {
    const { request } = await import('node:http')
    const u = new URL(apiUrl)
    const get = (target: string, proof: string) =>
      new Promise<{ status: number; challenge: unknown }>((resolve, reject) => {
        // node's client writes `path` as the request target: here the absolute form.
        const req = request({ host: u.hostname, port: u.port, path: target, headers: { authorization: `DPoP ${token}`, dpop: proof } }, (r) => {
          r.resume().on('end', () => resolve({ status: r.statusCode!, challenge: r.headers['www-authenticate'] }))
        })
        req.on('error', reject).end()
      })
    // A proof the client made for another server (one it was lured to, with the same path): the
    // target names that server, but this API is at baseUrl.
    const elsewhere = await get('http://other.example/me', await apiProof(k1, token, { htu: 'http://other.example/me' }))
    expect(elsewhere.status).toBe(401)
    expect(String(elsewhere.challenge)).toMatch(/^DPoP .*error="invalid_dpop_proof"/)
    // The absolute form itself is accepted (RFC 9112 §3.2.2): its path, under baseUrl.
    expect((await get(`${apiUrl}/me?x=1`, await apiProof(k1, token))).status).toBe(200)
  })

  it('refuses a valid proof by another key than cnf.jkt with 401 DPoP error="invalid_token" (RFC 9449 §7.1)', async () => {
    const res = await callApi('/me', { token, proof: await apiProof(k2, token) })
    expect(res.status).toBe(401)
    expect(res.wwwAuthenticate).toMatch(/^DPoP .*error="invalid_token"/)
    expect(res.cacheControl).toBe('no-store')
    // The rightful holder's proof still works (the refused one was not remembered as used).
    expect((await callApi('/me', { token, proof: await apiProof(k1, token) })).status).toBe(200)
  })

  it('refuses a replayed proof (its own jti cache, RFC 9449 §11.1)', async () => {
    const proof = await apiProof(k1, token)
    expect((await callApi('/me', { token, proof })).status).toBe(200)
    const again = await callApi('/me', { token, proof })
    expect(again.status).toBe(401)
    expect(again.wwwAuthenticate).toMatch(/error="invalid_dpop_proof"/)
  })

  it('answers 403 insufficient_scope with the needed scope', async () => {
    const res = await callApi('/notes', { token, method: 'POST', proof: await apiProof(k1, token, { htm: 'POST', htu: `${apiUrl}/notes` }) })
    expect(res.status).toBe(403)
    // After the plugin verified the request, requireAccess' scope refusal carries the server's realm and algs.
    expect(res.wwwAuthenticate).toBe('DPoP realm="example-api", error="insufficient_scope", error_description="the access token lacks a required scope", scope="write", algs="ES256 EdDSA RS256 PS256"')
  })
})

describe('bearer tokens, audience, expiry and signature', () => {
  it('accepts an unbound token as Bearer, but not with the DPoP scheme', async () => {
    const { access_token, token_type } = await tokens({ scope: 'read write' })
    expect(token_type).toBe('Bearer')
    expect((await callApi('/me', { token: access_token, scheme: 'Bearer' })).body).toMatchObject({ token_type: 'Bearer', jkt: null })
    const res = await callApi('/me', { token: access_token, scheme: 'DPoP', proof: await makeProof(k1, { htm: 'GET', htu: `${apiUrl}/me`, ath: ath(access_token) }) })
    expect(res.status).toBe(401)
    expect(res.wwwAuthenticate).toMatch(/error="invalid_token"/)
    const post = await fetch(`${apiUrl}/notes`, { method: 'POST', headers: { authorization: `Bearer ${access_token}` } })
    expect(post.status).toBe(201)
  })

  it('refuses a token for another audience (RFC 8707): aud = the issuer when no resource was requested', async () => {
    const { access_token } = await tokens({ resource: null })
    const res = await callApi('/me', { token: access_token, scheme: 'Bearer' })
    expect(res.status).toBe(401)
    expect(res.wwwAuthenticate).toMatch(/^Bearer .*error="invalid_token"/)
  })

  it('refuses an expired token, a token with a bad signature and one not typed at+jwt', async () => {
    const { access_token } = await tokens()
    const later = createResourceServer({ issuer: t.url, audience, revocation: { mode: 'none' }, nowMs: () => Date.now() + 3600_000 })
    await expect(later.verifyRequest({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${access_token}` } })).rejects.toMatchObject({
      status: 401,
      error: 'invalid_token',
      description: 'the access token has expired',
    })
    const rs = createResourceServer({ issuer: t.url, audience, revocation: { mode: 'none' } })
    const [h, p, s] = access_token.split('.') as [string, string, string]
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), scope: 'read write' })).toString('base64url')}.${s}`
    await expect(rs.verifyRequest({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${forged}` } })).rejects.toBeInstanceOf(ResourceAuthError)
    const notAt = await new SignJWT({ client_id: 'x', scope: 'read' })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer(t.url)
      .setAudience(audience)
      .setSubject('alice')
      .setJti('j')
      .setExpirationTime('5m')
      .sign(k1.privateKey)
    await expect(rs.verifyRequest({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${notAt}` } })).rejects.toMatchObject({ error: 'invalid_token' })
    later.close()
    rs.close()
  })

  it('refetches the JWKS for an unknown kid after a key rotation', async () => {
    const rs = createResourceServer({ issuer: t.url, audience, revocation: { mode: 'none' } })
    const first = await tokens()
    await rs.verifyRequest({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${first.access_token}` } })
    await t.server.keys.rotate(600)
    await new Promise((r) => setTimeout(r, 1100)) // the default JWKS cooldown (1 s) since the first fetch
    const second = await tokens()
    expect(JSON.parse(Buffer.from(second.access_token.split('.')[0]!, 'base64url').toString()).kid).not.toBe(
      JSON.parse(Buffer.from(first.access_token.split('.')[0]!, 'base64url').toString()).kid,
    )
    await expect(rs.verifyRequest({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${second.access_token}` } })).resolves.toMatchObject({ subject: 'alice' })
    rs.close()
  })
})

describe('revocation reaches the resource server', () => {
  async function refusedWithinMs(token: string, key: DpopKey): Promise<number> {
    const started = Date.now()
    for (;;) {
      const res = await callApi('/me', { token, proof: await apiProof(key, token) })
      if (res.status === 401) {
        expect(res.wwwAuthenticate).toMatch(/error="invalid_token"/)
        return Date.now() - started
      }
      expect(res.status).toBe(200)
      if (Date.now() - started > 5000) throw new Error('still accepted after 5 s')
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  it('refuses a token revoked at the server (RFC 7009) within 2 s by default', async () => {
    const { access_token } = await tokens({ key: k1 })
    const first = await callApi('/me', { token: access_token, proof: await apiProof(k1, access_token) })
    expect(first.wwwAuthenticate).toBe('')
    expect(first.status).toBe(200)
    await new Promise((r) => setTimeout(r, 300))
    const revoked = await postForm(`${t.url}/revoke`, { token: access_token, client_id: 'api-cli' })
    expect(revoked.status).toBe(200)
    expect(await refusedWithinMs(access_token, k1)).toBeLessThan(2000)
  })

  it('refuses the tokens of a retired device within 2 s (its family is revoked)', async () => {
    const key = await dpopKey()
    const { access_token } = await tokens({ key })
    const { createDeviceRegistry } = await import('../src/governance/devices.js')
    const registry = createDeviceRegistry({ store: t.server.store, clock: t.clock })
    await registry.register({ jkt: key.jkt, label: 'lost laptop' })
    expect((await callApi('/me', { token: access_token, proof: await apiProof(key, access_token) })).status).toBe(200)
    await registry.retire(key.jkt)
    expect(await refusedWithinMs(access_token, key)).toBeLessThan(2000)
  })

  it('introspection mode accepts opaque tokens and refuses them once revoked, within the cache TTL', async () => {
    const rs = createResourceServer({ issuer: t.url, audience, revocation: { mode: 'introspection', credentials: RS_CREDENTIALS, cacheTtlMs: 500 } })
    const { access_token } = await tokens({ clientId: 'api-opaque' })
    expect(access_token.startsWith('dga_')).toBe(true)
    const req = { method: 'GET', url: '/me', headers: { authorization: `Bearer ${access_token}` } }
    await expect(rs.verifyRequest(req)).resolves.toMatchObject({ subject: 'alice', clientId: 'api-opaque' })
    await postForm(`${t.url}/revoke`, { token: access_token, client_id: 'api-opaque' })
    await new Promise((r) => setTimeout(r, 600))
    await expect(rs.verifyRequest(req)).rejects.toMatchObject({ error: 'invalid_token' })
    rs.close()
  })

  it('fails closed (503) when the revocation feed cannot be reached', async () => {
    const { access_token } = await tokens()
    const rs = createResourceServer({
      issuer: t.url,
      audience,
      revocation: { mode: 'feed', credentials: RS_CREDENTIALS, url: 'http://127.0.0.1:1/revocations', pollIntervalMs: 100, maxStalenessMs: 200 },
    })
    const err = await rs.verifyRequest({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${access_token}` } }).catch((e: unknown) => e)
    expect(err).toMatchObject({ status: 503, error: 'temporarily_unavailable' })
    rs.close()
  })
})

describe('GET /revocations (the revocation feed)', () => {
  it('answers 401 invalid_client with a Basic challenge without valid Basic credentials', async () => {
    const none = await fetch(`${t.url}/revocations?since=0`)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic/)
    expect(((await none.json()) as { error: string }).error).toBe('invalid_client')
    const wrong = await fetch(`${t.url}/revocations?since=0`, { headers: { authorization: basic('rs', 'wrong') } })
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Basic/)
  })

  it('answers 403 unauthorized_client, without a challenge, to an authenticated client not allowed to introspect', async () => {
    const res = await fetch(`${t.url}/revocations?since=0`, { headers: { authorization: basic('conf', FIXTURE.confSecret) } })
    expect(res.status).toBe(403)
    expect(res.headers.get('www-authenticate')).toBeNull()
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(((await res.json()) as { error: string }).error).toBe('unauthorized_client')
  })

  it('answers invalid_request for a malformed since', async () => {
    const res = await fetch(`${t.url}/revocations?since=yesterday`, { headers: { authorization: basic('rs', FIXTURE.rsSecret) } })
    expect(res.status).toBe(400)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(((await res.json()) as { error: string }).error).toBe('invalid_request')
  })

  it('lists revoked access tokens by jti and revoked families since a time, with the server time', async () => {
    t.clock.freeze() // `now` is compared to the second
    const before = t.clock.nowSeconds()
    const { access_token } = await tokens()
    const jti = JSON.parse(Buffer.from(access_token.split('.')[1]!, 'base64url').toString()).jti as string
    await postForm(`${t.url}/revoke`, { token: access_token, client_id: 'api-cli' })
    const res = await fetch(`${t.url}/revocations?since=${before}`, { headers: { authorization: basic('rs', FIXTURE.rsSecret) } })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = (await res.json()) as { now: number; access_tokens: Array<{ jti: string }>; grants: unknown[] }
    expect(body.now).toBe(t.clock.nowSeconds())
    expect(body.access_tokens.map((a) => a.jti)).toContain(jti)
    const later = (await (await fetch(`${t.url}/revocations?since=${body.now + 1}`, { headers: { authorization: basic('rs', FIXTURE.rsSecret) } })).json()) as {
      access_tokens: Array<{ jti: string }>
    }
    expect(later.access_tokens.map((a) => a.jti)).not.toContain(jti)
  })
})
