/**
 * RFC 9110 §15.5.2 / §11.6.1: every 401 carries a `WWW-Authenticate` challenge, the HTML
 * verification pages (RFC 8628 §3.3) included. Found by black-box testing: the sign-in form's
 * 401 answers (wrong password, "sign in first") had none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SIGN_IN_CHALLENGE } from '../src/web/verification.js'
import { PageSession, startTestServer, type TestServer } from './support/server.js'

let s: TestServer
beforeAll(async () => {
  s = await startTestServer()
})
afterAll(async () => {
  await s.close()
})

describe('RFC 9110 §15.5.2 challenges on the verification pages', () => {
  it('uses a scheme no browser answers with a credentials dialog', () => {
    expect(SIGN_IN_CHALLENGE).toMatch(/^Form realm="devicegate"/)
    expect(SIGN_IN_CHALLENGE).not.toMatch(/^(Basic|Digest|Negotiate|NTLM)\b/i)
  })

  it('answers a wrong password with 401, a challenge and no-store', async () => {
    const page = new PageSession(s.url)
    await page.get('/device')
    const res = await page.post('/device/sign-in', { username: 'alice', password: 'wrong' })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(SIGN_IN_CHALLENGE)
    expect(res.headers.get('cache-control')).toBe('no-store')
  })

  it('answers Approve while signed out with 401 and a challenge', async () => {
    const page = new PageSession(s.url)
    await page.get('/device')
    const res = await page.post('/device', { user_code: 'BCDF-GHJK', decision: 'approve' })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(SIGN_IN_CHALLENGE)
  })

  it('answers the second-factor pages while signed out with 401 and a challenge', async () => {
    const page = new PageSession(s.url)
    await page.get('/device')
    const mfa = await page.post('/device/mfa', { totp: '123456' })
    expect(mfa.status).toBe(401)
    expect(mfa.headers.get('www-authenticate')).toBe(SIGN_IN_CHALLENGE)
    const enroll = await page.get('/device/mfa/enroll')
    expect(enroll.status).toBe(401)
    expect(enroll.headers.get('www-authenticate')).toBe(SIGN_IN_CHALLENGE)
  })

  it('sends no challenge on pages that are not 401', async () => {
    const page = new PageSession(s.url)
    const res = await page.get('/device')
    expect(res.status).toBe(200)
    expect(res.headers.get('www-authenticate')).toBeNull()
  })
})
