/**
 * RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each request."
 * A request that does — HTTP Basic and `client_secret` in the body, or either beside a client
 * assertion (`client_assertion`, RFC 7521 §4.2) — is 400 `invalid_request` (RFC 6749 §5.2) at every
 * endpoint that authenticates clients. At the endpoints that take a DPoP proof (token, device
 * authorization) that form is judged before the proof (RFC 9449 §4.3): a request with two methods
 * and a bad proof, or a proof without the required nonce, is still `invalid_request`, and a valid
 * proof on it is not spent. The fast path in front of fastify and fastify's routes answer alike.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dpopKey, makeProof, type DpopKey } from './support/dpop.js'
import { basic, fixtureConfigFile, FIXTURE, postForm, startTestServer, type TestServer } from './support/server.js'

const TWO_METHODS = { error: 'invalid_request', error_description: 'use only one client authentication method' }
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/** The fast path takes the form's usual media type; fastify alone parses it with another charset. */
const CONTENT_TYPES = {
  'fast path': 'application/x-www-form-urlencoded',
  fastify: 'application/x-www-form-urlencoded; charset=latin1',
} as const

/** Each way of mixing two methods: the `Authorization` field (or none) and the body parameters it adds. */
const MIXES: Array<[string, string | undefined, Record<string, string>]> = [
  ['Basic and client_secret', basic('conf', FIXTURE.confSecret), { client_secret: FIXTURE.confSecret }],
  ['Basic and client_assertion', basic('conf', FIXTURE.confSecret), { client_assertion_type: ASSERTION_TYPE, client_assertion: 'a.b.c' }],
  ['Basic and client_assertion_type alone', basic('conf', FIXTURE.confSecret), { client_assertion_type: ASSERTION_TYPE }],
  ['client_secret and client_assertion', undefined, { client_id: 'conf', client_secret: FIXTURE.confSecret, client_assertion_type: ASSERTION_TYPE, client_assertion: 'a.b.c' }],
]

/** The DPoP-taking endpoints with a body that one method alone gets through. */
const DPOP_ENDPOINTS: Array<[string, Record<string, string>]> = [
  ['/token', { grant_type: 'client_credentials', scope: 'read' }],
  ['/device_authorization', { scope: 'read' }],
]

async function post(url: string, form: Record<string, string>, authorization: string | undefined, contentType: string, extra: Record<string, string> = {}) {
  return postForm(url, form, { 'content-type': contentType, ...(authorization !== undefined ? { authorization } : {}), ...extra })
}

describe('RFC 6749 §2.3: more than one client authentication method is 400 invalid_request, judged before the DPoP proof', () => {
  let t: TestServer
  let key: DpopKey
  beforeAll(async () => {
    t = await startTestServer()
    key = await dpopKey()
  })
  afterAll(async () => t?.close())

  for (const [path, form] of DPOP_ENDPOINTS)
    for (const [mix, authorization, params] of MIXES)
      it(`${path}: ${mix} with a malformed DPoP proof is invalid_request, not invalid_dpop_proof (RFC 6749 §2.3 before RFC 9449 §4.3)`, async () => {
        for (const [via, contentType] of Object.entries(CONTENT_TYPES))
          for (const dpop of ['not-a-proof', 'a.b.c']) {
            const res = await post(`${t.url}${path}`, { ...form, ...params }, authorization, contentType, { DPoP: dpop })
            expect({ via, dpop, status: res.status, json: res.json, cacheControl: res.headers.get('cache-control') }).toEqual({ via, dpop, status: 400, json: TWO_METHODS, cacheControl: 'no-store' })
          }
      })

  for (const [path, form] of DPOP_ENDPOINTS)
    it(`${path}: a valid DPoP proof on a request with two methods is not spent — the same proof then passes with one method (RFC 9449 §11.1 replay check not reached)`, async () => {
      for (const contentType of Object.values(CONTENT_TYPES)) {
        const proof = await makeProof(key, { htu: `${t.url}${path}` })
        const refused = await post(`${t.url}${path}`, { ...form, client_secret: FIXTURE.confSecret }, basic('conf', FIXTURE.confSecret), contentType, { DPoP: proof })
        expect({ status: refused.status, json: refused.json }).toEqual({ status: 400, json: TWO_METHODS })
        const accepted = await post(`${t.url}${path}`, form, basic('conf', FIXTURE.confSecret), contentType, { DPoP: proof })
        expect({ status: accepted.status, error: accepted.json?.error }).toEqual({ status: 200, error: undefined })
      }
    })

  for (const [path, form] of DPOP_ENDPOINTS)
    it(`${path}: a body client_id naming another client than the Basic credentials is invalid_request before a bad DPoP proof (RFC 6749 §2.3)`, async () => {
      for (const contentType of Object.values(CONTENT_TYPES)) {
        const res = await post(`${t.url}${path}`, { ...form, client_id: 'client-b' }, basic('conf', FIXTURE.confSecret), contentType, { DPoP: 'not-a-proof' })
        expect({ status: res.status, json: res.json }).toEqual({ status: 400, json: { error: 'invalid_request', error_description: "'client_id' does not match the authenticated client" } })
      }
    })

  const others: Array<[string, Record<string, string>, string]> = [
    ['/revoke', { token: 'nope' }, basic('conf', FIXTURE.confSecret)],
    ['/introspect', { token: 'nope' }, basic('rs', FIXTURE.rsSecret)],
  ]
  for (const [path, form, good] of others)
    it(`${path}: Basic beside client_secret or client_assertion is 400 invalid_request (RFC 6749 §2.3); Basic alone still authenticates`, async () => {
      for (const params of [{ client_secret: 'whatever' }, { client_assertion_type: ASSERTION_TYPE, client_assertion: 'a.b.c' }] as Record<string, string>[])
        for (const contentType of Object.values(CONTENT_TYPES)) {
          const res = await post(`${t.url}${path}`, { ...form, ...params }, good, contentType)
          expect({ params, status: res.status, json: res.json }).toEqual({ params, status: 400, json: TWO_METHODS })
        }
      expect((await post(`${t.url}${path}`, form, good, CONTENT_TYPES['fast path'])).status).toBe(200)
    })

  it('/token: a malformed Basic field beside client_secret is two methods (invalid_request), a malformed one alone is invalid_client', async () => {
    const mixed = await post(`${t.url}/token`, { grant_type: 'client_credentials', client_id: 'conf', client_secret: FIXTURE.confSecret }, 'Basic !!!', CONTENT_TYPES['fast path'])
    expect({ status: mixed.status, json: mixed.json }).toEqual({ status: 400, json: TWO_METHODS })
    const alone = await post(`${t.url}/token`, { grant_type: 'client_credentials' }, 'Basic !!!', CONTENT_TYPES['fast path'])
    expect({ status: alone.status, error: alone.json.error, challenge: alone.headers.get('www-authenticate') }).toEqual({ status: 401, error: 'invalid_client', challenge: 'Basic realm="devicegate", charset="UTF-8"' })
  })
})

describe('RFC 6749 §2.3 with dpop.require_nonce: two methods are invalid_request, not use_dpop_nonce (RFC 9449 §8)', () => {
  let t: TestServer
  let key: DpopKey
  beforeAll(async () => {
    t = await startTestServer({ config: await fixtureConfigFile({ dpop: { require_nonce: true } }) })
    key = await dpopKey()
  })
  afterAll(async () => t?.close())

  for (const [path, form] of DPOP_ENDPOINTS)
    it(`${path}: Basic and client_secret with a proof lacking the nonce is 400 invalid_request, still with the current DPoP-Nonce`, async () => {
      for (const contentType of Object.values(CONTENT_TYPES)) {
        const proof = await makeProof(key, { htu: `${t.url}${path}` })
        const res = await post(`${t.url}${path}`, { ...form, client_secret: FIXTURE.confSecret }, basic('conf', FIXTURE.confSecret), contentType, { DPoP: proof })
        expect({ status: res.status, json: res.json }).toEqual({ status: 400, json: TWO_METHODS })
        expect(res.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
      }
    })
})
