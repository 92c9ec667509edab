import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PageSession } from './support/server.js'
import { ConsoleClient, CONSOLE_PASSWORD, startConsoleServer, type ConsoleTestServer } from './support/console.js'

let t: ConsoleTestServer
beforeAll(async () => {
  t = await startConsoleServer()
})
afterAll(async () => {
  await t?.close()
})

async function auditOf(type: string) {
  await t.server.governance.audit?.flush()
  return (await t.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === type)
}

describe('console sign-in (local admin with password + TOTP)', () => {
  it('sends a signed-out visitor to the sign-in page, keeping where they were going', async () => {
    const c = new ConsoleClient(t.url, t.issuer)
    const res = await c.get('/console/grants')
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in?next=%2Fconsole%2Fgrants')
  })

  it('serves pages with a CSP without scripts, frame-ancestors none, DENY framing and no-store', async () => {
    const res = await new ConsoleClient(t.url, t.issuer).get('/console/sign-in')
    expect(res.status).toBe(200)
    const csp = res.headers.get('content-security-policy')!
    expect(csp).toContain("frame-ancestors 'none'")
    expect(csp).toContain("default-src 'none'")
    expect(csp).not.toContain('script-src')
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.body).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/)
  })

  it('signs a role holder in only with password and a current TOTP code, with a rotated Path=/console cookie', async () => {
    const c = new ConsoleClient(t.url, t.issuer)
    await c.get('/console/sign-in')
    const before = c.cookie
    const noCode = await c.post('/console/sign-in', { username: 'otto', password: CONSOLE_PASSWORD, totp: '' })
    expect(noCode.status).toBe(401)
    expect(noCode.headers.get('www-authenticate')).toContain('Form')
    const wrong = await c.post('/console/sign-in', { username: 'otto', password: 'wrong', totp: await t.freshTotp() })
    expect(wrong.status).toBe(401)
    const ok = await c.post('/console/sign-in', { username: 'otto', password: CONSOLE_PASSWORD, totp: await t.freshTotp() })
    expect(ok.status).toBe(303)
    expect(ok.headers.get('location')).toBe('/console')
    const setCookie = ok.headers.getSetCookie().find((s) => s.startsWith('dg_console='))!
    expect(setCookie).toMatch(/Path=\/console/)
    expect(setCookie).toMatch(/HttpOnly/)
    expect(setCookie).toMatch(/Secure/)
    expect(setCookie).toMatch(/SameSite=Lax/)
    expect(c.cookie).not.toBe(before)
    const home = await c.get('/console')
    expect(home.status).toBe(200)
    expect(home.body).toContain('Signed in as <strong>Otto Operator</strong> (operator)')
    const signedIn = (await auditOf('session.signed_in')).filter((e) => e.actor === 'otto')
    expect(JSON.parse(signedIn.at(-1)!.details)).toMatchObject({ surface: 'console', mfa: true, role: 'operator' })
    const failed = await auditOf('session.sign_in_failed')
    expect(failed.map((e) => JSON.parse(e.details).reason)).toEqual(expect.arrayContaining(['totp', 'password']))
  })

  it('refuses a role holder who has no second factor enrolled (403)', async () => {
    const c = new ConsoleClient(t.url, t.issuer)
    await c.get('/console/sign-in')
    const res = await c.post('/console/sign-in', { username: 'nora', password: CONSOLE_PASSWORD, totp: '' })
    expect(res.status).toBe(403)
    expect(res.body).toContain('needs a second factor')
  })

  it('lets an approver without a role in with a password, to My devices only', async () => {
    const c = await t.signIn('alice')
    const mine = await c.get('/console/my-devices')
    expect(mine.status).toBe(200)
    const home = await c.get('/console')
    expect(home.status).toBe(303)
    expect(home.headers.get('location')).toBe('/console/my-devices')
    expect((await c.get('/console/grants')).status).toBe(303)
  })

  it('never redirects after sign-in outside the console', async () => {
    const c = new ConsoleClient(t.url, t.issuer)
    await c.get('/console/sign-in?next=https://evil.example/')
    const res = await c.post('/console/sign-in', { username: 'vera', password: CONSOLE_PASSWORD, totp: await t.freshTotp(), next: '//evil.example/' })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console')
  })

  it('ends the session after session_ttl_seconds', async () => {
    const c = await t.signIn('vera')
    expect((await c.get('/console')).status).toBe(200)
    t.clock.advance(1801)
    const res = await c.get('/console')
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toContain('/console/sign-in')
  })

  it('does not accept a verification-page session cookie as a console session', async () => {
    const p = new PageSession(t.url)
    await p.signIn('otto', CONSOLE_PASSWORD)
    const value = p.cookie.split('=')[1]!
    const res = await fetch(`${t.url}/console`, { headers: { cookie: `dg_console=${value}` }, redirect: 'manual' })
    expect(res.status).toBe(303)
  })

  it('signs out: the cookie no longer works and session.signed_out is audited', async () => {
    const c = await t.signIn('vera')
    const cookie = c.cookie
    const res = await c.post('/console/sign-out', {})
    expect(res.status).toBe(303)
    const again = await fetch(`${t.url}/console`, { headers: { cookie }, redirect: 'manual' })
    expect(again.status).toBe(303)
    expect((await auditOf('session.signed_out')).some((e) => e.actor === 'vera')).toBe(true)
  })
})

describe('NIST SP 800-63B-4 §2.2.3 console reauthentication: inactivity timeout and absolute lifetime', () => {
  const IDLE = 1800
  const LIFETIME = 4 * 3600
  let s: ConsoleTestServer
  beforeAll(async () => {
    s = await startConsoleServer(undefined, undefined, undefined, { session_ttl_seconds: LIFETIME, idle_timeout_seconds: IDLE })
  })
  afterAll(async () => {
    await s?.close()
  })
  const expiredOf = async (username: string) => {
    await s.server.governance.audit?.flush()
    return (await s.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === 'session.expired' && e.subject === username)
  }

  it('keeps an active session past the inactivity timeout: each request moves the deadline', async () => {
    const c = await s.signIn('vera')
    for (let i = 0; i < 3; i++) {
      s.clock.advance(IDLE - 60)
      expect((await c.get('/console')).status).toBe(200)
    }
  })

  it('ends a session after 30 minutes without a request: GET goes to sign-in, POST is 401, the end is audited once', async () => {
    const c = await s.signIn('otto')
    expect((await c.get('/console')).status).toBe(200)
    s.clock.advance(IDLE)
    const res = await c.get('/console/grants')
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in?next=%2Fconsole%2Fgrants')
    const revoke = await c.post('/console/revoke', { kind: 'user', username: 'alice' })
    expect(revoke.status).toBe(401)
    expect(revoke.headers.get('www-authenticate')).toBe('Form realm="devicegate-console"')
    const ended = await expiredOf('otto')
    expect(ended).toHaveLength(1)
    expect(ended[0]!.actor).toBe('system')
    expect(JSON.parse(ended[0]!.details)).toMatchObject({ surface: 'console', reason: 'idle_timeout' })
    // Signing in again works, with a new session.
    await c.signIn('otto', await s.freshTotp())
    expect((await c.get('/console')).status).toBe(200)
  })

  it('ends even an active session at its absolute lifetime, audited as lifetime_ended', async () => {
    const c = await s.signIn('ada')
    let elapsed = 0
    while (elapsed + IDLE / 2 < LIFETIME) {
      s.clock.advance(IDLE / 2)
      elapsed += IDLE / 2
      expect((await c.get('/console')).status, `after ${elapsed} s`).toBe(200)
    }
    s.clock.advance(LIFETIME - elapsed)
    const res = await c.get('/console')
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toMatch(/^\/console\/sign-in/)
    const ended = await expiredOf('ada')
    expect(ended.map((e) => JSON.parse(e.details).reason)).toEqual(['lifetime_ended'])
  })
})

describe('console roles are checked on the server for every action', () => {
  it('answers a viewer’s hand-made revoke POST with 403, revokes nothing and audits the refusal', async () => {
    const grantId = await t.seedGrant()
    const c = await t.signIn('vera')
    const res = await c.post(`/console/grants/${grantId}/revoke`, { reason: 'try' })
    expect(res.status).toBe(403)
    expect((await t.server.store.findGrant(grantId))!.revokedAt).toBeNull()
    const denied = (await auditOf('console.access_denied')).filter((e) => e.actor === 'vera')
    expect(JSON.parse(denied.at(-1)!.details)).toMatchObject({ needs: 'act', role: 'viewer', method: 'POST' })
  })

  it('refuses a POST without the CSRF token or from another origin (403), even from an operator', async () => {
    const grantId = await t.seedGrant()
    const c = await t.signIn('otto')
    expect((await c.post(`/console/grants/${grantId}/revoke`, { reason: 'x', csrf_token: '' })).status).toBe(403)
    expect((await c.post(`/console/grants/${grantId}/revoke`, { reason: 'x', csrf_token: 'forged' })).status).toBe(403)
    expect((await c.post(`/console/grants/${grantId}/revoke`, { reason: 'x' }, { origin: 'https://evil.example' })).status).toBe(403)
    expect((await c.post(`/console/grants/${grantId}/revoke`, { reason: 'x' }, { 'sec-fetch-site': 'cross-site' })).status).toBe(403)
    expect((await t.server.store.findGrant(grantId))!.revokedAt).toBeNull()
  })

  it('lets an operator revoke a grant with a reason, audited with the person as actor', async () => {
    const grantId = await t.seedGrant()
    const c = await t.signIn('otto')
    const noReason = await c.post(`/console/grants/${grantId}/revoke`, { reason: '' })
    expect(noReason.status).toBe(400)
    const res = await c.post(`/console/grants/${grantId}/revoke`, { reason: 'laptop stolen' })
    expect(res.status).toBe(200)
    expect(res.body).toContain('The grant is revoked.')
    expect((await t.server.store.findGrant(grantId))!.revokedAt).not.toBeNull()
    const revoked = (await auditOf('token.revoked')).filter((e) => e.grantId === grantId)
    expect(revoked[0]).toMatchObject({ actor: 'otto' })
    expect(JSON.parse(revoked[0]!.details)).toMatchObject({ reason: 'laptop stolen' })
  })

  it('answers a POST of a signed-out browser with 401 and changes nothing', async () => {
    const grantId = await t.seedGrant()
    const res = await fetch(`${t.url}/console/grants/${grantId}/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'reason=x' })
    expect(res.status).toBe(401)
    expect((await t.server.store.findGrant(grantId))!.revokedAt).toBeNull()
  })
})
