/**
 * RFC 9449 §9 at the resource-server helper (`devicegate/resource`, opt-in `dpop.nonce`): a
 * resource server that requires a nonce answers a proof without the current one with 401,
 * `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a fresh `DPoP-Nonce`; the proof's `jti` is
 * not spent, so the client retries at once; every answer carries the current nonce. Off by
 * default: a proof without a nonce is accepted and no `DPoP-Nonce` is sent.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseConfig } from '../src/config/load.js'
import Fastify from 'fastify'
import { authorize, createResourceServer, devicegateResource, ResourceAuthError, type ResourceServerOptions } from '../src/resource/index.js'
import { ath, dpopKey, makeProof, type DpopKey } from './support/dpop.js'
import { approveAs, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const API = 'https://api.example.test'
const AUDIENCE = `${API}/`
const NONCE = /^[A-Za-z0-9_-]{43}$/
const SECRET = 'api-nonce-secret-0123456789abcdef-0123'

let t: TestServer
let key: DpopKey
let token = ''

beforeAll(async () => {
  const base = await fixtureConfigFile()
  t = await startTestServer({
    config: parseConfig({
      ...base,
      clients: [...base.clients, { client_id: 'api-cli', name: 'API CLI', type: 'public', grant_types: [DEVICE_GRANT], scopes: ['read'], resources: [AUDIENCE] }],
    }),
  })
  key = await dpopKey()
  const da = await postForm(`${t.url}/device_authorization`, { client_id: 'api-cli', scope: 'read', resource: AUDIENCE })
  await approveAs(t.url, da.json.user_code)
  const res = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: da.json.device_code, client_id: 'api-cli' }, { DPoP: await makeProof(key, { htu: `${t.url}/token`, now: t.clock.nowSeconds() }) })
  expect(res.json.token_type).toBe('DPoP')
  token = res.json.access_token
})
afterAll(async () => t?.close())

function resourceServer(extra: Partial<ResourceServerOptions> = {}) {
  return createResourceServer({ issuer: t.url, audience: AUDIENCE, baseUrl: API, revocation: { mode: 'none' }, realm: 'api', ...extra })
}
const proof = (opts: { nonce?: string; jti?: string; now?: number } = {}) => makeProof(key, { htm: 'GET', htu: `${API}/me`, ath: ath(token), ...opts })
const request = (dpop: string) => ({ method: 'GET', url: '/me', headers: { authorization: `DPoP ${token}`, dpop } })

/** The refusal of `verifyRequest`, or fails. */
async function refusal(promise: Promise<unknown>): Promise<ResourceAuthError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(ResourceAuthError)
  return err as ResourceAuthError
}

describe('RFC 9449 §9: a resource server that requires DPoP nonces (dpop.nonce)', () => {
  it('answers a proof without a nonce with 401 use_dpop_nonce on the DPoP challenge and a fresh DPoP-Nonce; the same proof with the nonce then passes (its jti was not spent)', async () => {
    const rs = resourceServer({ dpop: { nonce: { secret: SECRET } } })
    const jti = randomUUID()
    const err = await refusal(rs.verifyRequest(request(await proof({ jti }))))
    expect({ status: err.status, error: err.error, challenge: err.headers['www-authenticate'], body: err.toJSON() }).toEqual({
      status: 401,
      error: 'use_dpop_nonce',
      challenge: 'DPoP realm="api", error="use_dpop_nonce", error_description="the DPoP proof needs the current server \\"nonce\\"", algs="ES256 EdDSA RS256 PS256"',
      body: { error: 'use_dpop_nonce', error_description: 'the DPoP proof needs the current server "nonce"' },
    })
    const nonce = err.headers['dpop-nonce'] as string
    expect(nonce).toMatch(NONCE)
    const access = await rs.verifyRequest(request(await proof({ jti, nonce })))
    expect({ subject: access.subject, jkt: access.jkt, dpopNonce: access.dpopNonce }).toEqual({ subject: 'alice', jkt: key.jkt, dpopNonce: nonce })
    rs.close()
  })

  it('refuses a nonce it did not issue, and one two slots old, with use_dpop_nonce; accepts one of the previous slot', async () => {
    let now = Date.now()
    const rs = resourceServer({ dpop: { nonce: { secret: SECRET, slotSeconds: 60 } }, nowMs: () => now })
    const other = resourceServer({ dpop: { nonce: { secret: 'another-secret-0123456789abcdef-0123' } } })
    const foreign = (await refusal(other.verifyRequest(request(await proof())))).dpopNonce!
    for (const nonce of [foreign, 'not-a-nonce']) {
      const err = await refusal(rs.verifyRequest(request(await proof({ nonce }))))
      expect({ nonce, error: err.error }).toEqual({ nonce, error: 'use_dpop_nonce' })
    }
    const issued = (await refusal(rs.verifyRequest(request(await proof())))).dpopNonce!
    const seconds = () => Math.floor(now / 1000)
    now += 60_000 // the next slot: still accepted
    expect((await rs.verifyRequest(request(await proof({ nonce: issued, now: seconds() })))).subject).toBe('alice')
    now += 60_000 // two slots on: refused, with a new nonce
    const stale = await refusal(rs.verifyRequest(request(await proof({ nonce: issued, now: seconds() }))))
    expect(stale.error).toBe('use_dpop_nonce')
    expect(stale.dpopNonce).not.toBe(issued)
    rs.close()
    other.close()
  })

  it('instances of one API that share the secret accept each other\'s nonces', async () => {
    const a = resourceServer({ dpop: { nonce: { secret: SECRET } } })
    const b = resourceServer({ dpop: { nonce: { secret: SECRET } } })
    const nonce = (await refusal(a.verifyRequest(request(await proof())))).dpopNonce!
    expect((await b.verifyRequest(request(await proof({ nonce })))).subject).toBe('alice')
    a.close()
    b.close()
  })

  it('puts the current DPoP-Nonce on its other refusals too, and node\'s authorize sends it on an accepted request', async () => {
    const rs = resourceServer({ dpop: { nonce: { secret: SECRET } } })
    const noCredentials = await refusal(rs.verifyRequest({ method: 'GET', url: '/me', headers: {} }))
    expect({ status: noCredentials.status, nonce: NONCE.test(String(noCredentials.headers['dpop-nonce'])) }).toEqual({ status: 401, nonce: true })
    const badProof = await refusal(rs.verifyRequest(request(await proof({ nonce: 'x', jti: '' }))))
    expect({ error: badProof.error, nonce: NONCE.test(String(badProof.headers['dpop-nonce'])) }).toEqual({ error: 'invalid_dpop_proof', nonce: true })

    const server: Server = createServer(async (req, res) => {
      const access = await authorize(rs, req, res)
      if (access) res.end('ok')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/me`
      const first = await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await proof() } })
      expect({ status: first.status, challenge: first.headers.get('www-authenticate'), nonce: NONCE.test(first.headers.get('dpop-nonce') ?? '') }).toEqual({
        status: 401,
        challenge: expect.stringMatching(/^DPoP realm="api", error="use_dpop_nonce"/) as unknown as string,
        nonce: true,
      })
      const ok = await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await proof({ nonce: first.headers.get('dpop-nonce')! }) } })
      expect({ status: ok.status, nonce: NONCE.test(ok.headers.get('dpop-nonce') ?? '') }).toEqual({ status: 200, nonce: true })
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      rs.close()
    }
  })

  it('the fastify plugin sends the current DPoP-Nonce on an accepted request and on use_dpop_nonce', async () => {
    const rs = resourceServer({ dpop: { nonce: { secret: SECRET } } })
    const app = Fastify()
    await app.register(async (api) => {
      await api.register(devicegateResource, { server: rs })
      api.get('/me', async (req) => ({ sub: req.devicegate!.subject }))
    })
    try {
      const refused = await app.inject({ method: 'GET', url: '/me', headers: { host: 'api.example.test', authorization: `DPoP ${token}`, dpop: await proof() } })
      expect({ status: refused.statusCode, error: refused.json().error, nonce: NONCE.test(String(refused.headers['dpop-nonce'])) }).toEqual({ status: 401, error: 'use_dpop_nonce', nonce: true })
      const ok = await app.inject({ method: 'GET', url: '/me', headers: { host: 'api.example.test', authorization: `DPoP ${token}`, dpop: await proof({ nonce: String(refused.headers['dpop-nonce']) }) } })
      expect({ status: ok.statusCode, body: ok.json(), nonce: NONCE.test(String(ok.headers['dpop-nonce'])) }).toEqual({ status: 200, body: { sub: 'alice' }, nonce: true })
    } finally {
      await app.close()
      rs.close()
    }
  })

  it('refuses a secret shorter than 32 bytes at construction (TypeError)', () => {
    expect(() => resourceServer({ dpop: { nonce: { secret: 'short' } } })).toThrow(TypeError)
    expect(() => resourceServer({ dpop: { nonce: { secret: SECRET, slotSeconds: 0 } } })).toThrow(TypeError)
  })
})

describe('without dpop.nonce (the default) no nonce is required or sent', () => {
  it('accepts a proof without a nonce and sends no DPoP-Nonce', async () => {
    const rs = resourceServer()
    const access = await rs.verifyRequest(request(await proof()))
    expect({ subject: access.subject, dpopNonce: access.dpopNonce }).toEqual({ subject: 'alice', dpopNonce: undefined })
    const err = await refusal(rs.verifyRequest({ method: 'GET', url: '/me', headers: {} }))
    expect(err.headers['dpop-nonce']).toBeUndefined()
    rs.close()
  })
})
