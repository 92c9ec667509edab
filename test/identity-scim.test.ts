/**
 * SCIM 2.0 provisioning (RFC 7643 / RFC 7644) over HTTP — bearer authentication with
 * the `scim` scope, the RFC 7644 examples (create, filters, paging, PUT, PATCH, DELETE, errors
 * with scimType), deactivation and deletion revoking every grant of the person (`orphaned_token`,
 * audited with the SCIM client as actor), the join with upstream sign-in, and an Entra ID–style
 * and an Okta-style provisioning sequence replayed.
 */
import { request } from 'node:http'
import { connect } from 'node:net'
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startFakeIdp, upstreamPageSession, type FakeIdp } from './support/fake-idp.js'
import { basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User'
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group'
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error'
const SECRET = 'provisioner-secret-0123456789abcdef'

let t: TestServer
let idp: FakeIdp
let token: string
let readToken: string
let nextClaims: Record<string, unknown> = {}

beforeAll(async () => {
  idp = await startFakeIdp({ clientId: 'devicegate', subject: () => nextClaims })
  process.env.DG_TEST_SCIM_UPSTREAM_SECRET = 'upstream-secret-0123456789'
  const file = await fixtureConfigFile()
  const h = await hash(SECRET)
  t = await startTestServer({
    config: await fixtureConfigFile({
      clients: [
        ...file.clients,
        { client_id: 'provisioner', type: 'confidential', client_secret_hash: h, grant_types: ['client_credentials'], scopes: ['scim', 'read'], access_token_format: 'opaque' },
      ],
      identity: { scim: { enabled: true } },
      identity_providers: [
        { id: 'corp', issuer: idp.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_SCIM_UPSTREAM_SECRET', join: { attribute: 'userName', claim: 'preferred_username' } },
      ],
    }),
  })
  const tokenFor = async (scope: string) =>
    (await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope }, { authorization: basic('provisioner', SECRET) })).json.access_token as string
  token = await tokenFor('scim')
  readToken = await tokenFor('read')
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

async function scim(method: string, path: string, body?: unknown, opts: { token?: string | null; headers?: Record<string, string>; raw?: string } = {}) {
  const tk = opts.token === undefined ? token : opts.token
  const res = await fetch(`${t.url}/scim/v2${path}`, {
    method,
    headers: {
      ...(tk !== null ? { authorization: `Bearer ${tk}` } : {}),
      ...(body !== undefined || opts.raw !== undefined ? { 'content-type': 'application/scim+json' } : {}),
      ...opts.headers,
    },
    ...(opts.raw !== undefined ? { body: opts.raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, json: text ? (JSON.parse(text) as any) : undefined }
}
const q = (filter: string, extra = '') => `?filter=${encodeURIComponent(filter)}${extra}`

describe('RFC 7644 §2 authentication and §3.12 errors', () => {
  it('answers 401 with a Bearer challenge and SCIM error JSON without a token', async () => {
    const res = await scim('GET', '/Users', undefined, { token: null })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-scim"')
    expect(res.headers.get('content-type')).toContain('application/scim+json')
    expect(res.json).toMatchObject({ schemas: [ERROR], status: '401' })
  })

  it('answers a request without credentials — no Authorization, a blank one, or another scheme — with the bare challenge and only the required SCIM error members (RFC 6750 §3.1, RFC 7644 §3.12)', async () => {
    const before = await (await fetch(`${t.url}/metrics`)).text()
    const counted = (text: string) => Number(/devicegate_http_requests_total\{endpoint="\/scim\/v2\/Users",outcome="no_credentials"\} (\d+)/.exec(text)?.[1] ?? 0)
    const cases: Array<[string, string, Record<string, string>, string | undefined]> = [
      ['GET', '/Users', {}, undefined],
      ['GET', '/Users', { authorization: '' }, undefined],
      ['GET', '/Users', { authorization: basic('provisioner', SECRET) }, undefined],
      ['GET', '/Users', { authorization: `DPoP ${token}` }, undefined],
      // Whatever the body, the path or the method: nothing is judged before the credentials.
      ['POST', '/Users', { 'content-type': 'application/scim+json' }, '{not json'],
      ['POST', '/Users', { 'content-type': 'text/plain' }, 'x'],
      ['GET', '/Nowhere', {}, undefined],
      ['PATCH', '/ServiceProviderConfig', {}, undefined],
    ]
    for (const [method, path, headers, body] of cases) {
      const res = await fetch(`${t.url}/scim/v2${path}`, { method, headers, ...(body !== undefined ? { body } : {}) })
      expect({ method, path, headers, status: res.status, challenge: res.headers.get('www-authenticate'), type: res.headers.get('content-type'), cacheControl: res.headers.get('cache-control'), body: await res.text() }).toEqual({
        method,
        path,
        headers,
        status: 401,
        challenge: 'Bearer realm="devicegate-scim"',
        type: 'application/scim+json; charset=utf-8',
        cacheControl: 'no-store',
        body: JSON.stringify({ schemas: [ERROR], status: '401' }),
      })
    }
    // Counted as no_credentials, as at the other protected resources: GET /Users four times, POST twice.
    expect(counted(await (await fetch(`${t.url}/metrics`)).text()) - counted(before)).toBe(6)
  })

  it('answers a Bearer field without a well-formed token with 400 invalid_request, as the other protected resources (RFC 6750 §3.1)', async () => {
    for (const authorization of ['Bearer', 'Bearer ', 'Bearer a b', 'bearer %%%']) {
      const res = await scim('GET', '/Users', undefined, { token: null, headers: { authorization } })
      expect({ authorization, status: res.status, challenge: res.headers.get('www-authenticate') }).toEqual({ authorization, status: 400, challenge: 'Bearer realm="devicegate-scim", error="invalid_request"' })
      expect(res.json).toMatchObject({ schemas: [ERROR], status: '400' })
    }
    const unknown = await scim('GET', '/Users', undefined, { token: 'not-a-live-token' })
    expect({ status: unknown.status, challenge: unknown.headers.get('www-authenticate') }).toEqual({ status: 401, challenge: 'Bearer realm="devicegate-scim", error="invalid_token"' })
    expect(unknown.json).toMatchObject({ schemas: [ERROR], status: '401', detail: 'the access token is not active' })
    // The request's fault, not the server's, in the request metrics.
    expect(await (await fetch(`${t.url}/metrics`)).text()).not.toMatch(/devicegate_http_requests_total\{endpoint="\/scim\/v2\/Users",outcome="server_error"\}/)
  })

  it('answers 403 insufficient_scope for a token without the scim scope, before reading the body', async () => {
    const res = await scim('POST', '/Users', undefined, { token: readToken, raw: '{not json' })
    expect(res.status).toBe(403)
    expect(res.headers.get('www-authenticate')).toContain('error="insufficient_scope"')
  })

  it('answers 400 invalid_request to a repeated Authorization field, whichever line carries the scim token (RFC 6750 §3.1, RFC 9110 §5.3)', async () => {
    /** GET /Users with every line of `authorizations` as its own Authorization field line. */
    const twice = (authorizations: string[]) =>
      new Promise<{ status: number; challenge: string | undefined; json: any }>((resolve, reject) => {
        const req = request(`${t.url}/scim/v2/Users`, { method: 'GET' }, (res) => {
          let text = ''
          res.on('data', (d: Buffer) => (text += d.toString('utf8')))
          res.on('end', () => resolve({ status: res.statusCode!, challenge: res.headers['www-authenticate'], json: JSON.parse(text) }))
        })
        req.on('error', reject)
        req.setHeader('Authorization', authorizations)
        req.end()
      })
    for (const pair of [[`Bearer ${token}`, `Bearer ${readToken}`], [`Bearer ${readToken}`, `Bearer ${token}`], [`Bearer ${token}`, basic('rs', FIXTURE.rsSecret)]]) {
      const res = await twice(pair)
      expect({ pair, status: res.status, challenge: res.challenge }).toEqual({ pair, status: 400, challenge: 'Bearer realm="devicegate-scim", error="invalid_request"' })
      expect(res.json).toMatchObject({ schemas: [ERROR], status: '400' })
    }
    expect((await twice([`Bearer ${token}`])).status).toBe(200)
  })

  it('answers 400 invalidSyntax for a body that is not JSON', async () => {
    const res = await scim('POST', '/Users', undefined, { raw: '{not json' })
    expect(res.status).toBe(400)
    expect(res.json).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidSyntax' })
  })

  it('refuses, storing nothing, a body nested too deeply (was a 500 from the recursive store) or with strings no database keeps as sent', async () => {
    const before = (await scim('GET', '/Users')).json.totalResults
    const deep = `{"schemas":["${USER}"],"userName":"deep","x":${'['.repeat(20000)}${']'.repeat(20000)}}`
    const nested = await scim('POST', '/Users', undefined, { raw: deep })
    expect(nested.status).toBe(400)
    expect(nested.json).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidSyntax' })
    // A lone surrogate was stored as U+FFFD (the 201 echoed what was sent, later reads differed);
    // U+0000 is refused by PostgreSQL text columns. Both are 400 invalidValue, in values and names.
    for (const raw of [
      `{"schemas":["${USER}"],"userName":"lone\\ud800"}`,
      `{"schemas":["${USER}"],"userName":"nul\\u0000"}`,
      `{"schemas":["${USER}"],"userName":"ok","name":{"given\\udc00Name":"x"}}`,
    ]) {
      const res = await scim('POST', '/Users', undefined, { raw })
      expect(res.status, raw).toBe(400)
      expect(res.json).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidValue' })
    }
    // A well-formed pair outside the BMP is fine.
    const emoji = await scim('POST', '/Users', undefined, { raw: `{"schemas":["${USER}"],"userName":"emoji\\ud83d\\ude00"}` })
    expect(emoji.status).toBe(201)
    expect((await scim('GET', `/Users/${emoji.json.id}`)).json.userName).toBe('emoji\u{1F600}')
    expect((await scim('DELETE', `/Users/${emoji.json.id}`)).status).toBe(204)
    expect((await scim('GET', '/Users')).json.totalResults).toBe(before)
  })

  it('answers what the server refuses before any SCIM route (a Content-Encoding: 415, an HTTP/1.1 request without Host: 400, an unmet Expect: 417) with that status in SCIM error JSON (§3.12), not a 500', async () => {
    const port = Number(new URL(t.url).port)
    const send = (text: string) =>
      new Promise<{ status: number; contentType: string; json: any }>((resolve, reject) => {
        let out = ''
        const socket = connect(port, '127.0.0.1', () => socket.write(text))
        socket.on('data', (d: Buffer) => (out += d.toString('latin1')))
        socket.on('error', reject)
        socket.on('close', () => {
          const [head = '', body = ''] = out.split('\r\n\r\n')
          resolve({ status: Number(head.split(' ')[1]), contentType: /content-type: ([^\r]*)/i.exec(head)?.[1] ?? '', json: JSON.parse(body) })
        })
      })
    const auth = `Authorization: Bearer ${token}\r\nConnection: close\r\n`
    for (const [text, status] of [
      [`GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n${auth}\r\n`, 415],
      [`PUT /scim/v2/Users/x HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Type: application/scim+json\r\nContent-Length: 2\r\n${auth}\r\n{}`, 415],
      [`GET /scim/v2/Users HTTP/1.1\r\n${auth}\r\n`, 400],
      [`GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nExpect: fly\r\n${auth}\r\n`, 417],
    ] as const) {
      const res = await send(text)
      expect(res.status, text).toBe(status)
      expect(res.contentType, text).toContain('application/scim+json')
      expect(res.json, text).toMatchObject({ schemas: [ERROR], status: String(status), detail: expect.any(String) })
    }
  })

  it('answers 405 with Allow and SCIM error JSON for another method on a known endpoint, not 404 (RFC 7644 §3.12, RFC 9110 §15.5.6)', async () => {
    const cases: [string, string, string][] = [
      ['DELETE', '/Users', 'GET, POST, HEAD'],
      ['PUT', '/Users', 'GET, POST, HEAD'],
      ['DELETE', '/Groups', 'GET, POST, HEAD'],
      ['PATCH', '/Groups', 'GET, POST, HEAD'],
      ['POST', '/Users/some-id', 'GET, PUT, PATCH, DELETE, HEAD'],
      ['POST', '/Groups/some-id', 'GET, PUT, PATCH, DELETE, HEAD'],
      ['POST', '/ServiceProviderConfig', 'GET, HEAD'],
      ['DELETE', '/ResourceTypes', 'GET, HEAD'],
      ['PUT', '/Schemas/urn:x', 'GET, HEAD'],
    ]
    for (const [method, path, allow] of cases) {
      const res = await scim(method, path)
      expect(res.status, `${method} ${path}`).toBe(405)
      expect(res.headers.get('allow'), `${method} ${path}`).toBe(allow)
      expect(res.headers.get('content-type')).toContain('application/scim+json')
      expect(res.json).toMatchObject({ schemas: [ERROR], status: '405' })
    }
    // Authentication still comes first.
    expect((await scim('DELETE', '/Users', undefined, { token: null })).status).toBe(401)
  })

  it('answers 415 with SCIM error JSON for a body that is not application/scim+json or application/json (RFC 7644 §3.1, §3.12), storing nothing', async () => {
    const before = (await scim('GET', '/Users')).json.totalResults
    const user = JSON.stringify({ schemas: [USER], userName: 'media-type' })
    const created = await scim('POST', '/Users', { schemas: [USER], userName: 'media-type-target' })
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'media-type-group' })
    for (const [method, path, contentType] of [
      ['POST', '/Users', 'text/plain'],
      ['POST', '/Users', 'application/x-www-form-urlencoded'],
      ['POST', '/Groups', 'application/xml'],
      ['PUT', `/Users/${created.json.id}`, 'text/plain'],
      ['PATCH', `/Users/${created.json.id}`, 'text/plain'],
      ['PUT', `/Groups/${group.json.id}`, 'multipart/form-data; boundary=x'],
      ['PATCH', `/Groups/${group.json.id}`, 'text/json'],
    ] as const) {
      const res = await scim(method, path, undefined, { raw: user, headers: { 'content-type': contentType } })
      expect(res.status, `${method} ${path} ${contentType}`).toBe(415)
      expect(res.headers.get('content-type')).toContain('application/scim+json')
      expect(res.json).toMatchObject({ schemas: [ERROR], status: '415' })
    }
    // A body with no media type at all is 415 too.
    const untyped = await fetch(`${t.url}/scim/v2/Users`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: new Blob([user]) })
    expect(untyped.status).toBe(415)
    // Both accepted media types still work, with parameters.
    const json = await scim('POST', '/Users', undefined, { raw: user, headers: { 'content-type': 'application/json; charset=utf-8' } })
    expect(json.status).toBe(201)
    expect((await scim('DELETE', `/Users/${json.json.id}`)).status).toBe(204)
    expect((await scim('DELETE', `/Users/${created.json.id}`)).status).toBe(204)
    expect((await scim('DELETE', `/Groups/${group.json.id}`)).status).toBe(204)
    expect((await scim('GET', '/Users')).json.totalResults).toBe(before)
  })

  it('answers 501 in SCIM format for /Me (RFC 7644 §3.11) and searching with POST (§3.4.3), which it does not implement', async () => {
    for (const [method, path] of [['GET', '/Me'], ['PATCH', '/Me'], ['POST', '/.search'], ['POST', '/Users/.search'], ['POST', '/Groups/.search']] as const) {
      const res = await scim(method, path, method === 'GET' ? undefined : { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'] })
      expect(res.status, `${method} ${path}`).toBe(501)
      expect(res.json).toMatchObject({ schemas: [ERROR], status: '501' })
    }
  })

  it('answers 404 in SCIM format for unknown resources and endpoints', async () => {
    expect((await scim('GET', '/Users/does-not-exist')).json).toMatchObject({ schemas: [ERROR], status: '404' })
    expect((await scim('GET', '/Bulk')).json).toMatchObject({ schemas: [ERROR], status: '404' })
  })
})

describe('RFC 7644 §4 discovery', () => {
  it('describes itself: patch and filter supported, no bulk, no sort, OAuth bearer', async () => {
    const res = await scim('GET', '/ServiceProviderConfig')
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ patch: { supported: true }, filter: { supported: true, maxResults: 1000 }, bulk: { supported: false }, sort: { supported: false } })
    expect(res.json.authenticationSchemes[0].type).toBe('oauthbearertoken')
    const types = await scim('GET', '/ResourceTypes')
    expect(types.json.Resources.map((r: any) => r.endpoint)).toEqual(['/Users', '/Groups'])
    expect((await scim('GET', '/ResourceTypes/User')).json.schema).toBe(USER)
    const schemas = await scim('GET', '/Schemas')
    expect(schemas.json.Resources.map((s: any) => s.id)).toEqual([USER, ENTERPRISE, GROUP])
    expect((await scim('GET', `/Schemas/${GROUP}`)).json.name).toBe('Group')
  })
})

describe('RFC 7644 §3.3–3.6 Users', () => {
  let id: string
  it('creates a User (§3.3 example): 201, Location, meta, no password echoed; a second with the same userName is 409 uniqueness', async () => {
    const body = { schemas: [USER], userName: 'bjensen', externalId: 'bjensen', name: { formatted: 'Ms. Barbara J Jensen III', familyName: 'Jensen', givenName: 'Barbara' }, password: 'not-stored-anywhere' }
    const res = await scim('POST', '/Users', body)
    expect(res.status).toBe(201)
    id = res.json.id
    expect(res.headers.get('location')).toBe(`${t.issuer}/scim/v2/Users/${id}`)
    expect(res.json).toMatchObject({ schemas: [USER], userName: 'bjensen', externalId: 'bjensen', active: true, name: { familyName: 'Jensen' }, meta: { resourceType: 'User', version: 'W/"1"' } })
    expect(JSON.stringify(res.json)).not.toContain('not-stored-anywhere')
    expect(res.headers.get('etag')).toBe('W/"1"')
    const dup = await scim('POST', '/Users', { schemas: [USER], userName: 'BJensen' })
    expect(dup.status).toBe(409)
    expect(dup.json.scimType).toBe('uniqueness')
  })

  it('refuses a User without userName or schemas (400 invalidValue / invalidSyntax), storing nothing', async () => {
    const before = (await scim('GET', '/Users')).json.totalResults
    expect((await scim('POST', '/Users', { schemas: [USER] })).json.scimType).toBe('invalidValue')
    expect((await scim('POST', '/Users', { userName: 'x' })).json.scimType).toBe('invalidSyntax')
    expect((await scim('POST', '/Users', { schemas: [USER], userName: 'y', active: 'maybe' })).json.scimType).toBe('invalidValue')
    expect((await scim('GET', '/Users')).json.totalResults).toBe(before)
  })

  it('filters with eq (case-insensitive userName), co, sw, pr, and/or (§3.4.2.2); a bad filter is 400 invalidFilter', async () => {
    await scim('POST', '/Users', { schemas: [USER], userName: 'jsmith', emails: [{ value: 'jsmith@example.com', type: 'work', primary: true }], name: { familyName: 'Smith' } })
    const names = async (f: string) => (await scim('GET', `/Users${q(f)}`)).json.Resources.map((r: any) => r.userName).sort()
    expect(await names('userName eq "BJENSEN"')).toEqual(['bjensen'])
    expect(await names('name.familyName co "ens"')).toEqual(['bjensen'])
    expect(await names('userName sw "j"')).toEqual(['jsmith'])
    expect(await names('emails pr')).toEqual(['jsmith'])
    expect(await names('userName eq "bjensen" or userName eq "jsmith"')).toEqual(['bjensen', 'jsmith'])
    expect(await names('userName sw "j" and name.familyName eq "smith"')).toEqual(['jsmith'])
    expect(await names('emails[type eq "work" and value co "@example.com"]')).toEqual(['jsmith'])
    expect(await names('externalId eq "BJENSEN"')).toEqual([]) // externalId is case-exact
    const bad = await scim('GET', `/Users${q('userName eq')}`)
    expect(bad.status).toBe(400)
    expect(bad.json.scimType).toBe('invalidFilter')
  })

  it('pages with startIndex and count (§3.4.2.4)', async () => {
    const all = (await scim('GET', '/Users')).json
    expect(all.totalResults).toBeGreaterThanOrEqual(2)
    const page = (await scim('GET', '/Users?startIndex=2&count=1')).json
    expect(page).toMatchObject({ totalResults: all.totalResults, startIndex: 2, itemsPerPage: 1 })
    expect(page.Resources[0].id).toBe(all.Resources[1].id)
    expect((await scim('GET', '/Users?count=0')).json.Resources).toEqual([])
    expect((await scim('GET', '/Users?count=abc')).json.scimType).toBe('invalidValue')
  })

  it('pages with integers only (§3.4.2.4, RFC 7643 §2.3.4 no exponent): startIndex=1e23 is 400 invalidValue, not echoed as 1e+23; startIndex < 1 is 1', async () => {
    for (const bad of ['1e23', '1.5', '0x10', '99999999999999999999']) {
      const res = await scim('GET', `/Users?startIndex=${bad}`)
      expect(res.status, bad).toBe(400)
      expect(res.json.scimType, bad).toBe('invalidValue')
      expect(res.json.detail, bad).toMatch(/"startIndex" must be an integer/)
    }
    expect((await scim('GET', '/Users?count=1e2')).status).toBe(400)
    const below = await scim('GET', '/Users?startIndex=-5&count=1')
    expect(below.status).toBe(200)
    expect(below.json.startIndex).toBe(1)
  })

  it('answers 400 naming the parameter, never a 500, to a query parameter sent twice (§3.4.2, §3.12): filter is invalidFilter, the others invalidValue', async () => {
    const user = (await scim('POST', '/Users', { schemas: [USER], userName: `twice-${Date.now()}@example.com` })).json
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: `twice-${Date.now()}` })
    expect(group.status).toBe(201)
    const repeated = {
      filter: [`filter=${encodeURIComponent('userName pr')}&filter=${encodeURIComponent('id pr')}`, 'invalidFilter'],
      attributes: ['attributes=userName&attributes=id', 'invalidValue'],
      excludedAttributes: ['excludedAttributes=userName&excludedAttributes=emails', 'invalidValue'],
      count: ['count=1&count=2', 'invalidValue'],
    } as const
    for (const path of ['/Users', '/Groups', `/Users/${user.id}`, `/Groups/${group.json.id}`])
      for (const [name, [query, scimType]] of Object.entries(repeated)) {
        const res = await scim('GET', `${path}?${query}`)
        expect(res.status, `${path}?${query}`).toBe(400)
        expect(res.json, `${path}?${query}`).toMatchObject({ schemas: [ERROR], status: '400', scimType, detail: `"${name}" must not be included more than once` })
      }
  })

  it('replaces with PUT (§3.5.1) and honours If-Match (412 on an old version)', async () => {
    const res = await scim('PUT', `/Users/${id}`, { schemas: [USER], userName: 'bjensen', displayName: 'Babs Jensen', externalId: 'bjensen' }, { headers: { 'if-match': 'W/"1"' } })
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ displayName: 'Babs Jensen', meta: { version: 'W/"2"' } })
    expect(res.json.name).toBeUndefined()
    const stale = await scim('PUT', `/Users/${id}`, { schemas: [USER], userName: 'bjensen' }, { headers: { 'if-match': 'W/"1"' } })
    expect(stale.status).toBe(412)
  })

  it('patches (§3.5.2): replace with and without path, add to a multi-valued attribute with a filter path', async () => {
    let res = await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'displayName', value: 'Barbara' }] })
    expect(res.status).toBe(200)
    expect(res.json.displayName).toBe('Barbara')
    res = await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'emails', value: [{ value: 'babs@example.com', type: 'work', primary: true }] }] })
    expect(res.json.emails[0].value).toBe('babs@example.com')
    expect(t.server.identity.directory.person(id)?.email).toBe('babs@example.com')
    res = await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'emails[type eq "work"].value', value: 'barbara@example.com' }] })
    expect(t.server.identity.directory.person(id)?.email).toBe('barbara@example.com')
    const bad = await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'jump', path: 'displayName' }] })
    expect(bad.status).toBe(400)
    expect(bad.json.scimType).toBe('invalidSyntax')
    expect((await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'remove' }] })).status).toBe(400)
  })

  it('refuses a PATCH (§3.5.2) whose path or value names a prototype link: 400, Object.prototype untouched (scim-patch 0.8.3 set members on it for the whole process)', async () => {
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'proto-test' })
    expect(group.status).toBe(201)
    const before = await scim('GET', `/Users/${id}`)
    // Each of these set a property on Object.prototype through scim-patch 0.8.3.
    const paths = ['__proto__.dgPolluted', 'constructor.prototype.dgPolluted', 'name.__proto__.dgPolluted', `${ENTERPRISE}:__proto__.dgPolluted`, 'emails[value eq "x"].__proto__', '__proto__']
    for (const path of paths)
      for (const target of [`/Users/${id}`, `/Groups/${group.json.id}`]) {
        const res = await scim('PATCH', target, undefined, { raw: JSON.stringify({ schemas: [PATCH], Operations: [{ op: 'add', path, value: { dgPolluted: 'yes' } }] }) })
        expect(res.status, `${target} ${path}`).toBe(400)
        expect(res.json.scimType).toBe('invalidPath')
      }
    // A path-less value's member names are read as paths; JSON.parse keeps "__proto__" as a member.
    for (const value of ['{"__proto__.dgPolluted":"yes"}', '{"constructor.prototype.dgPolluted":"yes"}', '{"name":{"__proto__":{"dgPolluted":"yes"}}}']) {
      const res = await scim('PATCH', `/Users/${id}`, undefined, { raw: `{"schemas":["${PATCH}"],"Operations":[{"op":"replace","value":${value}}]}` })
      expect(res.status, value).toBe(400)
      expect(res.json.scimType).toBe('invalidValue')
    }
    expect(Object.prototype).not.toHaveProperty('dgPolluted')
    expect((await scim('GET', `/Users/${id}`)).json.meta.version).toBe(before.json.meta.version)
  })

  it('refuses a PATCH (§3.5.2) that modifies a readOnly attribute (id, meta, groups): 400 mutability, nothing changed', async () => {
    const before = await scim('GET', `/Users/${id}`)
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'readonly-test' })
    const cases: Array<[string, Record<string, unknown>]> = [
      [`/Users/${id}`, { op: 'replace', path: 'id', value: 'another-id' }],
      [`/Users/${id}`, { op: 'replace', path: 'urn:ietf:params:scim:schemas:core:2.0:User:id', value: 'another-id' }],
      [`/Users/${id}`, { op: 'replace', path: 'meta.created', value: '2000-01-01T00:00:00Z' }],
      [`/Users/${id}`, { op: 'remove', path: 'meta' }],
      [`/Users/${id}`, { op: 'add', path: 'groups', value: [{ value: group.json.id }] }],
      [`/Users/${id}`, { op: 'replace', value: { id: 'another-id', displayName: 'Not Applied' } }],
      [`/Groups/${group.json.id}`, { op: 'replace', path: 'id', value: 'another-id' }],
    ]
    for (const [target, op] of cases) {
      const res = await scim('PATCH', target, { schemas: [PATCH], Operations: [op] })
      expect(res.status, JSON.stringify(op)).toBe(400)
      expect(res.json.scimType, JSON.stringify(op)).toBe('mutability')
    }
    const after = await scim('GET', `/Users/${id}`)
    expect(after.json.meta.version).toBe(before.json.meta.version)
    expect(after.json.displayName).toBe(before.json.displayName)
    // Echoing the resource's own id modifies nothing, so it is not refused.
    const echo = await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { id, displayName: before.json.displayName } }] })
    expect(echo.status).toBe(200)
  })

  it('ignores readOnly values in a PUT (§3.5.1 "readOnly: any values provided SHALL be ignored"): another id is 200 and the id stays', async () => {
    const current = await scim('GET', `/Users/${id}`)
    const res = await scim('PUT', `/Users/${id}`, { schemas: [USER], id: 'another-id', userName: current.json.userName, displayName: current.json.displayName, externalId: current.json.externalId })
    expect(res.status).toBe(200)
    expect(res.json.id).toBe(id)
    expect((await scim('GET', '/Users/another-id')).status).toBe(404)
  })

  it('deletes (§3.6): 204, then 404, and the userName is free again', async () => {
    const created = await scim('POST', '/Users', { schemas: [USER], userName: 'temp' })
    expect((await scim('DELETE', `/Users/${created.json.id}`)).status).toBe(204)
    expect((await scim('GET', `/Users/${created.json.id}`)).status).toBe(404)
    expect((await scim('POST', '/Users', { schemas: [USER], userName: 'temp' })).status).toBe(201)
  })

  it('does not expose configured users', async () => {
    expect((await scim('GET', `/Users${q('userName eq "alice"')}`)).json.totalResults).toBe(0)
    expect((await scim('GET', '/Users/alice')).status).toBe(404)
  })
})

describe('deprovisioning revokes every grant of the person (orphaned_token), audited with the SCIM client', () => {
  const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code'
  const active = async (tk: string) => (await postForm(`${t.url}/introspect`, { token: tk }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active

  async function provisionedPersonWithToken(userName: string, sub: string) {
    const created = await scim('POST', '/Users', { schemas: [USER], userName, emails: [{ value: userName, primary: true }] })
    expect(created.status).toBe(201)
    nextClaims = { sub, preferred_username: userName, email: userName, groups: [] }
    const page = await upstreamPageSession(t.url, 'corp')
    // The join: the upstream sign-in landed on the provisioned person, not a new one.
    expect(t.server.identity.directory.person(created.json.id)?.upstreamSub).toBe(sub)
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
    expect(await page.decide(auth.json.user_code, 'approve')).toBe(200)
    const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE, device_code: auth.json.device_code, client_id: 'cli' })
    expect(tok.json.access_token).toBeTruthy()
    expect(await active(tok.json.access_token)).toBe(true)
    return { id: created.json.id as string, accessToken: tok.json.access_token as string, page }
  }

  beforeEach(() => {
    nextClaims = {}
  })

  it('active: false revokes at once; reactivation lets the person sign in again but revives nothing', async () => {
    const p = await provisionedPersonWithToken('dana@example.com', 'sub-dana')
    const res = await scim('PATCH', `/Users/${p.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] })
    expect(res.json.active).toBe(false)
    expect(await active(p.accessToken)).toBe(false)
    const anomalies = await t.server.store.listAnomalies({ sinceTime: 0, kind: 'orphaned_token', limit: 100 })
    expect(anomalies.some((a) => a.subject === p.id)).toBe(true)
    const events = await t.server.store.listAuditEvents({ limit: 10_000 })
    const changed = events.find((e) => e.type === 'person.status_changed' && e.subject === p.id)!
    expect(changed.actor).toBe('scim:provisioner')
    expect(events.some((e) => e.type === 'token.revoked' && e.subject === p.id && e.actor === 'scim:provisioner')).toBe(true)
    // Signed-in session stops counting; upstream sign-in is refused while disabled.
    expect((await p.page.get('/device')).body).not.toContain('Sign out')
    await scim('PATCH', `/Users/${p.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: true }] })
    expect(await active(p.accessToken)).toBe(false)
    nextClaims = { sub: 'sub-dana', preferred_username: 'dana@example.com' }
    await upstreamPageSession(t.url, 'corp')
  })

  it('DELETE revokes at once', async () => {
    const p = await provisionedPersonWithToken('erin@example.com', 'sub-erin')
    expect((await scim('DELETE', `/Users/${p.id}`)).status).toBe(204)
    expect(await active(p.accessToken)).toBe(false)
    expect(t.server.identity.directory.get(p.id)).toBeUndefined()
  })

  it('group membership reaches policy now', async () => {
    const created = await scim('POST', '/Users', { schemas: [USER], userName: 'gil' })
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'payments-admins', members: [{ value: created.json.id }] })
    expect(group.status).toBe(201)
    expect(t.server.identity.directory.get(created.json.id)?.groups).toEqual(['payments-admins'])
    expect((await scim('GET', `/Users/${created.json.id}`)).json.groups).toEqual([expect.objectContaining({ value: group.json.id, display: 'payments-admins' })])
  })
})

describe('Entra ID–style provisioning sequence', () => {
  it('create, find, patch attributes and manager, group add/remove, deactivate, reactivate, delete', async () => {
    const userName = 'Test_User_dfeef4c5-5681-4387-b016-bdf221e82081@contoso.com'
    expect((await scim('GET', `/Users${q(`userName eq "${userName}"`)}`)).json).toMatchObject({ totalResults: 0, Resources: [] })
    const created = await scim('POST', '/Users', {
      schemas: [USER, ENTERPRISE],
      externalId: '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef',
      userName,
      active: true,
      emails: [{ primary: true, type: 'work', value: 'Test_User_11bb6097-a2a7-4b60-8ad1-e3dc5f4bd9ce@testuser.com' }],
      meta: { resourceType: 'User' },
      name: { formatted: 'givenName familyName', familyName: 'familyName', givenName: 'givenName' },
      roles: [],
    })
    expect(created.status).toBe(201)
    const id = created.json.id
    expect((await scim('GET', `/Users${q(`userName eq "${userName}"`)}`)).json.totalResults).toBe(1)
    const patched = await scim('PATCH', `/Users/${id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'Replace', path: 'emails[type eq "work"].value', value: 'updatedEmail@microsoft.com' },
        { op: 'Replace', path: 'name.familyName', value: 'updatedFamilyName' },
        { op: 'Add', path: `${ENTERPRISE}:manager`, value: 'b4f0c3a6-manager' },
      ],
    })
    expect(patched.status).toBe(200)
    expect(patched.json.name.familyName).toBe('updatedFamilyName')
    expect(t.server.identity.directory.person(id)).toMatchObject({ email: 'updatedemail@microsoft.com', manager: 'b4f0c3a6-manager' })

    const group = await scim('POST', '/Groups', { schemas: [GROUP], externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159', displayName: 'displayName', meta: { resourceType: 'Group' } })
    expect(group.status).toBe(201)
    const gid = group.json.id
    expect((await scim('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'Add', path: 'members', value: [{ $ref: null, value: id }] }] })).status).toBe(200)
    expect(t.server.identity.directory.get(id)?.groups).toEqual(['displayName'])
    const byMember = await scim('GET', `/Groups${q(`id eq "${gid}" and members[value eq "${id}"]`, '&excludedAttributes=members')}`)
    expect(byMember.json.totalResults).toBe(1)
    expect(byMember.json.Resources[0].members).toBeUndefined()
    expect((await scim('GET', `/Groups${q('displayName eq "displayName"', '&excludedAttributes=members')}`)).json.totalResults).toBe(1)
    expect((await scim('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'Remove', path: `members[value eq "${id}"]` }] })).status).toBe(200)
    expect(t.server.identity.directory.get(id)?.groups).toEqual([])

    const off = await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'Replace', path: 'active', value: 'False' }] })
    expect(off.json.active).toBe(false)
    expect(t.server.identity.directory.get(id)?.disabled).toBe(true)
    const on = await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'Replace', path: 'active', value: 'True' }] })
    expect(on.json.active).toBe(true)
    expect((await scim('DELETE', `/Users/${id}`)).status).toBe(204)
    expect((await scim('GET', `/Users/${id}`)).status).toBe(404)
    expect((await scim('DELETE', `/Groups/${gid}`)).status).toBe(204)
  })
})

describe('Okta-style provisioning sequence', () => {
  it('create, PUT profile, group push add/remove/rename, deactivate, reactivate, delete', async () => {
    const userName = 'oktauser@example.com'
    expect((await scim('GET', `/Users${q(`userName eq "${userName}"`, '&startIndex=1&count=100')}`)).json.totalResults).toBe(0)
    const created = await scim('POST', '/Users', {
      schemas: [USER],
      userName,
      name: { givenName: 'Okta', familyName: 'User' },
      emails: [{ primary: true, value: userName, type: 'work' }],
      displayName: 'Okta User',
      locale: 'en-US',
      externalId: '00ujl29u0le5T6Aj10h7',
      groups: [],
      password: '1mz050nq',
      active: true,
    })
    expect(created.status).toBe(201)
    const id = created.json.id
    expect((await scim('GET', `/Users/${id}`)).json.userName).toBe(userName)
    const put = await scim('PUT', `/Users/${id}`, {
      schemas: [USER],
      id,
      userName,
      name: { givenName: 'Okta', familyName: 'Renamed' },
      emails: [{ primary: true, value: userName, type: 'work' }],
      displayName: 'Okta Renamed',
      active: true,
    })
    expect(put.json).toMatchObject({ displayName: 'Okta Renamed', name: { familyName: 'Renamed' } })

    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Test SCIMv2', members: [{ value: id, display: userName }] })
    expect(group.status).toBe(201)
    const gid = group.json.id
    expect(t.server.identity.directory.get(id)?.groups).toEqual(['Test SCIMv2'])
    await scim('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: `members[value eq "${id}"]` }] })
    expect(t.server.identity.directory.get(id)?.groups).toEqual([])
    await scim('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: id, display: userName }] }] })
    const renamed = await scim('PATCH', `/Groups/${gid}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { id: gid, displayName: 'Test SCIMv2 renamed' } }] })
    expect(renamed.json.displayName).toBe('Test SCIMv2 renamed')
    expect(t.server.identity.directory.get(id)?.groups).toEqual(['Test SCIMv2 renamed'])

    expect((await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] })).json.active).toBe(false)
    expect((await scim('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] })).json.active).toBe(true)
    expect((await scim('DELETE', `/Groups/${gid}`)).status).toBe(204)
    expect(t.server.identity.directory.get(id)?.groups).toEqual([])
    expect((await scim('DELETE', `/Users/${id}`)).status).toBe(204)
  })
})
