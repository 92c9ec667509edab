/**
 * The answers of devicegate's own protected resources (here `/userinfo`; SSF stream management,
 * global token revocation and the signals admin API share `authenticateAccessToken`) to every
 * access-token and DPoP problem: RFC 6750 §3.1 (400 invalid_request, 401 invalid_token, 403
 * insufficient_scope, no error code without credentials), RFC 9449 §7.1 (401 with a `DPoP`
 * challenge carrying `algs` and `invalid_dpop_proof`), §7.2 (no Bearer downgrade) and §9 (401
 * use_dpop_nonce with `DPoP-Nonce`). Each answer is asserted exactly: status, `WWW-Authenticate`,
 * `Cache-Control: no-store`, the JSON `error`.
 */
import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseConfig } from '../src/config/load.js'
import { ath, dpopKey, makeProof, type DpopKey, type ProofOptions } from './support/dpop.js'
import { approveAs, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const REALM = 'devicegate-userinfo'
const ALGS = 'ES256 EdDSA RS256 PS256'
/** Both challenges, no error code (RFC 6750 §3.1, RFC 9449 §7.2). */
const BARE = `Bearer realm="${REALM}", DPoP realm="${REALM}", algs="${ALGS}"`
/** Both challenges, each with the error. */
const both = (error: string, extra = '') => `Bearer realm="${REALM}", error="${error}"${extra}, DPoP realm="${REALM}", algs="${ALGS}", error="${error}"${extra}`
/** The DPoP challenge only. */
const dpopOnly = (error: string) => `DPoP realm="${REALM}", algs="${ALGS}", error="${error}"`

async function config(extra: Record<string, unknown> = {}) {
  const base = await fixtureConfigFile()
  return parseConfig({
    ...base,
    ...extra,
    clients: [...base.clients, { client_id: 'oidc-cli', name: 'OIDC CLI', type: 'public', grant_types: [DEVICE_GRANT], scopes: ['openid', 'read'] }],
  })
}

let t: TestServer
let k1: DpopKey
let k2: DpopKey
beforeAll(async () => {
  t = await startTestServer({ config: await config() })
  k1 = await dpopKey()
  k2 = await dpopKey()
})
afterAll(async () => t?.close())

/** Device flow for `oidc-cli` on `server`, bound to `key` when given. */
async function login(server: TestServer, opts: { scope?: string; key?: DpopKey } = {}): Promise<string> {
  const da = await postForm(`${server.url}/device_authorization`, { client_id: 'oidc-cli', scope: opts.scope ?? 'openid' })
  expect(da.status).toBe(200)
  await approveAs(server.url, da.json.user_code)
  const nonce = da.headers.get('dpop-nonce')
  const headers: Record<string, string> = opts.key ? { DPoP: await makeProof(opts.key, { htu: `${server.issuer}/token`, now: server.clock.nowSeconds(), ...(nonce ? { nonce } : {}) }) } : {}
  const res = await postForm(`${server.url}/token`, { grant_type: DEVICE_GRANT, device_code: da.json.device_code, client_id: 'oidc-cli' }, headers)
  expect(res.status, res.text).toBe(200)
  expect(res.json.token_type).toBe(opts.key ? 'DPoP' : 'Bearer')
  return res.json.access_token as string
}

/** GET /userinfo (or `path`) with the given headers; the answer's status, challenge, no-store, nonce and error. */
async function userinfo(headers: Record<string, string>, server = t, path = '/userinfo') {
  const res = await fetch(`${server.url}${path}`, { headers })
  const body = (await res.json()) as { error?: string }
  return {
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
    cacheControl: res.headers.get('cache-control'),
    nonce: res.headers.get('dpop-nonce'),
    error: body.error,
  }
}

/** GET with header fields node's `fetch` cannot repeat (an array value is sent as several field lines). */
function rawGet(url: string, headers: Record<string, string | string[]>) {
  const u = new URL(url)
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'GET', headers }, (r) => {
      let body = ''
      r.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: r.statusCode!, headers: r.headers, body }))
    })
    req.on('error', reject).end()
  })
}

const userinfoProof = (key: DpopKey, token: string, opts: Partial<ProofOptions> = {}, server = t) =>
  makeProof(key, { htm: 'GET', htu: `${server.issuer}/userinfo`, ath: ath(token), now: server.clock.nowSeconds(), ...opts })

/** GET `url` with `headers`; status, challenge and the body as text. */
async function bareAnswer(url: string, headers: Record<string, string>) {
  const res = await fetch(url, { headers })
  return { status: res.status, challenge: res.headers.get('www-authenticate'), contentType: res.headers.get('content-type'), body: await res.text() }
}

describe('RFC 6750 §3.1 at /userinfo: no credentials, another scheme, a malformed header', () => {
  it('answers no Authorization header with 401, both challenges bare, and no error information in the body: {} (RFC 6750 §3.1)', async () => {
    expect(await userinfo({})).toEqual({ status: 401, challenge: BARE, cacheControl: 'no-store', nonce: null, error: undefined })
    expect(await bareAnswer(`${t.url}/userinfo`, {})).toEqual({ status: 401, challenge: BARE, contentType: 'application/json; charset=utf-8', body: '{}' })
  })

  it('answers another scheme (Basic) or a blank header as no credentials: 401, both challenges, body {} (RFC 6750 §3.1, unsupported method)', async () => {
    expect(await userinfo({ authorization: 'Basic YWxpY2U6cHc=' })).toEqual({ status: 401, challenge: BARE, cacheControl: 'no-store', nonce: null, error: undefined })
    for (const authorization of ['Basic YWxpY2U6cHc=', ''])
      expect(await bareAnswer(`${t.url}/userinfo`, { authorization })).toEqual({ status: 401, challenge: BARE, contentType: 'application/json; charset=utf-8', body: '{}' })
  })

  for (const authorization of ['Bearer', 'DPoP', 'Bearer a b', 'Bearer not!a!token', 'DPoP x, DPoP y'])
    it(`answers the malformed header ${JSON.stringify(authorization)} with 400 invalid_request (RFC 6750 §3.1)`, async () => {
      expect(await userinfo({ authorization })).toEqual({ status: 400, challenge: both('invalid_request'), cacheControl: 'no-store', nonce: null, error: 'invalid_request' })
    })

  it('answers two Authorization header fields with 400 invalid_request, whichever comes first (RFC 6750 §3.1: a repeated parameter; RFC 9110 §5.3)', async () => {
    const token = await login(t)
    for (const fields of [[`Bearer ${token}`, 'Basic Zm9vOmJhcg=='], ['Basic Zm9vOmJhcg==', `Bearer ${token}`], [`Bearer ${token}`, `Bearer ${token}`]]) {
      const res = await rawGet(`${t.url}/userinfo`, { authorization: fields })
      expect(res.status, fields.join(' | ')).toBe(400)
      expect(res.headers['www-authenticate']).toBe(both('invalid_request'))
      expect(res.headers['cache-control']).toBe('no-store')
      expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request' })
    }
  })

  it('answers an unknown token with 401 invalid_token (RFC 6750 §3.1)', async () => {
    expect(await userinfo({ authorization: 'Bearer not-a-token' })).toEqual({ status: 401, challenge: both('invalid_token'), cacheControl: 'no-store', nonce: null, error: 'invalid_token' })
  })

  it('answers a token without the openid scope with 403 insufficient_scope naming it (RFC 6750 §3.1)', async () => {
    const token = await login(t, { scope: 'read' })
    expect(await userinfo({ authorization: `Bearer ${token}` })).toEqual({
      status: 403,
      challenge: both('insufficient_scope', ', scope="openid"'),
      cacheControl: 'no-store',
      nonce: null,
      error: 'insufficient_scope',
    })
  })

  it('answers a revoked token with 401 invalid_token (RFC 6750 §3.1, RFC 7009)', async () => {
    const token = await login(t)
    expect((await userinfo({ authorization: `Bearer ${token}` })).status).toBe(200)
    expect((await postForm(`${t.url}/revoke`, { token, client_id: 'oidc-cli' })).status).toBe(200)
    expect(await userinfo({ authorization: `Bearer ${token}` })).toEqual({ status: 401, challenge: both('invalid_token'), cacheControl: 'no-store', nonce: null, error: 'invalid_token' })
  })
})

describe('RFC 9449 §7 at /userinfo: DPoP-bound tokens', () => {
  let token = ''
  beforeAll(async () => {
    token = await login(t, { key: k1 })
  })

  it('accepts the token with a valid proof', async () => {
    const res = await fetch(`${t.url}/userinfo`, { headers: { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token) } })
    expect(res.status).toBe(200)
  })

  it('RFC 9449 §7.2: refuses the DPoP-bound token sent as a bearer token with 401 invalid_token', async () => {
    expect(await userinfo({ authorization: `Bearer ${token}` })).toEqual({ status: 401, challenge: both('invalid_token'), cacheControl: 'no-store', nonce: null, error: 'invalid_token' })
  })

  it('RFC 9449 §7.1: answers the DPoP scheme with an unbound token with 401 invalid_token', async () => {
    const unbound = await login(t)
    const res = await userinfo({ authorization: `DPoP ${unbound}`, dpop: await userinfoProof(k1, unbound) })
    expect(res).toEqual({ status: 401, challenge: both('invalid_token'), cacheControl: 'no-store', nonce: null, error: 'invalid_token' })
  })

  it('RFC 9449 §7.1: answers a DPoP token without a proof with 401 invalid_dpop_proof on the DPoP challenge', async () => {
    expect(await userinfo({ authorization: `DPoP ${token}` })).toEqual({ status: 401, challenge: dpopOnly('invalid_dpop_proof'), cacheControl: 'no-store', nonce: null, error: 'invalid_dpop_proof' })
  })

  it('RFC 9449 §4.3 check 1, §7.1: answers two DPoP header fields with 401 invalid_dpop_proof', async () => {
    const proofs = [await userinfoProof(k1, token), await userinfoProof(k1, token)]
    const url = new URL(`${t.url}/userinfo`)
    const res = await new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'GET', headers: { authorization: `DPoP ${token}`, dpop: proofs } }, (r) => {
        let body = ''
        r.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: r.statusCode!, headers: r.headers, body }))
      })
      req.on('error', reject).end()
    })
    expect(res.status).toBe(401)
    expect(res.headers['www-authenticate']).toBe(dpopOnly('invalid_dpop_proof'))
    expect(res.headers['cache-control']).toBe('no-store')
    // Refused by check 1 (one field, read from the raw lines), not by the JWS parse of node's comma-joined value.
    expect(JSON.parse(res.body)).toEqual({ error: 'invalid_dpop_proof', error_description: 'exactly one DPoP proof is required' })
    // Either line empty: still two fields.
    for (const dpop of [[proofs[0]!, ''], ['', proofs[1]!]]) {
      const again = await rawGet(`${t.url}/userinfo`, { authorization: `DPoP ${token}`, dpop })
      expect(again.status).toBe(401)
      expect(again.headers['www-authenticate']).toBe(dpopOnly('invalid_dpop_proof'))
      expect(JSON.parse(again.body)).toEqual({ error: 'invalid_dpop_proof', error_description: 'exactly one DPoP proof is required' })
    }
  })

  it('RFC 9449 §4.3 check 9: at /userinfo/ (served too) the proof names /userinfo/; a proof for /userinfo is refused there, and the reverse', async () => {
    const atSlash = await fetch(`${t.url}/userinfo/`, { headers: { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { htu: `${t.issuer}/userinfo/` }) } })
    expect(atSlash.status).toBe(200)
    expect(((await atSlash.json()) as { sub?: string }).sub).toBe('alice')
    // With a query string: ignored by the comparison.
    expect((await fetch(`${t.url}/userinfo/?x=1`, { headers: { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { htu: `${t.issuer}/userinfo/` }) } })).status).toBe(200)
    expect(await userinfo({ authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token) }, t, '/userinfo/')).toEqual({
      status: 401,
      challenge: dpopOnly('invalid_dpop_proof'),
      cacheControl: 'no-store',
      nonce: null,
      error: 'invalid_dpop_proof',
    })
    expect(await userinfo({ authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { htu: `${t.issuer}/userinfo/` }) })).toEqual({
      status: 401,
      challenge: dpopOnly('invalid_dpop_proof'),
      cacheControl: 'no-store',
      nonce: null,
      error: 'invalid_dpop_proof',
    })
  })

  it('RFC 9449 §4.3 check 9 with RFC 9112 §3.2.2: a request in absolute form (GET http://host/userinfo) is judged against its path, so the proof for /userinfo is accepted', async () => {
    const u = new URL(t.url)
    const get = (target: string, htu: string) =>
      userinfoProof(k1, token, { htu }).then(
        (dpop) =>
          new Promise<{ status: number; body: string }>((resolve, reject) => {
            // node's client writes `path` as the request target: here the absolute form.
            const req = httpRequest({ host: u.hostname, port: u.port, path: target, method: 'GET', headers: { authorization: `DPoP ${token}`, dpop } }, (r) => {
              let body = ''
              r.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: r.statusCode!, body }))
            })
            req.on('error', reject).end()
          }),
      )
    const plain = await get(`${t.url}/userinfo?x=1`, `${t.issuer}/userinfo`)
    expect(plain.status, plain.body).toBe(200)
    expect(JSON.parse(plain.body).sub).toBe('alice')
    // The path still decides: /userinfo/ in absolute form takes a proof for /userinfo/ only.
    expect((await get(`${t.url}/userinfo/`, `${t.issuer}/userinfo/`)).status).toBe(200)
    const other = await get(`${t.url}/userinfo/`, `${t.issuer}/userinfo`)
    expect({ status: other.status, error: JSON.parse(other.body).error }).toEqual({ status: 401, error: 'invalid_dpop_proof' })
  })

  const BAD: Array<[string, () => Promise<string>]> = [
    ['a corrupted signature (§4.3 check 7)', () => userinfoProof(k1, token, { badSignature: true })],
    ['htm POST for a GET (§4.3 check 8)', () => userinfoProof(k1, token, { htm: 'POST' })],
    ['htu of the token endpoint (§4.3 check 9)', () => userinfoProof(k1, token, { htu: `${t.issuer}/token` })],
    ['an ath of another token (§4.3 check 12)', () => userinfoProof(k1, token, { ath: ath(`${token}x`) })],
    ['no ath (§7)', () => userinfoProof(k1, token, { omit: ['ath'] })],
    ['an iat 10 minutes old (§4.3 check 11, §11.1)', () => userinfoProof(k1, token, { iatOffset: -600 })],
    ['alg none (§4.3 check 5)', () => userinfoProof(k1, token, { alg: 'none' })],
  ]
  for (const [name, make] of BAD)
    it(`RFC 9449 §7.1: answers a proof with ${name} with 401 invalid_dpop_proof on the DPoP challenge`, async () => {
      expect(await userinfo({ authorization: `DPoP ${token}`, dpop: await make() })).toEqual({
        status: 401,
        challenge: dpopOnly('invalid_dpop_proof'),
        cacheControl: 'no-store',
        nonce: null,
        error: 'invalid_dpop_proof',
      })
    })

  it('RFC 9449 §11.1, §7.1: answers a replayed proof with 401 invalid_dpop_proof', async () => {
    const proof = await userinfoProof(k1, token)
    expect((await fetch(`${t.url}/userinfo`, { headers: { authorization: `DPoP ${token}`, dpop: proof } })).status).toBe(200)
    expect(await userinfo({ authorization: `DPoP ${token}`, dpop: proof })).toEqual({
      status: 401,
      challenge: dpopOnly('invalid_dpop_proof'),
      cacheControl: 'no-store',
      nonce: null,
      error: 'invalid_dpop_proof',
    })
  })

  it('RFC 9449 §7.1: answers a valid proof by another key than cnf.jkt with 401 invalid_token on the DPoP challenge, and burns nothing', async () => {
    expect(await userinfo({ authorization: `DPoP ${token}`, dpop: await userinfoProof(k2, token) })).toEqual({
      status: 401,
      challenge: dpopOnly('invalid_token'),
      cacheControl: 'no-store',
      nonce: null,
      error: 'invalid_token',
    })
    expect((await fetch(`${t.url}/userinfo`, { headers: { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token) } })).status).toBe(200)
  })

  it('RFC 6750 §3.1: answers an expired DPoP-bound token with 401 invalid_token (runs last: moves the clock)', async () => {
    t.clock.advance(3600)
    expect(await userinfo({ authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token) })).toEqual({
      status: 401,
      challenge: both('invalid_token'),
      cacheControl: 'no-store',
      nonce: null,
      error: 'invalid_token',
    })
  })
})

describe('RFC 9449 §9 at /userinfo: resource-server nonces (dpop.require_nonce)', () => {
  let n: TestServer
  let token = ''
  beforeAll(async () => {
    n = await startTestServer({ config: await config({ dpop: { require_nonce: true } }) })
    token = await login(n, { key: k1 })
  })
  afterAll(async () => n?.close())

  it('answers a proof without a nonce, then one with a made-up nonce, with 401 use_dpop_nonce, the DPoP challenge and a DPoP-Nonce; accepts the nonce', async () => {
    const first = await userinfo({ authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, {}, n) }, n)
    expect(first).toEqual({ status: 401, challenge: dpopOnly('use_dpop_nonce'), cacheControl: 'no-store', nonce: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), error: 'use_dpop_nonce' })
    const stale = await userinfo({ authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { nonce: 'made-up-nonce' }, n) }, n)
    expect(stale).toEqual({ ...first, nonce: first.nonce })
    const ok = await fetch(`${n.url}/userinfo`, { headers: { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { nonce: first.nonce! }, n) } })
    expect(ok.status).toBe(200)
  })

  it('answers an otherwise invalid proof without a nonce with 401 invalid_dpop_proof, not use_dpop_nonce', async () => {
    expect(await userinfo({ authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { htm: 'POST' }, n) }, n)).toEqual({
      status: 401,
      challenge: dpopOnly('invalid_dpop_proof'),
      cacheControl: 'no-store',
      nonce: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      error: 'invalid_dpop_proof',
    })
  })

  it('RFC 9449 §9 with §8.2: every answer carries the current DPoP-Nonce (200, the bare 401, 401 invalid_token, 400), so no use_dpop_nonce round trip is needed', async () => {
    // Learnt from a 401 without credentials, used at once: no use_dpop_nonce answer on the way.
    const bare = await fetch(`${n.url}/userinfo`)
    expect(bare.status).toBe(401)
    expect(bare.headers.get('www-authenticate')).toBe(BARE)
    const nonce = bare.headers.get('dpop-nonce')
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const ok = await fetch(`${n.url}/userinfo`, { headers: { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { nonce: nonce! }, n) } })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('dpop-nonce')).toBe(nonce)
    expect(ok.headers.get('cache-control')).toBe('no-store')
    // A new slot: the 200 hands out the new nonce (§8.2: "a DPoP-Nonce HTTP header in the HTTP 200 (OK) response").
    n.clock.advance(60)
    const next = await fetch(`${n.url}/userinfo`, { headers: { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, { nonce: nonce! }, n) } })
    expect(next.status).toBe(200)
    expect(next.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(next.headers.get('dpop-nonce')).not.toBe(nonce)
    const current = next.headers.get('dpop-nonce')
    expect(await userinfo({ authorization: 'Bearer not-a-token' }, n)).toEqual({ status: 401, challenge: both('invalid_token'), cacheControl: 'no-store', nonce: current, error: 'invalid_token' })
    expect(await userinfo({ authorization: 'Bearer a b' }, n)).toEqual({ status: 400, challenge: both('invalid_request'), cacheControl: 'no-store', nonce: current, error: 'invalid_request' })
    // One DPoP-Nonce field only (RFC 9449 §8: "MUST NOT be more than one"), also on use_dpop_nonce.
    const asked = await rawGet(`${n.url}/userinfo`, { authorization: `DPoP ${token}`, dpop: await userinfoProof(k1, token, {}, n) })
    expect(asked.status).toBe(401)
    expect(asked.headers['dpop-nonce']).toBe(current)
  })
})
