import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveAs, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: TestServer
beforeAll(async () => {
  t = await startTestServer()
})
afterAll(async () => t?.close())

async function authorize(clientId = 'cli', scope = 'read offline_access') {
  const res = await postForm(`${t.url}/device_authorization`, { client_id: clientId, scope })
  expect(res.status).toBe(200)
  return res.json as { device_code: string; user_code: string; interval: number; expires_in: number; verification_uri: string; verification_uri_complete: string }
}
const poll = (deviceCode: string, clientId = 'cli') =>
  postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId })

describe('RFC 8628 §3.2 device authorization response', () => {
  it('returns a device_code "<id>.<secret>" with at least 128 bits in the secret, a §6.1 user_code, both URIs, expires_in and interval, no-store', async () => {
    const res = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    const body = res.json
    // `<device grant id>.<secret>` (issue 17): the secret alone carries 256 bits.
    const secret = /^[0-9a-f]{12}[A-Za-z0-9_-]{14}\.([A-Za-z0-9_-]{43})$/.exec(body.device_code)?.[1]
    expect(Buffer.from(secret ?? '', 'base64url').length).toBeGreaterThanOrEqual(16)
    expect(body.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/)
    expect(body.verification_uri).toBe(`${t.url}/device`)
    expect(body.verification_uri_complete).toBe(`${t.url}/device?user_code=${body.user_code}`)
    expect(body.expires_in).toBe(600)
    expect(body.interval).toBe(5)
  })
})

describe('RFC 8628 §3.5 device access token response', () => {
  it('answers authorization_pending with 400, no-store and Pragma no-cache before approval', async () => {
    const { device_code } = await authorize()
    const res = await poll(device_code)
    expect(res.status).toBe(400)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('pragma')).toBe('no-cache')
    expect(res.json).toMatchObject({ error: 'authorization_pending' })
  })

  it('adds 5 seconds to the interval on slow_down and keeps it for later polls', async () => {
    const { device_code } = await authorize()
    expect((await poll(device_code)).json.error).toBe('authorization_pending')
    expect((await poll(device_code)).json).toEqual({ error: 'slow_down', error_description: 'poll no more than once every 10 seconds' })
    t.clock.advance(6) // the old interval (5 s) is no longer enough: it grew to 10 s
    expect((await poll(device_code)).json).toEqual({ error: 'slow_down', error_description: 'poll no more than once every 15 seconds' })
    t.clock.advance(16) // the interval is now 15 s
    expect((await poll(device_code)).json.error).toBe('authorization_pending')
    t.clock.advance(15)
    expect((await poll(device_code)).json.error).toBe('authorization_pending')
  })

  it('issues tokens once after approval and answers a later presentation with invalid_grant, revoking them', async () => {
    const { device_code, user_code } = await authorize()
    await approveAs(t.url, user_code)
    const ok = await poll(device_code)
    expect(ok.status).toBe(200)
    expect(ok.headers.get('cache-control')).toBe('no-store')
    expect(ok.headers.get('pragma')).toBe('no-cache')
    expect(ok.json).toMatchObject({ token_type: 'Bearer', scope: 'read offline_access', expires_in: 600 })
    expect(ok.json.refresh_token).toMatch(/^dgr_/)
    t.clock.advance(6)
    const replay = await poll(device_code)
    expect(replay.status).toBe(400)
    expect(replay.json.error).toBe('invalid_grant')
    const introspection = await postForm(`${t.url}/introspect`, { token: ok.json.access_token, client_id: 'rs', client_secret: 'rs-secret-0123456789abcdef' })
    expect(introspection.json).toEqual({ active: false })
  })

  it('answers an early poll of an approved code with its tokens, not slow_down (case C56: slow_down is a variant of pending)', async () => {
    const { device_code, user_code } = await authorize()
    expect((await poll(device_code)).json.error).toBe('authorization_pending')
    expect((await poll(device_code)).json.error).toBe('slow_down')
    expect((await poll(device_code)).json.error).toBe('slow_down') // the interval is now 15 s
    await approveAs(t.url, user_code)
    const early = await poll(device_code) // well within the grown interval
    expect(early.status).toBe(200)
    expect(early.json.access_token).toEqual(expect.any(String))
  })

  it('answers a repeat by the same client right after redemption with invalid_grant and revokes nothing (RFC 6749 §4.1.2 duplicate rule)', async () => {
    const { device_code, user_code } = await authorize()
    await approveAs(t.url, user_code)
    const beforeRedemption = t.clock.nowSeconds() // the family's createdAt is this second or later
    const ok = await poll(device_code)
    expect(ok.status).toBe(200)
    const again = await poll(device_code)
    expect(again.status).toBe(400)
    expect(again.headers.get('cache-control')).toBe('no-store')
    expect(again.json.error).toBe('invalid_grant')
    // Exactly one polling interval after the redemption at the latest, however long the requests
    // above took in real time (the test clock runs with the real one).
    t.clock.advance(beforeRedemption + 5 - t.clock.nowSeconds())
    expect((await poll(device_code)).json.error).toBe('invalid_grant')
    const introspection = await postForm(`${t.url}/introspect`, { token: ok.json.access_token, client_id: 'rs', client_secret: 'rs-secret-0123456789abcdef' })
    expect(introspection.json.active).toBe(true)
    const refreshed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: ok.json.refresh_token, client_id: 'cli' })
    expect(refreshed.status).toBe(200)
    await t.server.governance.audit!.flush()
    const replays = (await t.server.store.listAuditEvents({ afterSeq: 0, limit: 100_000 }))
      .filter((e) => e.type === 'device_code.replayed')
      .map((e) => JSON.parse(e.details) as { familyRevoked: boolean; duplicate: boolean })
    expect(replays).toContainEqual(expect.objectContaining({ familyRevoked: false, duplicate: true }))
  })

  it('redeems an approved device code exactly once under 50 concurrent polls', async () => {
    const { device_code, user_code } = await authorize()
    await approveAs(t.url, user_code)
    const results = await Promise.all(Array.from({ length: 50 }, () => poll(device_code)))
    expect(results.filter((r) => r.status === 200)).toHaveLength(1)
    // slow_down only throttles pending codes (RFC 8628 §3.5): the losers of the race get invalid_grant.
    for (const r of results.filter((r) => r.status !== 200)) expect(r.json.error).toBe('invalid_grant')
  })

  it('answers access_denied after the user denies', async () => {
    const { device_code, user_code } = await authorize()
    await approveAs(t.url, user_code, 'deny')
    const res = await poll(device_code)
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('access_denied')
    expect(res.json.error_description).toBe('the user denied the request')
  })

  // Reported: a code approved by a user disabled before redemption was answered "the user denied
  // the request". Still access_denied, but the description says what happened, and no more.
  it('answers access_denied with its own description when the approving user was disabled before redemption', async () => {
    const { device_code, user_code } = await authorize()
    await approveAs(t.url, user_code, 'approve', 'mallory')
    await t.server.governance.principals.change('user', 'mallory', 'disabled', 'admin:test')
    try {
      const res = await poll(device_code)
      expect(res.status).toBe(400)
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(res.json).toEqual({ error: 'access_denied', error_description: 'the approving user is no longer allowed' })
    } finally {
      await t.server.governance.principals.change('user', 'mallory', 'enabled', 'admin:test')
    }
  })

  it('answers expired_token for an approved but unredeemed code past expires_in', async () => {
    const { device_code, user_code, expires_in } = await authorize()
    await approveAs(t.url, user_code)
    t.clock.advance(expires_in)
    const res = await poll(device_code)
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('expired_token')
  })

  it('answers invalid_grant for an unknown device code and for another client\'s code', async () => {
    expect((await poll('never-issued-device-code-0123456789')).json.error).toBe('invalid_grant')
    const { device_code } = await authorize()
    const res = await poll(device_code, 'short-cli')
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('invalid_grant')
  })
})
