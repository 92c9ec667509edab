/**
 * Audience restriction with resource indicators (RFC 8707 §2, RFC 9700 §2.3).
 */
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseConfig } from '../src/config/load.js'
import { readParams } from '../src/protocol/params.js'
import { readResources } from '../src/protocol/resources.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const API = 'https://api.example.com/'
const FILES = 'https://files.example.com/v1'

let t: TestServer
beforeAll(async () => {
  const base = await fixtureConfigFile()
  const clients = base.clients.map((c) =>
    c.client_id === 'conf' ? { ...c, resources: [API] } : c,
  )
  t = await startTestServer({
    config: parseConfig({
      ...base,
      clients: [
        ...clients,
        { client_id: 'api-cli', name: 'API CLI', type: 'public', grant_types: [DEVICE_GRANT, 'refresh_token'], scopes: ['read', 'offline_access'], resources: [API, FILES] },
      ],
    }),
  })
})
afterAll(async () => t?.close())

const authorize = (form: [string, string][]) => postForm(`${t.url}/device_authorization`, [['client_id', 'api-cli'], ['scope', 'read offline_access'], ...form])
const redeem = (deviceCode: string, form: [string, string][] = [], clientId = 'api-cli') =>
  postForm(`${t.url}/token`, [['grant_type', DEVICE_GRANT], ['device_code', deviceCode], ['client_id', clientId], ...form])

async function approvedFlow(form: [string, string][]) {
  const res = await authorize(form)
  expect(res.status).toBe(200)
  await approveAs(t.url, res.json.user_code)
  return res.json.device_code as string
}

function expectInvalidTarget(res: { status: number; headers: Headers; json: any }) {
  expect(res.status).toBe(400)
  expect(res.headers.get('cache-control')).toBe('no-store')
  expect(res.json).toMatchObject({ error: 'invalid_target' })
}

describe('RFC 8707 §2 resource parameter parsing', () => {
  it('lets resource repeat, and only resource', () => {
    const params = readParams({ resource: [API, FILES], client_id: 'x' }, undefined)
    expect(readResources(params)).toEqual([API, FILES])
    expect(() => readParams({ scope: ['a', 'b'] }, undefined)).toThrow(expect.objectContaining({ error: 'invalid_request' }))
  })

  it('answers invalid_request for a repeated scope over HTTP, while repeated resources are accepted', async () => {
    const res = await postForm(`${t.url}/device_authorization`, [['client_id', 'api-cli'], ['scope', 'read'], ['scope', 'read']])
    expect(res.status).toBe(400)
    expect(res.json).toMatchObject({ error: 'invalid_request' })
    expect((await authorize([['resource', API], ['resource', FILES]])).status).toBe(200)
  })

  it.each([
    ['a relative reference', '/api'],
    ['a URI with a fragment', `${API}#frag`],
    ['not a URI', 'api example'],
  ])('answers invalid_target for %s', async (_name, value) => {
    expectInvalidTarget(await authorize([['resource', value]]))
  })
})

describe('RFC 8707 audience restriction of issued tokens', () => {
  it('refuses a resource the client is not configured for, at device authorization and at the token endpoint', async () => {
    expectInvalidTarget(await authorize([['resource', 'https://other.example.com/']]))
    const deviceCode = await approvedFlow([])
    expectInvalidTarget(await redeem(deviceCode, [['resource', 'https://other.example.com/']]))
    // The refusal consumed nothing.
    expect((await redeem(deviceCode)).status).toBe(200)
  })

  it('issues aud = every resource of the device authorization when the token request names none', async () => {
    const deviceCode = await approvedFlow([['resource', API], ['resource', FILES]])
    const res = await redeem(deviceCode)
    expect(res.status).toBe(200)
    expect(decodeJwt(res.json.access_token).aud).toEqual([API, FILES])
  })

  it('narrows aud to the resource named at the token endpoint, refuses one outside the authorization, and refreshes within the family', async () => {
    const deviceCode = await approvedFlow([['resource', API]])
    expectInvalidTarget(await redeem(deviceCode, [['resource', FILES]]))
    const res = await redeem(deviceCode, [['resource', API]])
    expect(res.status).toBe(200)
    expect(decodeJwt(res.json.access_token).aud).toBe(API)

    const refresh = (form: [string, string][]) =>
      postForm(`${t.url}/token`, [['grant_type', 'refresh_token'], ['refresh_token', res.json.refresh_token], ['client_id', 'api-cli'], ...form])
    expectInvalidTarget(await refresh([['resource', FILES]]))
    const again = await refresh([])
    expect(again.status).toBe(200)
    expect(decodeJwt(again.json.access_token).aud).toBe(API)

    const introspected = await postForm(`${t.url}/introspect`, { token: again.json.access_token }, { authorization: basic('rs', FIXTURE.rsSecret) })
    expect(introspected.json).toMatchObject({ active: true, aud: API })
  })

  it('keeps aud = the issuer when no resource is requested', async () => {
    const res = await redeem(await approvedFlow([]))
    expect(decodeJwt(res.json.access_token).aud).toBe(t.url)
  })

  it('refuses at the token endpoint and at refresh a resource the device authorization did not name (RFC 8707 §2.2: the approval covered the issuer alone)', async () => {
    const deviceCode = await approvedFlow([])
    expectInvalidTarget(await redeem(deviceCode, [['resource', API]]))
    // The refused request spent nothing: the code still redeems, for the issuer.
    const res = await redeem(deviceCode)
    expect(res.status).toBe(200)
    expect(decodeJwt(res.json.access_token).aud).toBe(t.url)
    const refreshed = await postForm(`${t.url}/token`, [['grant_type', 'refresh_token'], ['refresh_token', res.json.refresh_token], ['client_id', 'api-cli'], ['resource', API]])
    expectInvalidTarget(refreshed)
  })

  it('refuses any resource for a client configured with none', async () => {
    const res = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read', resource: API })
    expectInvalidTarget(res)
  })

  it('applies to client_credentials too', async () => {
    const ok = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read', resource: API }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect(ok.status).toBe(200)
    expect(decodeJwt(ok.json.access_token).aud).toBe(API)
    expectInvalidTarget(
      await postForm(`${t.url}/token`, { grant_type: 'client_credentials', resource: FILES }, { authorization: basic('conf', FIXTURE.confSecret) }),
    )
  })
})
