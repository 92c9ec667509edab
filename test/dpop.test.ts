/**
 * DPoP at the authorization server (RFC 9449): every proof check of §4.3, server nonces (§8),
 * bound tokens (§5, §6), bound device codes (devicegate extension of RFC 8628), clients that
 * require DPoP, and introspection of bound tokens (RFC 7662 + RFC 9449 §6.2).
 */
import { createHash } from 'node:crypto'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseConfig } from '../src/config/load.js'
import { sha256Hex } from '../src/system.js'
import { DPOP_NONCE_SLOT_SECONDS } from '../src/protocol/dpop-nonce.js'
import { dpopKey, makeProof, type DpopKey, type ProofOptions } from './support/dpop.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

async function configWithDpopClient(extra: Record<string, unknown> = {}) {
  const base = await fixtureConfigFile()
  return parseConfig({
    ...base,
    ...extra,
    clients: [
      ...base.clients,
      {
        client_id: 'dpop-only',
        name: 'DPoP-only CLI',
        type: 'public',
        grant_types: [DEVICE_GRANT, 'refresh_token'],
        scopes: ['read', 'offline_access'],
        dpop: { required: true },
      },
      {
        client_id: 'bound-cli',
        name: 'Bound CLI',
        type: 'public',
        grant_types: [DEVICE_GRANT, 'refresh_token'],
        scopes: ['read', 'offline_access'],
        dpop: { bind_device_code: true },
      },
      { client_id: 'oidc-cli', name: 'OIDC CLI', type: 'public', grant_types: [DEVICE_GRANT], scopes: ['openid', 'read'] },
    ],
  })
}

let t: TestServer
let k1: DpopKey
let k2: DpopKey
beforeAll(async () => {
  t = await startTestServer({ config: await configWithDpopClient() })
  k1 = await dpopKey()
  k2 = await dpopKey()
})
afterAll(async () => t?.close())

const tokenUrl = () => `${t.url}/token`
const proof = (key: DpopKey, opts: Partial<ProofOptions> = {}) =>
  makeProof(key, { htu: tokenUrl(), now: t.clock.nowSeconds(), ...opts })

async function authorize(form: Record<string, string> = {}, headers: Record<string, string> = {}, clientId = 'cli') {
  const res = await postForm(`${t.url}/device_authorization`, { client_id: clientId, scope: 'read offline_access', ...form }, headers)
  expect(res.status).toBe(200)
  return res.json as { device_code: string; user_code: string }
}

async function approved(form: Record<string, string> = {}, headers: Record<string, string> = {}, clientId = 'cli') {
  const flow = await authorize(form, headers, clientId)
  await approveAs(t.url, flow.user_code)
  return flow
}

const redeem = (deviceCode: string, dpop?: string, clientId = 'cli') =>
  postForm(tokenUrl(), { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId }, dpop ? { DPoP: dpop } : {})

function expectDpopError(res: { status: number; headers: Headers; json: any }, error = 'invalid_dpop_proof') {
  expect(res.status).toBe(400)
  expect(res.headers.get('cache-control')).toBe('no-store')
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  expect(res.json).toMatchObject({ error })
}

describe('RFC 9449 §4.3 DPoP proof checks at the token endpoint', () => {
  // Each row breaks exactly one thing; every rejection must leave the device code redeemable.
  const BAD_PROOFS: Array<[string, () => Promise<string>]> = [
    ['not a JWS at all', async () => 'not-a-jwt'],
    ['two proofs joined in one header value', async () => `${await proof(k1)}, ${await proof(k1)}`],
    // RFC 7515 §2, §7.1: the three parts are base64url without padding; '=' is not of that alphabet.
    ['a signature with "=" padding (RFC 7515 §2)', async () => `${await proof(k1)}=`],
    ['a signature with "==" padding, which base64 decoders accept (RFC 7515 §2)', async () => `${await proof(k1)}==`],
    ['a payload in standard base64 with "+" and "/" (RFC 7515 §2)', async () => {
      const [h, p, sig] = (await proof(k1)).split('.')
      return `${h}.${Buffer.from(p!, 'base64url').toString('base64')}.${sig}`
    }],
    ['typ missing', () => proof(k1, { typ: null })],
    ['typ JWT instead of dpop+jwt (check 4)', () => proof(k1, { typ: 'JWT' })],
    ['alg none (check 5)', () => proof(k1, { alg: 'none' })],
    ['alg HS256, a symmetric algorithm (check 5)', () => proof(k1, { alg: 'HS256' })],
    ['no jwk header (check 6)', () => proof(k1, { jwk: null })],
    ['a private jwk: the "d" member is present (check 6)', () => proof(k1, { jwk: k1.privateJwk })],
    ['a symmetric jwk (check 6)', () => proof(k1, { jwk: { kty: 'oct', k: 'c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0' } })],
    ['signed by another key than the embedded jwk (check 7)', () => proof(k2, { jwk: k1.jwk })],
    ['a corrupted signature (check 7)', () => proof(k1, { badSignature: true })],
    ['htm GET for a POST (check 8)', () => proof(k1, { htm: 'GET' })],
    ['htm in lower case: methods are case-sensitive (check 8)', () => proof(k1, { htm: 'post' })],
    ['htm missing (check 8)', () => proof(k1, { omit: ['htm'] })],
    ['htu names the revocation endpoint (check 9)', () => proof(k1, { htu: `${t.url}/revoke` })],
    ['htu with another scheme (check 9, RFC 3986 §6.2.3 does not equate them)', () => proof(k1, { htu: tokenUrl().replace('http:', 'https:') })],
    ['htu with another port (check 9)', () => proof(k1, { htu: `http://127.0.0.1:1/token` })],
    ['htu missing (check 9)', () => proof(k1, { omit: ['htu'] })],
    // RFC 3986 §3.2.1: userinfo is part of the authority, so http://u:p@host/token is not the
    // request's URI (normalisation keeps it); RFC 9110 §4.2.4: its presence is an error.
    ['htu with userinfo user:pass@ before the host (check 9, RFC 9110 §4.2.4)', () => proof(k1, { htu: tokenUrl().replace('http://', 'http://u:p@') })],
    ['htu with an empty userinfo @ before the host (check 9, RFC 9110 §4.2.4)', () => proof(k1, { htu: tokenUrl().replace('http://', 'http://@') })],
    ['iat 10 minutes old (check 11, §11.1)', () => proof(k1, { iatOffset: -600 })],
    ['iat 61 s old (check 11)', () => proof(k1, { iatOffset: -61 })],
    ['iat 60 s in the future (check 11)', () => proof(k1, { iatOffset: 60 })],
    ['iat missing (check 11)', () => proof(k1, { omit: ['iat'] })],
    ['jti missing (check 10)', () => proof(k1, { omit: ['jti'] })],
  ]

  let deviceCode = ''
  beforeAll(async () => {
    deviceCode = (await approved()).device_code
  })

  for (const [name, make] of BAD_PROOFS) {
    it(`answers 400 invalid_dpop_proof with no-store for ${name}`, async () => {
      const res = await redeem(deviceCode, await make())
      expectDpopError(res)
    })
  }

  it('answers invalid_dpop_proof when the request carries two DPoP headers', async () => {
    const headers = new Headers({ 'content-type': 'application/x-www-form-urlencoded' })
    headers.append('DPoP', await proof(k1))
    headers.append('DPoP', await proof(k1))
    const res = await fetch(tokenUrl(), {
      method: 'POST',
      headers,
      body: new URLSearchParams({ grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: 'cli' }),
    })
    expect(res.status).toBe(400)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect((await res.json()) as object).toMatchObject({ error: 'invalid_dpop_proof' })
  })

  it('RFC 3986 §6.2.2.1–6.2.2.2: percent-encoded unreserved characters and hex case are normalised in the htu and in the request path (/t%6fken is /token)', async () => {
    const cc = (target: string, htu: string) =>
      proof(k1, { htu }).then((dpop) => postForm(`${t.url}${target}`, { grant_type: 'client_credentials' }, { authorization: basic('conf', FIXTURE.confSecret), DPoP: dpop }))
    for (const [target, htu] of [
      ['/token', `${t.issuer}/t%6Fken`],
      ['/token', `${t.issuer}/t%6fken`],
      ['/t%6fken', `${t.issuer}/token`],
      ['/t%6Fken', `${t.issuer}/t%6fken`],
    ]) {
      const res = await cc(target!, htu!)
      expect({ target, htu, status: res.status, error: res.json?.error }).toEqual({ target, htu, status: 200, error: undefined })
    }
    // A reserved character stays encoded: %2F is not a path separator, so /x%2F..%2Ftoken is no /token.
    expectDpopError(await cc('/token', `${t.issuer}/x%2F..%2Ftoken`))
    expectDpopError(await cc('/token', `${t.issuer}/x%2f..%2ftoken`))
  })

  it('accepts an htu that differs only by scheme/host case and dot segments (RFC 3986 §6.2.2), after all the rejections', async () => {
    const htu = tokenUrl().replace('http://', 'HTTP://').replace('/token', '/x/../token')
    const res = await redeem(deviceCode, await proof(k1, { htu }))
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.json.token_type).toBe('DPoP')
    expect(decodeJwt(res.json.access_token).cnf).toEqual({ jkt: k1.jkt })
  })
})

describe('RFC 9449 §4.3 check 9 at /token/ and /device_authorization/ (served too): the proof names the URI requested, on the fast path and through fastify', () => {
  // As at /userinfo/: RFC 3986 §6.2.2–6.2.3 normalisation keeps the trailing slash, so /token/ is
  // another URI than /token. `?` sends the request to fastify (the fast path takes no query).
  const clientCredentials = (target: string, dpop: string) =>
    postForm(`${t.url}${target}`, { grant_type: 'client_credentials' }, { authorization: basic('conf', FIXTURE.confSecret), DPoP: dpop })
  for (const suffix of ['', '?'])
    it(`${suffix === '' ? 'fast path' : 'fastify'}: /token/ takes a proof for /token/ and refuses one for /token; /token the reverse`, async () => {
      const ok = await clientCredentials(`/token/${suffix}`, await proof(k1, { htu: `${t.issuer}/token/` }))
      expect(ok.status, ok.text).toBe(200)
      expect(ok.json.token_type).toBe('DPoP')
      expectDpopError(await clientCredentials(`/token/${suffix}`, await proof(k1, { htu: `${t.issuer}/token` })))
      expectDpopError(await clientCredentials(`/token${suffix}`, await proof(k1, { htu: `${t.issuer}/token/` })))
      expect((await clientCredentials(`/token${suffix}`, await proof(k1))).status).toBe(200)
      const da = (target: string, htu: string) => proof(k1, { htu }).then((dpop) => postForm(`${t.url}${target}`, { client_id: 'cli', scope: 'read' }, { DPoP: dpop }))
      expect((await da(`/device_authorization/${suffix}`, `${t.issuer}/device_authorization/`)).status).toBe(200)
      expectDpopError(await da(`/device_authorization/${suffix}`, `${t.issuer}/device_authorization`))
    })
})

describe('RFC 9449 §11.1 replay (case C27)', () => {
  it('declines a proof already used on another request and leaves the second device code redeemable', async () => {
    const first = await approved()
    const second = await approved()
    const p1 = await proof(k1)
    expect((await redeem(first.device_code, p1)).status).toBe(200)
    expectDpopError(await redeem(second.device_code, p1))
    // Same jti in a new proof: still a replay.
    const jti = JSON.parse(Buffer.from(p1.split('.')[1]!, 'base64url').toString()).jti as string
    expectDpopError(await redeem(second.device_code, await proof(k1, { jti })))
    const ok = await redeem(second.device_code, await proof(k1))
    expect(ok.status).toBe(200)
    expect(ok.json.token_type).toBe('DPoP')
  })

  it('remembers a jti across server instances sharing the store', async () => {
    const p = await proof(k1, { htu: `${t.url}/token` })
    const flow = await approved()
    expect((await redeem(flow.device_code, p)).status).toBe(200)
    // A second instance on the same database.
    const { createServer } = await import('../src/server.js')
    const other = await createServer(t.server.config, { clock: t.clock, logger: (await import('../src/server.js')).createLogger('silent') })
    try {
      const flow2 = await approved()
      const res = await other.app.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: p },
        payload: new URLSearchParams({ grant_type: DEVICE_GRANT, device_code: flow2.device_code, client_id: 'cli' }).toString(),
      })
      expect(res.statusCode).toBe(400)
      expect(res.json()).toMatchObject({ error: 'invalid_dpop_proof' })
    } finally {
      await other.close()
    }
  })
})

describe('device code bound to a DPoP key (devicegate extension of RFC 8628)', () => {
  const daUrl = () => `${t.url}/device_authorization`

  it('binds with a proof on the device authorization request; another key, or none, gets invalid_grant without consuming the code', async () => {
    const flow = await approved({}, { DPoP: await makeProof(k1, { htu: daUrl(), now: t.clock.nowSeconds() }) })
    const stolen = await redeem(flow.device_code, await proof(k2))
    expect(stolen.status).toBe(400)
    expect(stolen.headers.get('cache-control')).toBe('no-store')
    expect(stolen.json).toMatchObject({ error: 'invalid_grant' })
    expect((await redeem(flow.device_code)).json).toMatchObject({ error: 'invalid_grant' })
    // The thief's attempts registered no poll: the rightful client is not slowed down either.
    const ok = await redeem(flow.device_code, await proof(k1))
    expect(ok.status).toBe(200)
    expect(ok.json.token_type).toBe('DPoP')
  })

  it('binds with a dpop_jkt parameter', async () => {
    const flow = await approved({ dpop_jkt: k1.jkt })
    expect((await redeem(flow.device_code, await proof(k2))).json).toMatchObject({ error: 'invalid_grant' })
    expect((await redeem(flow.device_code, await proof(k1))).status).toBe(200)
  })

  it('refuses a dpop_jkt that differs from the proof key, and a malformed dpop_jkt', async () => {
    const mismatch = await postForm(
      daUrl(),
      { client_id: 'cli', dpop_jkt: k2.jkt },
      { DPoP: await makeProof(k1, { htu: daUrl(), now: t.clock.nowSeconds() }) },
    )
    expectDpopError(mismatch)
    const malformed = await postForm(daUrl(), { client_id: 'cli', dpop_jkt: 'abc' })
    expect(malformed.status).toBe(400)
    expect(malformed.json).toMatchObject({ error: 'invalid_request' })
  })

  it('checks the proof on the device authorization request against that endpoint (htu = token endpoint is refused)', async () => {
    expectDpopError(await postForm(daUrl(), { client_id: 'cli' }, { DPoP: await proof(k1) }))
  })

  it('revokes what a redeemed code issued when it is presented again with another key, even right after redemption (RFC 6749 §4.1.2)', async () => {
    const flow = await approved()
    const ok = await redeem(flow.device_code, await proof(k1))
    expect(ok.status).toBe(200)
    // Not the redeeming presentation repeated: the key differs (here: none at all).
    expect((await redeem(flow.device_code)).json).toMatchObject({ error: 'invalid_grant' })
    const res = await postForm(`${t.url}/introspect`, { token: ok.json.access_token }, { authorization: basic('rs', FIXTURE.rsSecret) })
    expect(res.json).toEqual({ active: false })
  })

  it('refuses an unbound device authorization with invalid_request for a client with dpop.bind_device_code (issue 16 item 4)', async () => {
    const unbound = await postForm(daUrl(), { client_id: 'bound-cli', scope: 'read' })
    expect(unbound.status).toBe(400)
    expect(unbound.headers.get('cache-control')).toBe('no-store')
    expect(unbound.json).toMatchObject({ error: 'invalid_request' })
    expect(unbound.json.error_description).toMatch(/DPoP/)
    expect(unbound.json.device_code).toBeUndefined()
    const byJkt = await authorize({ dpop_jkt: k1.jkt }, {}, 'bound-cli')
    await approveAs(t.url, byJkt.user_code)
    expect((await redeem(byJkt.device_code, await proof(k1), 'bound-cli')).status).toBe(200)
    const byProof = await postForm(daUrl(), { client_id: 'bound-cli' }, { DPoP: await makeProof(k2, { htu: daUrl(), now: t.clock.nowSeconds() }) })
    expect(byProof.status).toBe(200)
  })

  it('leaves clients that send nothing unbound: bearer tokens as in RFC 8628', async () => {
    const flow = await approved()
    const res = await redeem(flow.device_code)
    expect(res.status).toBe(200)
    expect(res.json.token_type).toBe('Bearer')
    expect(decodeJwt(res.json.access_token).cnf).toBeUndefined()
  })
})

describe('RFC 9449 §5 bound refresh tokens of public clients', () => {
  it('refuses a stolen DPoP refresh token used with another key or with none, and keeps it working for its key', async () => {
    const flow = await approved()
    const tokens = (await redeem(flow.device_code, await proof(k1))).json
    expect(tokens.refresh_token).toBeTruthy()
    const refresh = (dpop?: string) =>
      postForm(tokenUrl(), { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: 'cli' }, dpop ? { DPoP: dpop } : {})
    const stolen = await refresh(await proof(k2))
    expect(stolen.status).toBe(400)
    expect(stolen.json).toMatchObject({ error: 'invalid_grant' })
    expect((await refresh()).json).toMatchObject({ error: 'invalid_grant' })
    const ok = await refresh(await proof(k1))
    expect(ok.status).toBe(200)
    expect(ok.json.token_type).toBe('DPoP')
    expect(decodeJwt(ok.json.access_token).cnf).toEqual({ jkt: k1.jkt })
  })
})

describe('RFC 9449 §5 refresh tokens of confidential clients are not key-bound (case C62)', () => {
  it('lets a confidential client rotate its DPoP key; each access token is bound to the proof that asked for it', async () => {
    const conf = { authorization: basic('conf', FIXTURE.confSecret) }
    const flow = await approved({}, conf, 'conf')
    const first = await postForm(tokenUrl(), { grant_type: DEVICE_GRANT, device_code: flow.device_code }, { ...conf, DPoP: await proof(k1) })
    expect(first.status).toBe(200)
    expect(decodeJwt(first.json.access_token).cnf).toEqual({ jkt: k1.jkt })
    const refresh = (token: string, dpop?: string) =>
      postForm(tokenUrl(), { grant_type: 'refresh_token', refresh_token: token }, { ...conf, ...(dpop ? { DPoP: dpop } : {}) })
    const rotated = await refresh(first.json.refresh_token, await proof(k2))
    expect(rotated.status).toBe(200)
    expect(rotated.json.token_type).toBe('DPoP')
    expect(decodeJwt(rotated.json.access_token).cnf).toEqual({ jkt: k2.jkt })
    // Without a proof the new access token is a bearer token: bound to no key, as asked.
    const bearer = await refresh(rotated.json.refresh_token)
    expect(bearer.status).toBe(200)
    expect(bearer.json.token_type).toBe('Bearer')
    expect(decodeJwt(bearer.json.access_token).cnf).toBeUndefined()
  })

  it('records the family\'s current key as its latest access token\'s cnf.jkt (inventory, console, reviews, device retirement)', async () => {
    const conf = { authorization: basic('conf', FIXTURE.confSecret) }
    const flow = await approved({}, conf, 'conf')
    const first = await postForm(tokenUrl(), { grant_type: DEVICE_GRANT, device_code: flow.device_code }, { ...conf, DPoP: await proof(k1) })
    const grantId = (await t.server.store.findAccessTokenByHash(sha256Hex(first.json.access_token)))!.grantId
    const family = async () => (await t.server.store.findGrant(grantId))!.dpopJkt
    expect(await family()).toBe(k1.jkt)
    const refresh = (token: string, dpop?: string) =>
      postForm(tokenUrl(), { grant_type: 'refresh_token', refresh_token: token }, { ...conf, ...(dpop ? { DPoP: dpop } : {}) })
    const again = await refresh(first.json.refresh_token, await proof(k1))
    expect(await family()).toBe(k1.jkt)
    const rotated = await refresh(again.json.refresh_token, await proof(k2))
    expect(rotated.status).toBe(200)
    expect(await family()).toBe(k2.jkt)
    expect((await t.server.store.listGrantsByDpopJkt(k2.jkt)).map((g) => g.id)).toContain(grantId)
    expect((await t.server.store.listGrantsByDpopJkt(k1.jkt)).map((g) => g.id)).not.toContain(grantId)
    const bearer = await refresh(rotated.json.refresh_token)
    expect(bearer.json.token_type).toBe('Bearer')
    expect(await family()).toBeNull()
  })
})

describe('clients that require DPoP (dpop.required)', () => {
  it('refuses a bearer token request with invalid_dpop_proof and accepts a proof', async () => {
    const flow = await approved({}, {}, 'dpop-only')
    expectDpopError(await redeem(flow.device_code, undefined, 'dpop-only'))
    const ok = await redeem(flow.device_code, await proof(k1), 'dpop-only')
    expect(ok.status).toBe(200)
    expect(ok.json.token_type).toBe('DPoP')
  })
})

describe('RFC 7662 introspection of a DPoP-bound token', () => {
  it('returns token_type DPoP and cnf.jkt', async () => {
    const flow = await approved()
    const { access_token } = (await redeem(flow.device_code, await proof(k1))).json
    const res = await postForm(`${t.url}/introspect`, { token: access_token }, { authorization: basic('rs', FIXTURE.rsSecret) })
    expect(res.json).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: k1.jkt } })
  })
})

describe('RFC 8414 metadata', () => {
  it('lists dpop_signing_alg_values_supported', async () => {
    const res = await fetch(`${t.url}/.well-known/oauth-authorization-server`)
    expect(((await res.json()) as { dpop_signing_alg_values_supported: string[] }).dpop_signing_alg_values_supported).toEqual(['ES256', 'EdDSA', 'RS256', 'PS256'])
  })
})

describe('RFC 9449 §8 server nonces (dpop.require_nonce)', () => {
  let n: TestServer
  beforeAll(async () => {
    n = await startTestServer({ config: await configWithDpopClient({ dpop: { require_nonce: true } }) })
  })
  afterAll(async () => n?.close())

  const nProof = (opts: Partial<ProofOptions> = {}) => makeProof(k1, { htu: `${n.url}/token`, now: n.clock.nowSeconds(), ...opts })
  const nRedeem = (deviceCode: string, dpop: string) =>
    postForm(`${n.url}/token`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: 'cli' }, { DPoP: dpop })

  async function nApproved() {
    const res = await postForm(`${n.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    await approveAs(n.url, res.json.user_code)
    return { deviceCode: res.json.device_code as string, nonce: res.headers.get('dpop-nonce') }
  }

  it('offers a DPoP-Nonce on the device authorization response', async () => {
    const { nonce } = await nApproved()
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it('answers use_dpop_nonce with a DPoP-Nonce header for a proof without nonce, then accepts the nonce', async () => {
    const { deviceCode } = await nApproved()
    const res = await nRedeem(deviceCode, await nProof())
    expectDpopError(res, 'use_dpop_nonce')
    const nonce = res.headers.get('dpop-nonce')
    expect(nonce).toBeTruthy()
    const ok = await nRedeem(deviceCode, await nProof({ nonce: nonce! }))
    expect(ok.status).toBe(200)
    expect(ok.json.token_type).toBe('DPoP')
    expect(ok.headers.get('dpop-nonce')).toBeTruthy()
  })

  it('answers use_dpop_nonce for an unknown nonce and for one two slots old; accepts one from the previous slot', async () => {
    const { deviceCode, nonce } = await nApproved()
    expectDpopError(await nRedeem(deviceCode, await nProof({ nonce: 'made-up-nonce' })), 'use_dpop_nonce')
    n.clock.advance(DPOP_NONCE_SLOT_SECONDS)
    const previous = await nRedeem(deviceCode, await nProof({ nonce: nonce! }))
    expect(previous.status).toBe(200)
    n.clock.advance(DPOP_NONCE_SLOT_SECONDS)
    const { deviceCode: second } = await nApproved()
    expectDpopError(await nRedeem(second, await nProof({ nonce: nonce! })), 'use_dpop_nonce')
  })

  it('RFC 9449 §9: /userinfo answers 401 use_dpop_nonce with a DPoP challenge and a DPoP-Nonce for a proof without a nonce, then accepts the nonce', async () => {
    const authz = await postForm(`${n.url}/device_authorization`, { client_id: 'oidc-cli', scope: 'openid' })
    await approveAs(n.url, authz.json.user_code)
    const tokens = await postForm(`${n.url}/token`, { grant_type: DEVICE_GRANT, device_code: authz.json.device_code, client_id: 'oidc-cli' }, { DPoP: await nProof({ nonce: authz.headers.get('dpop-nonce')! }) })
    expect(tokens.json.token_type).toBe('DPoP')
    const token = tokens.json.access_token as string
    const ath = createHash('sha256').update(token).digest('base64url')
    const userinfo = (dpop: string) => fetch(`${n.url}/userinfo`, { headers: { authorization: `DPoP ${token}`, dpop } })
    const noNonce = await userinfo(await makeProof(k1, { htu: `${n.issuer}/userinfo`, htm: 'GET', ath, now: n.clock.nowSeconds() }))
    expect(noNonce.status).toBe(401)
    expect(noNonce.headers.get('www-authenticate')).toMatch(/^DPoP .*error="use_dpop_nonce"/)
    expect(noNonce.headers.get('cache-control')).toBe('no-store')
    const nonce = noNonce.headers.get('dpop-nonce')
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(await noNonce.json()).toMatchObject({ error: 'use_dpop_nonce' })
    const wrongNonce = await userinfo(await makeProof(k1, { htu: `${n.issuer}/userinfo`, htm: 'GET', ath, nonce: 'made-up-nonce', now: n.clock.nowSeconds() }))
    expect(wrongNonce.status).toBe(401)
    expect(wrongNonce.headers.get('dpop-nonce')).toBe(nonce)
    const ok = await userinfo(await makeProof(k1, { htu: `${n.issuer}/userinfo`, htm: 'GET', ath, nonce: nonce!, now: n.clock.nowSeconds() }))
    expect(ok.status).toBe(200)
    expect(await ok.json()).toMatchObject({ sub: 'alice' })
  })

  it('accepts a nonce issued by another instance sharing the store', async () => {
    const { createServer, createLogger } = await import('../src/server.js')
    const other = await createServer(n.server.config, { clock: n.clock, logger: createLogger('silent') })
    try {
      const res = await other.app.inject({ method: 'POST', url: '/device_authorization', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'client_id=cli' })
      const nonce = res.headers['dpop-nonce'] as string
      const { deviceCode } = await nApproved()
      const ok = await nRedeem(deviceCode, await nProof({ nonce }))
      expect(ok.status).toBe(200)
    } finally {
      await other.close()
    }
  })
})
