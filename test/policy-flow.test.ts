/**
 * Conditional approval end to end over HTTP: approval-time decisions, MFA step-up that a
 * hand-made POST cannot skip, explained decisions stored with the grant, typed confirmation for
 * high-risk apps, kiosk links refused, and enforcement at the token endpoint — constraints on the
 * token and on introspection, a policy changed to deny before redemption, re-evaluation at refresh.
 */
import { decodeJwt } from 'jose'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Approver, NET, PASSWORD, startDeviceFlow, startPolicyServer, TEST_POLICY_YAML, type PolicyTestServer } from './support/policy-fixture.js'
import { basic, postForm } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: PolicyTestServer

beforeEach(async () => {
  t = await startPolicyServer()
})
afterEach(async () => {
  await t.close()
})

async function poll(clientId: string, deviceCode: string) {
  t.clock.advance(10)
  return postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId })
}

async function introspect(token: string) {
  return (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', 'rs-secret-0123456789abcdef') })).json
}

async function approve(clientId: string, scope: string, who = 'alice', approverIp: string = NET.homePhone, requestIp: string = NET.home) {
  const flow = await startDeviceFlow(t.url, clientId, scope, requestIp)
  expect(flow.status).toBe(200)
  const page = new Approver(t.url, approverIp)
  await page.signIn(who)
  const review = await page.review(flow.json.user_code)
  const result = await page.post('/device', { user_code: flow.json.user_code, decision: 'approve' })
  return { flow, page, review, result }
}

describe('issued tokens obey the approval constraints (token and introspection)', () => {
  it('caps the access-token TTL, narrows scopes and bounds the session', async () => {
    const { flow, result } = await approve('cli', 'read write offline_access')
    expect(result.status).toBe(200)
    const res = await poll('cli', flow.json.device_code)
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ token_type: 'Bearer', expires_in: 120, scope: 'read offline_access' })
    const claims = decodeJwt(res.json.access_token)
    expect(claims.exp! - claims.iat!).toBe(120)
    expect(claims.scope).toBe('read offline_access')
    const info = await introspect(res.json.access_token)
    expect(info).toMatchObject({ active: true, scope: 'read offline_access', exp: claims.exp })
    // The refresh token lives no longer than the session cap (max_session_seconds: 1800).
    const rt = await introspect(res.json.refresh_token)
    expect(rt.active).toBe(true)
    expect(rt.exp - claims.iat!).toBeLessThanOrEqual(1800)
    // A refresh is decided again and shaped the same way.
    const refreshed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: res.json.refresh_token, client_id: 'cli' })
    expect(refreshed.status).toBe(200)
    expect(refreshed.json).toMatchObject({ expires_in: 120, scope: 'read offline_access' })
  })

  it('states the full capped lifetime (expires_in 120, exp - iat 120) even when the clock crosses a second during the request', async () => {
    const { flow } = await approve('cli', 'read offline_access')
    t.clock.advance(10)
    // Every reading of the clock from here on is a second later than the one before: the policy's
    // cap and the token's `iat` must come from one reading of the request's time.
    const read = t.clock.nowSeconds.bind(t.clock)
    t.clock.nowSeconds = () => {
      const now = read()
      t.clock.advance(1)
      return now
    }
    const redeemed = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: flow.json.device_code, client_id: 'cli' })
    const refreshed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: redeemed.json.refresh_token, client_id: 'cli' })
    for (const [grant, res] of [['device_code', redeemed], ['refresh_token', refreshed]] as const) {
      expect(res.status, grant).toBe(200)
      expect(res.json.expires_in, grant).toBe(120)
      const claims = decodeJwt(res.json.access_token)
      expect(claims.exp! - claims.iat!, grant).toBe(120)
    }
  })

  it('issues no refresh token under the shared_device profile and revokes the older session', async () => {
    const first = await approve('shared-cli', 'read offline_access')
    const a = await poll('shared-cli', first.flow.json.device_code)
    expect(a.status).toBe(200)
    expect(a.json.refresh_token).toBeUndefined()
    expect(a.json.expires_in).toBeLessThanOrEqual(900)
    const second = await approve('shared-cli', 'read offline_access')
    const b = await poll('shared-cli', second.flow.json.device_code)
    expect(b.status).toBe(200)
    expect((await introspect(a.json.access_token)).active).toBe(false)
    expect((await introspect(b.json.access_token)).active).toBe(true)
  })

  it('refuses redemption without DPoP when the approval requires DPoP-bound tokens', async () => {
    const { flow } = await approve('dpop-cli', 'read')
    const res = await poll('dpop-cli', flow.json.device_code)
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('invalid_dpop_proof')
  })
})

describe('policy re-evaluated at redemption and refresh', () => {
  it('stops issuance when the policy changed to deny before redemption', async () => {
    const { flow, result } = await approve('cli', 'read')
    expect(result.status).toBe(200)
    await t.setPolicy(`${TEST_POLICY_YAML}\nblock_device_flow: { users: [alice] }\n`)
    const res = await poll('cli', flow.json.device_code)
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('access_denied')
  })

  it('refuses the next refresh when the user is blocked, and revokes the family', async () => {
    const { flow } = await approve('cli', 'read offline_access')
    const res = await poll('cli', flow.json.device_code)
    expect(res.status).toBe(200)
    await t.setPolicy(TEST_POLICY_YAML.replace('when: { user_risk: { min: 70 } }', 'when: { users: [alice] }'))
    const refreshed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: res.json.refresh_token, client_id: 'cli' })
    expect(refreshed.status).toBe(400)
    expect(refreshed.json.error).toBe('invalid_grant')
    expect((await introspect(res.json.access_token)).active).toBe(false)
  })

  it('refuses a refresh naming a scope the narrowed policy no longer allows with invalid_scope, and states the narrowed scope when none is named (issue 16 item 13)', async () => {
    await t.setPolicy(TEST_POLICY_YAML.replace('scopes: [read, offline_access]', 'scopes: [read, write, offline_access]'))
    const { flow } = await approve('cli', 'read write offline_access')
    const issued = await poll('cli', flow.json.device_code)
    expect(issued.status).toBe(200)
    expect(issued.json.scope).toBe('read write offline_access')
    await t.setPolicy(TEST_POLICY_YAML) // tight-cli now allows read and offline_access only
    const refresh = (form: Record<string, string>) =>
      postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: issued.json.refresh_token, client_id: 'cli', ...form })
    const tooMuch = await refresh({ scope: 'read write' })
    expect(tooMuch.status).toBe(400)
    expect(tooMuch.headers.get('cache-control')).toBe('no-store')
    expect(tooMuch.json.error).toBe('invalid_scope')
    // Nothing was rotated: the same refresh token still works, and the answer says what it got.
    const narrowed = await refresh({})
    expect(narrowed.status).toBe(200)
    expect(narrowed.json.scope).toBe('read offline_access')
    expect(decodeJwt(narrowed.json.access_token).scope).toBe('read offline_access')
  })

  it('does not evaluate policy on polls before approval (pending stays pending)', async () => {
    const flow = await startDeviceFlow(t.url, 'cli', 'read', NET.home)
    const res = await poll('cli', flow.json.device_code)
    expect(res.json.error).toBe('authorization_pending')
  })
})

describe('approval-time decisions on the pages', () => {
  it('denies a high-risk user with the reason shown, records the denial and its explanation', async () => {
    const { flow, review, result } = await approve('cli', 'read', 'carol')
    expect(review.body).toContain('id="policy_denied"')
    expect(review.body).toContain('Your account is under review by the security team.')
    expect(review.body).toContain('user_risk_too_high')
    expect(review.body).not.toContain('value="approve"')
    // A hand-made approve POST is refused on the server.
    expect(result.status).toBe(403)
    expect(result.body).toContain('user_risk_too_high')
    expect((await poll('cli', flow.json.device_code)).json.error).toBe('access_denied')
    const grant = await t.server.store.findDeviceGrantByUserCode(flow.json.user_code.replace('-', ''))
    const record = await t.server.store.findDeviceGrantPolicy(grant!.id)
    expect(record?.decision).toBe('deny')
    const explained = JSON.parse(record!.explanationJson!)
    expect(explained.reasons).toEqual([
      { code: 'allowed_by_rule', rule: 'tight-cli', effect: 'allow' },
      { code: 'user_risk_too_high', rule: 'risky-users', effect: 'deny', message: 'Your account is under review by the security team.' },
    ])
    expect(explained.facts.request).toEqual({ ip: NET.home, country: 'DE', asn: 3320, asOrg: 'Deutsche Telekom' })
    expect(explained.facts.approver).toEqual({ ip: NET.homePhone, country: 'DE', asn: 3320, asOrg: 'Deutsche Telekom' })
  })

  it('denies a high-tier app approved from another country (baseline proximity)', async () => {
    const { review, result } = await approve('deploy-cli', 'deploy', 'alice', NET.abroad)
    expect(review.body).toContain('id="location_warning"')
    expect(review.body).toContain('proximity_mismatch')
    expect(result.status).toBe(403)
  })

  it('warns but allows a standard app approved from another country', async () => {
    const { review, result } = await approve('cli', 'read', 'alice', NET.abroad)
    expect(review.body).toContain('id="location_warning"')
    expect(review.body).toContain('203.0.113.9 · US · AS7922 Comcast')
    expect(review.body).toContain('198.51.100.10 · DE · AS3320 Deutsche Telekom')
    expect(result.status).toBe(200)
  })

  it('makes a high-risk approval type the last characters of the code', async () => {
    const flow = await startDeviceFlow(t.url, 'deploy-cli', 'deploy', NET.home)
    const page = new Approver(t.url, NET.homePhone)
    await page.signIn('alice')
    const review = await page.review(flow.json.user_code)
    const code: string = flow.json.user_code
    expect(review.body).toContain('<label for="confirm_code">Type the last 4 characters')
    expect(review.body).not.toContain(code)
    expect(review.body).toContain(`${code.slice(0, 5)}••••`)
    const wrong = await page.post('/device', { user_code: code, decision: 'approve', confirm_code: 'BBBB' === code.slice(-4) ? 'CCCC' : 'BBBB' })
    expect(wrong.status).toBe(400)
    expect(wrong.body).toContain('do not match')
    const right = await page.post('/device', { user_code: code, decision: 'approve', confirm_code: code.slice(-4).toLowerCase() })
    expect(right.status).toBe(200)
    expect((await poll('deploy-cli', flow.json.device_code)).status).toBe(200)
  })

  it('step_up: approve without MFA is refused server-side; TOTP completes it', async () => {
    const flow = await startDeviceFlow(t.url, 'admin-cli', 'admin', NET.home)
    const page = new Approver(t.url, NET.homePhone)
    await page.signIn('alice')
    const review = await page.review(flow.json.user_code)
    expect(review.body).toContain('action="/device/mfa"')
    expect(review.body).toContain('<label for="totp">')
    expect(review.body).not.toContain('value="approve"')
    const forged = await page.post('/device', { user_code: flow.json.user_code, decision: 'approve', confirm_code: flow.json.user_code.slice(-4) })
    expect(forged.status).toBe(403)
    expect((await poll('admin-cli', flow.json.device_code)).json.error).toBe('authorization_pending')
    const bad = await page.post('/device/mfa', { user_code: flow.json.user_code, totp: '000000' })
    expect(bad.status).toBe(400)
    const ok = await page.post('/device/mfa', { user_code: flow.json.user_code, totp: await t.totp() })
    expect(ok.status).toBe(200)
    expect(ok.body).toContain('value="approve"')
    // The same code cannot be used twice.
    const replay = await page.post('/device/mfa', { user_code: flow.json.user_code, totp: await t.totp() })
    expect(replay.status).toBe(400)
    const approved = await page.post('/device', { user_code: flow.json.user_code, decision: 'approve', confirm_code: flow.json.user_code.slice(-4) })
    expect(approved.status).toBe(200)
    expect((await poll('admin-cli', flow.json.device_code)).status).toBe(200)
    const grant = await t.server.store.findDeviceGrantByUserCode(flow.json.user_code.replace('-', ''))
    const explained = JSON.parse((await t.server.store.findDeviceGrantPolicy(grant!.id))!.explanationJson!)
    expect(explained.reasons.map((r: { code: string }) => r.code)).toEqual(['mfa_completed'])
  })

  it('never offers enrolment to a password-only session', async () => {
    const flow = await startDeviceFlow(t.url, 'admin-cli', 'admin', NET.home)
    const page = new Approver(t.url, NET.homePhone)
    await page.signIn('bob')
    await page.review(flow.json.user_code)
    const res = await page.post('/device/mfa', { user_code: flow.json.user_code, totp: '123456' })
    expect(res.status).toBe(403)
    expect(res.body).toContain('Second factor not set up')
    expect(res.body).not.toContain('/device/mfa/enroll')
    const enrol = await page.get('/device/mfa/enroll')
    expect(enrol.status).toBe(403)
    expect(enrol.body).not.toContain('name="secret"')
  })

  it('offers re-enrolment after MFA in this sign-in', async () => {
    const page = new Approver(t.url, NET.homePhone)
    await page.signIn('alice')
    const res = await page.post('/device/mfa', { totp: await t.totp(), next: 'enroll' })
    expect(res.status).toBe(303)
    const enrol = await page.get('/device/mfa/enroll')
    expect(enrol.status).toBe(200)
    expect(enrol.body).toContain('otpauth://totp/')
  })
})

describe('device authorization under policy', () => {
  it('require_bound_device_code: an unbound device authorization is refused with invalid_request; dpop_jkt binds (issue 16 item 4)', async () => {
    await t.setPolicy(TEST_POLICY_YAML.replace('clients:\n', 'clients:\n  cli: { require_bound_device_code: true }\n'))
    try {
      const unbound = await startDeviceFlow(t.url, 'cli', 'read', NET.home)
      expect(unbound.status).toBe(400)
      expect(unbound.json.error).toBe('invalid_request')
      const bound = await startDeviceFlow(t.url, 'cli', 'read', NET.home, { dpop_jkt: 'A'.repeat(43) })
      expect(bound.status).toBe(200)
    } finally {
      await t.setPolicy(TEST_POLICY_YAML)
    }
    expect((await startDeviceFlow(t.url, 'cli', 'read', NET.home)).status).toBe(200)
  })

  it('kiosk: no verification_uri_complete, short expiry, links refused, typing works', async () => {
    const flow = await startDeviceFlow(t.url, 'kiosk-cli', 'read', NET.home)
    expect(flow.json.verification_uri_complete).toBeUndefined()
    expect(flow.json.expires_in).toBe(180)
    const page = new Approver(t.url, NET.homePhone)
    await page.signIn('alice')
    const viaLink = await page.get(`/device?user_code=${flow.json.user_code}`)
    expect(viaLink.status).toBe(400)
    expect(viaLink.body).toContain('type the code shown on your device yourself')
    expect(viaLink.body).not.toContain('value="approve"')
    const typed = await page.review(flow.json.user_code)
    expect(typed.body).toContain('value="approve"')
  })

  it('kiosk: a code typed before signing in reaches the review page after sign-in', async () => {
    const flow = await startDeviceFlow(t.url, 'kiosk-cli', 'read', NET.home)
    const page = new Approver(t.url, NET.homePhone)
    await page.get('/device')
    const signInPage = await page.review(flow.json.user_code)
    expect(signInPage.status).toBe(200)
    expect(signInPage.body).toContain('action="/device/sign-in"')
    const signedIn = await page.post('/device/sign-in', { username: 'alice', password: PASSWORD, user_code: flow.json.user_code })
    expect(signedIn.status).toBe(303)
    const review = await page.get(signedIn.headers.get('location')!)
    expect(review.status).toBe(200)
    expect(review.body).toContain('value="approve"')
  })

  // RFC 8628 §5.1: the sign-in redirect must not tell an unknown code from a kiosk client's code
  // (it used to carry `typed=` only for codes whose client requires typing, found by a lookup
  // outside the code-entry limiter).
  it('sign-in with a code redirects alike whether the code exists or not (no existence oracle)', async () => {
    const flow = await startDeviceFlow(t.url, 'kiosk-cli', 'read', NET.home)
    const shapeOf = async (userCode: string) => {
      const page = new Approver(t.url, NET.homePhone)
      await page.get('/device')
      const res = await page.post('/device/sign-in', { username: 'alice', password: PASSWORD, user_code: userCode })
      expect(res.status).toBe(303)
      return res.headers.get('location')!.replace(/user_code=[^&]*/, 'user_code=C').replace(/typed=[0-9a-f]+/, 'typed=P')
    }
    const unknown = flow.json.user_code === 'BCDF-GHJK' ? 'BCDF-GHJL' : 'BCDF-GHJK'
    const existing = await shapeOf(flow.json.user_code)
    expect(existing).toBe('/device?user_code=C&typed=P')
    expect(await shapeOf(unknown)).toBe(existing)
  })

  it('blocks the device flow for a client', async () => {
    await t.setPolicy(`${TEST_POLICY_YAML}\nblock_device_flow: { clients: [cli] }\n`)
    const flow = await startDeviceFlow(t.url, 'cli', 'read', NET.home)
    expect(flow.status).toBe(400)
    expect(flow.json.error).toBe('unauthorized_client')
  })
})
