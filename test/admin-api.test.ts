/**
 * Governance: the admin API — RFC 6750 bearer authentication with the admin scope (401 / 403),
 * inventory, revocation with dry run, anomalies and audit events since a time, user and client
 * disable, the device registry, and the OpenAPI document.
 */
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveAs, basic, FIXTURE, fixtureConfigFile, PageSession, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: TestServer
let adminToken: string
let readToken: string

beforeAll(async () => {
  const file = await fixtureConfigFile()
  const admin = {
    client_id: 'admin',
    name: 'Admin console',
    type: 'confidential',
    client_secret_hash: await hash(FIXTURE.adminSecret),
    grant_types: ['client_credentials'],
    scopes: ['admin', 'read'],
    default_scopes: ['read'],
    access_token_format: 'opaque',
  }
  t = await startTestServer({ config: await fixtureConfigFile({ clients: [...file.clients, admin] }) })
  const token = async (scope: string) =>
    (await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope }, { authorization: basic('admin', FIXTURE.adminSecret) })).json.access_token as string
  adminToken = await token('admin')
  readToken = await token('read')
})
afterAll(async () => t?.close())

async function call(method: string, path: string, opts: { token?: string | null; body?: unknown; rawBody?: string } = {}) {
  const token = opts.token === undefined ? adminToken : opts.token
  const res = await fetch(`${t.url}/admin/api${path}`, {
    method,
    headers: {
      ...(token !== null ? { authorization: `Bearer ${token}` } : {}),
      ...(opts.body !== undefined || opts.rawBody !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(opts.rawBody !== undefined ? { body: opts.rawBody } : opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined }
}

async function login(user = 'alice') {
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
  await approveAs(t.url, auth.json.user_code, 'approve', user)
  const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' })
  expect(tok.status).toBe(200)
  return tok.json as { access_token: string; refresh_token: string }
}
const active = async (token: string) => (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active

describe('admin API authentication (RFC 6750 §3.1)', () => {
  it('answers 401 with a Bearer challenge and no error attribute without a token, and no error information in the body: {}', async () => {
    const res = await call('GET', '/grants', { token: null })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-admin"')
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.json).toEqual({})
  })

  it('answers no credentials with the bare 401 and {} whatever the body: a malformed JSON body is not judged first (RFC 6750 §3.1)', async () => {
    for (const [path, rawBody] of [['/devices', '{'], ['/devices', '[1]'], ['/revocations', '{"a":'], ['/users/alice/password', 'x']] as const) {
      const res = await call('POST', path, { token: null, rawBody })
      expect({ path, rawBody, status: res.status, challenge: res.headers.get('www-authenticate'), json: res.json }).toEqual({ path, rawBody, status: 401, challenge: 'Bearer realm="devicegate-admin"', json: {} })
    }
    // Basic: another scheme, also no credentials.
    const res = await fetch(`${t.url}/admin/api/devices`, { method: 'POST', headers: { authorization: basic('admin', FIXTURE.adminSecret), 'content-type': 'application/json' }, body: '{' })
    expect({ status: res.status, text: await res.text() }).toEqual({ status: 401, text: '{}' })
    // The public OpenAPI document still needs none.
    expect((await call('GET', '/openapi.json', { token: null })).status).toBe(200)
  })

  it('answers 401 invalid_token for an unknown token', async () => {
    const res = await call('GET', '/grants', { token: 'not-a-token' })
    expect(res.status).toBe(401)
    expect(res.json.error).toBe('invalid_token')
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-admin", error="invalid_token"')
  })

  it('answers a malformed Bearer header (no token, two tokens) with 400 invalid_request and its challenge (RFC 6750 §3.1)', async () => {
    for (const authorization of ['Bearer', 'Bearer x y', `Bearer ${adminToken} ${adminToken}`]) {
      const res = await fetch(`${t.url}/admin/api/grants`, { headers: { authorization } })
      expect(res.status, authorization).toBe(400)
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-admin", error="invalid_request"')
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(((await res.json()) as { error: string }).error).toBe('invalid_request')
    }
  })

  it('answers two Authorization header fields with 400 invalid_request, whichever comes first (RFC 6750 §3.1, RFC 9110 §5.3)', async () => {
    const { request } = await import('node:http')
    const u = new URL(`${t.url}/admin/api/grants`)
    for (const fields of [[`Bearer ${adminToken}`, basic('admin', FIXTURE.adminSecret)], [basic('admin', FIXTURE.adminSecret), `Bearer ${adminToken}`]]) {
      const res = await new Promise<{ status: number; challenge: unknown; body: string }>((resolve, reject) => {
        const req = request({ host: u.hostname, port: u.port, path: u.pathname, headers: ['host', u.host, ...fields.flatMap((f) => ['authorization', f])] }, (r) => {
          let body = ''
          r.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve({ status: r.statusCode!, challenge: r.headers['www-authenticate'], body }))
        })
        req.on('error', reject).end()
      })
      expect(res.status, fields[0]!.split(' ')[0]).toBe(400)
      expect(res.challenge).toBe('Bearer realm="devicegate-admin", error="invalid_request"')
      expect(JSON.parse(res.body).error).toBe('invalid_request')
    }
  })

  it('answers another scheme (Basic, DPoP) like no credentials: 401, the bare challenge (RFC 6750 §3.1, unsupported method)', async () => {
    for (const authorization of [`DPoP ${adminToken}`, basic('admin', FIXTURE.adminSecret)]) {
      const res = await fetch(`${t.url}/admin/api/grants`, { headers: { authorization } })
      expect(res.status, authorization.split(' ')[0]).toBe(401)
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-admin"')
      expect(await res.json()).toEqual({})
    }
  })

  it('treats a blank Authorization header as no credentials: a challenge without an error attribute (RFC 6750 §3.1)', async () => {
    const res = await fetch(`${t.url}/admin/api/grants`, { headers: { authorization: '' } })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-admin"')
  })

  it('accepts the scheme name in any case (RFC 9110 §11.1: auth schemes are case-insensitive)', async () => {
    const res = await fetch(`${t.url}/admin/api/grants`, { headers: { authorization: `bEaReR ${adminToken}` } })
    expect(res.status).toBe(200)
  })

  it('answers 403 insufficient_scope for a live token without the admin scope', async () => {
    const res = await call('GET', '/grants', { token: readToken })
    expect(res.status).toBe(403)
    expect(res.json.error).toBe('insufficient_scope')
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-admin", error="insufficient_scope", scope="admin"')
    const user = await login('mallory')
    expect((await call('GET', '/grants', { token: user.access_token })).status).toBe(403)
  })

  it('serves the OpenAPI document without authentication', async () => {
    const res = await call('GET', '/openapi.json', { token: null })
    expect(res.status).toBe(200)
    expect(res.json.openapi).toBe('3.1.0')
    expect(Object.keys(res.json.paths)).toEqual(expect.arrayContaining(['/grants', '/revocations', '/anomalies', '/audit/events', '/users/{username}/disable', '/devices']))
  })
})

describe('admin API operations', () => {
  it('lists the inventory with filters and paging, and one family with its lineage', async () => {
    await login('alice')
    await login('alice')
    const page = await call('GET', '/users/alice/grants?status=active&limit=1')
    expect(page.status).toBe(200)
    expect(page.json.items).toHaveLength(1)
    expect(page.json.items[0]).toMatchObject({ subject: 'alice', client_id: 'cli', status: 'active' })
    expect(page.json.next_cursor).toEqual(expect.any(String))
    const next = await call('GET', `/grants?subject=alice&status=active&limit=1&cursor=${page.json.next_cursor}`)
    expect(next.json.items[0].grant_id).not.toBe(page.json.items[0].grant_id)
    const one = await call('GET', `/grants/${page.json.items[0].grant_id}`)
    expect(one.json.lineage.approval.subject).toBe('alice')
    expect((await call('GET', '/grants/missing')).status).toBe(404)
    expect((await call('GET', '/grants?status=weird')).json.error).toBe('invalid_request')
    expect((await call('GET', '/grants?cursor=%%%')).status).toBe(400)
  })

  it('revokes with a dry run first, then for real, effective at once', async () => {
    const tok = await login('mallory')
    const dry = await call('POST', '/revocations', { body: { kind: 'user', username: 'mallory', dry_run: true } })
    expect(dry.status).toBe(200)
    expect(dry.json).toMatchObject({ kind: 'user', dry_run: true })
    expect(dry.json.grants).toBeGreaterThanOrEqual(1)
    expect(dry.json.listed.length).toBeGreaterThanOrEqual(1)
    expect(await active(tok.access_token)).toBe(true)
    const real = await call('POST', '/revocations', { body: { kind: 'user', username: 'mallory', reason: 'incident 42' } })
    expect(real.json).toMatchObject({ dry_run: false, grants: dry.json.grants })
    expect(await active(tok.access_token)).toBe(false)
    const pattern = await call('POST', '/revocations', { body: { kind: 'pattern', request_ip: '127.0.0.0/8', dry_run: true } })
    expect(pattern.status).toBe(200)
    expect((await call('POST', '/revocations', { body: { kind: 'pattern' } })).json.error).toBe('invalid_request')
    expect((await call('POST', '/revocations', { body: { kind: 'nope' } })).json.error).toBe('invalid_request')
    expect((await call('POST', '/revocations', { rawBody: '{not json' })).status).toBe(400)
    expect((await call('POST', '/revocations', { token: readToken, body: { kind: 'user', username: 'alice' } })).status).toBe(403)
  })

  it('lists audit events and anomalies since a time', async () => {
    const since = new Date((t.clock.nowSeconds() - 5) * 1000).toISOString()
    const tok = await login('alice')
    await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tok.refresh_token, client_id: 'cli' })
    await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tok.refresh_token, client_id: 'cli' })
    await t.server.governance.audit!.flush()
    const events = await call('GET', `/audit/events?since=${encodeURIComponent(since)}`)
    expect(events.status).toBe(200)
    const types = events.json.items.map((e: { type: string }) => e.type)
    expect(types).toEqual(expect.arrayContaining(['device_code.approved', 'token.issued', 'refresh_token.reuse_detected', 'anomaly.raised']))
    expect(events.json.items.every((e: { time: string }) => e.time >= since.replace(/\.\d+Z$/, 'Z').slice(0, 19))).toBe(true)
    const anomalies = await call('GET', `/anomalies?since=${encodeURIComponent(since)}&kind=refresh_token_reuse`)
    expect(anomalies.json.items[0]).toMatchObject({ kind: 'refresh_token_reuse', subject: 'alice', action: 'alert' })
    expect((await call('GET', '/anomalies?since=yesterday-ish')).json.error).toBe('invalid_request')
  })

  it('disables a user (tokens inactive at once, sign-in refused) and a client; 404 for unknown ones', async () => {
    const tok = await login('alice')
    const res = await call('POST', '/users/alice/disable')
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ username: 'alice', state: 'disabled' })
    expect(res.json.revoked_grants).toBeGreaterThanOrEqual(1)
    expect(await active(tok.access_token)).toBe(false)
    const page = new PageSession(t.url)
    await page.get('/device')
    expect((await page.post('/device/sign-in', { username: 'alice', password: FIXTURE.password })).status).toBe(401)
    expect((await call('POST', '/users/alice/enable')).json.state).toBe('enabled')
    expect((await call('POST', '/users/nobody/disable')).status).toBe(404)

    const cc = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect((await call('POST', '/clients/conf/disable')).json.revoked_grants).toBeGreaterThanOrEqual(1)
    expect(await active(cc.json.access_token)).toBe(false)
    expect((await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret) })).json.error).toBe('invalid_client')
    await call('POST', '/clients/conf/enable')
  })

  it('mounts the device registry', async () => {
    const jkt = 'A'.repeat(43)
    expect((await call('POST', '/devices', { body: { jkt, label: 'build-agent-07' } })).status).toBe(201)
    expect((await call('GET', '/devices')).json.items.map((d: { jkt: string }) => d.jkt)).toContain(jkt)
    expect((await call('POST', `/devices/${jkt}/retire`)).status).toBe(200)
    expect((await call('GET', `/devices/${'B'.repeat(43)}`)).status).toBe(404)
    expect((await call('POST', '/devices', { body: { jkt: 'short', label: 'x' } })).status).toBe(400)
  })

  it('stops accepting an admin token once it is revoked', async () => {
    const token = (await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'admin' }, { authorization: basic('admin', FIXTURE.adminSecret) })).json.access_token
    expect((await call('GET', '/devices', { token })).status).toBe(200)
    await postForm(`${t.url}/revoke`, { token }, { authorization: basic('admin', FIXTURE.adminSecret) })
    expect((await call('GET', '/devices', { token })).status).toBe(401)
  })
})
