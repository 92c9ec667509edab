/**
 * Bad input at the OAuth endpoints (DESIGN.md "done"; RFC 6749 §3.1–3.2, §5.2; RFC 9110): every
 * malformed request gets a 4xx with an RFC 6749 §5.2 JSON `error` and `Cache-Control: no-store`,
 * never a 5xx, and nothing already stored changes — a pending device code still answers
 * `authorization_pending` (and was not even counted as a poll), a refresh token still rotates, an
 * access token is still active.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveAs, basic, FIXTURE, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const FORM = 'application/x-www-form-urlencoded'

let t: TestServer
/** A pending grant: polling it must still answer authorization_pending at the end (first poll). */
let pending: { device_code: string; user_code: string }
/** Live tokens of an approved grant: they must still work at the end. */
let live: { access_token: string; refresh_token: string }

beforeAll(async () => {
  t = await startTestServer()
  const a = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
  pending = a.json
  const b = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
  await approveAs(t.url, b.json.user_code)
  const tokens = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: b.json.device_code, client_id: 'cli' })
  expect(tokens.status).toBe(200)
  live = tokens.json
})
afterAll(async () => t?.close())

interface Row {
  name: string
  path: string
  method?: string
  headers?: Record<string, string>
  body?: string | Uint8Array | FormData
  status: number
  error: string
  /** Extra headers the answer must carry. */
  also?: Record<string, string | RegExp>
}

const form = (fields: Record<string, string> | [string, string][]) => new URLSearchParams(fields as never).toString()
const BASIC_CHALLENGE = { 'www-authenticate': /^Basic / }

/** Rows are built lazily: they need the codes and tokens made in beforeAll. */
function rows(): Row[] {
  const poll = { grant_type: DEVICE_GRANT, device_code: pending.device_code, client_id: 'cli' }
  const refresh = { grant_type: 'refresh_token', refresh_token: live.refresh_token, client_id: 'cli' }
  const huge = 'a'.repeat(10 * 1024 * 1024)
  return [
    // Media type (RFC 6749 §3.2, RFC 8628 §3.1): only application/x-www-form-urlencoded.
    { name: 'a JSON device authorization request', path: '/device_authorization', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'cli', scope: 'read' }), status: 400, error: 'invalid_request' },
    { name: 'a JSON device-code poll', path: '/token', headers: { 'content-type': 'application/json' }, body: JSON.stringify(poll), status: 400, error: 'invalid_request' },
    { name: 'a JSON refresh request', path: '/token', headers: { 'content-type': 'application/json' }, body: JSON.stringify(refresh), status: 400, error: 'invalid_request' },
    { name: 'a JSON revocation request', path: '/revoke', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: live.refresh_token, client_id: 'cli' }), status: 400, error: 'invalid_request' },
    { name: 'a JSON introspection request', path: '/introspect', headers: { 'content-type': 'application/json', authorization: basic('rs', FIXTURE.rsSecret) }, body: JSON.stringify({ token: live.access_token }), status: 400, error: 'invalid_request' },
    { name: 'text/plain carrying a form', path: '/token', headers: { 'content-type': 'text/plain' }, body: form(poll), status: 400, error: 'invalid_request' },
    { name: 'multipart/form-data', path: '/token', body: (() => { const f = new FormData(); for (const [k, v] of Object.entries(poll)) f.append(k, v); return f })(), status: 400, error: 'invalid_request' },
    { name: 'no Content-Type at all', path: '/token', body: new TextEncoder().encode(form(poll)), status: 400, error: 'invalid_request' },
    // A Content-Type that is no valid media type was 415 from the framework.
    { name: 'an empty Content-Type', path: '/token', headers: { 'content-type': '' }, body: form(poll), status: 400, error: 'invalid_request' },
    { name: 'a Content-Type listing two media types', path: '/device_authorization', headers: { 'content-type': `${FORM}, application/json` }, body: form({ client_id: 'cli', scope: 'read' }), status: 400, error: 'invalid_request' },
    { name: 'a Content-Type without a subtype', path: '/revoke', headers: { 'content-type': 'application' }, body: form({ token: live.refresh_token, client_id: 'cli' }), status: 400, error: 'invalid_request' },
    { name: 'an empty body', path: '/token', headers: { 'content-type': FORM }, body: '', status: 400, error: 'invalid_request' },
    // Parameters (RFC 6749 §3.1–3.2): none repeated, none in the query string, required ones present.
    { name: 'a repeated device_code', path: '/token', headers: { 'content-type': FORM }, body: form([['grant_type', DEVICE_GRANT], ['device_code', pending.device_code], ['device_code', pending.device_code], ['client_id', 'cli']]), status: 400, error: 'invalid_request' },
    { name: 'a repeated grant_type', path: '/token', headers: { 'content-type': FORM }, body: form([['grant_type', 'refresh_token'], ['grant_type', 'refresh_token'], ['refresh_token', live.refresh_token], ['client_id', 'cli']]), status: 400, error: 'invalid_request' },
    { name: 'a repeated refresh_token', path: '/token', headers: { 'content-type': FORM }, body: form([['grant_type', 'refresh_token'], ['refresh_token', live.refresh_token], ['refresh_token', 'x'], ['client_id', 'cli']]), status: 400, error: 'invalid_request' },
    { name: 'a repeated token at revocation', path: '/revoke', headers: { 'content-type': FORM }, body: form([['token', live.refresh_token], ['token', live.access_token], ['client_id', 'cli']]), status: 400, error: 'invalid_request' },
    { name: 'a repeated client_id at device authorization', path: '/device_authorization', headers: { 'content-type': FORM }, body: form([['client_id', 'cli'], ['client_id', 'cli'], ['scope', 'read']]), status: 400, error: 'invalid_request' },
    { name: 'poll parameters in the query string', path: `/token?${form(poll)}`, headers: { 'content-type': FORM }, body: '', status: 400, error: 'invalid_request' },
    { name: 'a refresh_token in the query string', path: `/token?refresh_token=${encodeURIComponent(live.refresh_token)}`, headers: { 'content-type': FORM }, body: form({ grant_type: 'refresh_token', client_id: 'cli' }), status: 400, error: 'invalid_request' },
    { name: 'no grant_type', path: '/token', headers: { 'content-type': FORM }, body: form({ device_code: pending.device_code, client_id: 'cli' }), status: 400, error: 'invalid_request' },
    { name: 'no device_code', path: '/token', headers: { 'content-type': FORM }, body: form({ grant_type: DEVICE_GRANT, client_id: 'cli' }), status: 400, error: 'invalid_request' },
    { name: 'an empty device_code (treated as omitted)', path: '/token', headers: { 'content-type': FORM }, body: form({ grant_type: DEVICE_GRANT, device_code: '', client_id: 'cli' }), status: 400, error: 'invalid_request' },
    { name: 'no token at revocation', path: '/revoke', headers: { 'content-type': FORM }, body: form({ client_id: 'cli' }), status: 400, error: 'invalid_request' },
    { name: 'no token at introspection', path: '/introspect', headers: { 'content-type': FORM, authorization: basic('rs', FIXTURE.rsSecret) }, body: '', status: 400, error: 'invalid_request' },
    { name: 'no client at device authorization', path: '/device_authorization', headers: { 'content-type': FORM }, body: form({ scope: 'read' }), status: 401, error: 'invalid_client' },
    // Size: a 10 MB body is refused before it is parsed.
    { name: 'a 10 MB form body', path: '/device_authorization', headers: { 'content-type': FORM }, body: `client_id=cli&scope=${huge}`, status: 413, error: 'invalid_request' },
    { name: 'a 10 MB JSON body', path: '/token', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ device_code: huge }), status: 413, error: 'invalid_request' },
    // Non-ASCII and malformed encodings are just values that match nothing.
    { name: 'a non-ASCII client_id', path: '/device_authorization', headers: { 'content-type': FORM }, body: form({ client_id: 'clï😀', scope: 'read' }), status: 401, error: 'invalid_client' },
    { name: 'a non-ASCII scope', path: '/device_authorization', headers: { 'content-type': FORM }, body: form({ client_id: 'cli', scope: 'réad' }), status: 400, error: 'invalid_scope' },
    { name: 'a non-ASCII device_code', path: '/token', headers: { 'content-type': FORM }, body: form({ grant_type: DEVICE_GRANT, device_code: 'ça-😀', client_id: 'cli' }), status: 400, error: 'invalid_grant' },
    { name: 'invalid UTF-8 and percent-encoding', path: '/token', headers: { 'content-type': FORM }, body: new Uint8Array([...Buffer.from('grant_type=%ZZ%E0%A4&device_code='), 0xff, 0xfe]), status: 400, error: 'unsupported_grant_type' },
    { name: 'NUL bytes in a refresh_token', path: '/token', headers: { 'content-type': FORM }, body: form({ grant_type: 'refresh_token', refresh_token: '\0\0', client_id: 'cli' }), status: 400, error: 'invalid_grant' },
    // Client authentication (RFC 6749 §2.3.1, §5.2): a malformed Basic header is a failed attempt.
    { name: 'Basic with a non-base64 value', path: '/introspect', headers: { 'content-type': FORM, authorization: 'Basic !!!' }, body: form({ token: live.access_token }), status: 401, error: 'invalid_client', also: BASIC_CHALLENGE },
    { name: 'Basic without a colon', path: '/revoke', headers: { 'content-type': FORM, authorization: `Basic ${Buffer.from('rs').toString('base64')}` }, body: form({ token: live.access_token }), status: 401, error: 'invalid_client', also: BASIC_CHALLENGE },
    { name: 'Basic with a bad percent-escape', path: '/introspect', headers: { 'content-type': FORM, authorization: `Basic ${Buffer.from('rs%zz:x').toString('base64')}` }, body: form({ token: live.access_token }), status: 401, error: 'invalid_client', also: BASIC_CHALLENGE },
    { name: 'Basic with no credentials, beside a public client_id', path: '/revoke', headers: { 'content-type': FORM, authorization: 'Basic' }, body: form({ token: live.access_token, client_id: 'cli' }), status: 401, error: 'invalid_client', also: BASIC_CHALLENGE },
    { name: 'Basic with two credentials', path: '/token', headers: { 'content-type': FORM, authorization: `Basic ${basic('conf', FIXTURE.confSecret).slice(6)} ${basic('conf', FIXTURE.confSecret).slice(6)}` }, body: form({ grant_type: 'client_credentials' }), status: 401, error: 'invalid_client', also: BASIC_CHALLENGE },
    { name: 'Basic and client_secret both', path: '/token', headers: { 'content-type': FORM, authorization: basic('conf', FIXTURE.confSecret) }, body: form({ grant_type: 'client_credentials', client_secret: FIXTURE.confSecret }), status: 400, error: 'invalid_request' },
    // Methods and paths (RFC 9110 §15.5.5–15.5.6).
    { name: 'GET on the token endpoint', path: '/token', method: 'GET', status: 405, error: 'invalid_request', also: { allow: 'POST' } },
    { name: 'PUT on the device authorization endpoint', path: '/device_authorization', method: 'PUT', headers: { 'content-type': FORM }, body: form({ client_id: 'cli' }), status: 405, error: 'invalid_request', also: { allow: 'POST' } },
    { name: 'DELETE on the revocation endpoint', path: '/revoke', method: 'DELETE', status: 405, error: 'invalid_request', also: { allow: 'POST' } },
    { name: 'GET on the introspection endpoint', path: '/introspect', method: 'GET', status: 405, error: 'invalid_request', also: { allow: 'POST' } },
    { name: 'POST to the metadata document', path: '/.well-known/oauth-authorization-server', method: 'POST', headers: { 'content-type': FORM }, body: '', status: 405, error: 'invalid_request', also: { allow: /GET/ } },
    { name: 'an unknown path', path: '/oauth/token', headers: { 'content-type': FORM }, body: form(poll), status: 404, error: 'invalid_request' },
    { name: 'a path traversal attempt', path: '/device/../../etc/passwd', method: 'GET', status: 404, error: 'invalid_request' },
  ]
}

describe('bad input at the OAuth endpoints gets a 4xx OAuth error and changes nothing (RFC 6749 §5.2)', () => {
  it('answers every malformed request with the exact status, error and no-store, never 5xx', async () => {
    for (const row of rows()) {
      const res = await fetch(t.url + row.path, { method: row.method ?? 'POST', headers: row.headers, body: row.body as never, redirect: 'manual' })
      const text = await res.text()
      expect(res.status, `${row.name}: ${text.slice(0, 200)}`).toBe(row.status)
      expect(res.headers.get('content-type'), row.name).toMatch(/^application\/json/)
      expect(res.headers.get('cache-control'), row.name).toBe('no-store')
      const body = JSON.parse(text) as Record<string, unknown>
      expect(body.error, row.name).toBe(row.error)
      expect(typeof (body.error_description ?? ''), row.name).toBe('string')
      for (const secret of ['access_token', 'refresh_token', 'device_code']) expect(body[secret], row.name).toBeUndefined()
      for (const [name, want] of Object.entries(row.also ?? {})) {
        if (want instanceof RegExp) expect(res.headers.get(name), `${row.name}: ${name}`).toMatch(want)
        else expect(res.headers.get(name), `${row.name}: ${name}`).toBe(want)
      }
    }
  })

  it('leaves stored grants and tokens as they were', async () => {
    // The pending code was never polled by any of the rejected requests: no slow_down now.
    const poll = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: pending.device_code, client_id: 'cli' })
    expect(poll.status).toBe(400)
    expect(poll.json.error).toBe('authorization_pending')
    // The pending code can still be approved and redeemed.
    await approveAs(t.url, pending.user_code)
    t.clock.advance(6)
    expect((await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: pending.device_code, client_id: 'cli' })).status).toBe(200)
    // The access token is active, the refresh token was neither revoked nor rotated.
    const introspection = await postForm(`${t.url}/introspect`, { token: live.access_token }, { authorization: basic('rs', FIXTURE.rsSecret) })
    expect(introspection.json).toMatchObject({ active: true, client_id: 'cli' })
    const refreshed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: live.refresh_token, client_id: 'cli' })
    expect(refreshed.status).toBe(200)
  })
})
