import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import cookie from '@fastify/cookie'
import formbody from '@fastify/formbody'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Client, User } from '../src/core/model.js'
import { formatUserCode, generateUserCode } from '../src/core/user-code.js'
import '../src/http/request-context.js'
import { createSqliteStore } from '../src/storage/sqlite.js'
import type { DeviceGrantRecord, Store } from '../src/storage/store.js'
import { sha256Hex, systemRandom } from '../src/system.js'
import { PAGE_CSS, STYLE_HASH_SOURCE, VERIFICATION_PAGE_CSP } from '../src/web/templates/layout.js'
import { createUserDirectory, hashPassword } from '../src/web/user-directory.js'
import { registerVerificationPages, SESSION_COOKIE, SIGN_IN_MAX_FAILURES_PER_IP } from '../src/web/verification.js'
import { createHash } from 'node:crypto'

const T0 = 1_750_000_000
const WINDOW = 600
const MAX_FAILURES = 5

const CLIENT: Client = {
  id: 'cli',
  name: 'Acme <CLI> & "Tools"',
  isConfidential: false,
  authMethods: ['none'],
  grantTypes: ['urn:ietf:params:oauth:grant-type:device_code'],
  scopes: ['projects:read', 'offline_access'],
  defaultScopes: ['projects:read'],
  accessTokenFormat: 'jwt',
  accessTokenTtlSeconds: 600,
  refreshTokenTtlSeconds: 86_400,
  deviceCodeTtlSeconds: 600,
  pollIntervalSeconds: 5,
  canIntrospect: false,
  disabled: false,
}

const APPROVE_BUTTON = '<button name="decision" value="approve">Approve</button>'
const DENY_BUTTON = '<button name="decision" value="deny">Deny</button>'

let users: User[]
let tmp: string

beforeAll(async () => {
  users = [
    {
      username: 'demo',
      displayName: 'Demo',
      passwordHash: await hashPassword('demo-pass'),
      disabled: false,
    },
    {
      username: 'mallory',
      displayName: 'Mallory',
      passwordHash: await hashPassword('mallory-pass'),
      disabled: false,
    },
  ]
  tmp = await mkdtemp(join(tmpdir(), 'devicegate-web-'))
})

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true })
})

interface Harness {
  app: FastifyInstance
  store: Store
  clock: { now: number; nowSeconds(): number }
  logs: string[]
}

let h: Harness
let dbCounter = 0

beforeEach(async () => {
  const store = await createSqliteStore(join(tmp, `web-${dbCounter++}.sqlite`))
  await store.migrate()
  const clock = { now: T0, nowSeconds: () => clock.now }
  const logs: string[] = []
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString())
        done()
      },
    }),
  )
  const app = Fastify()
  await app.register(cookie)
  await app.register(formbody)
  app.decorateRequest('clientIp', '')
  app.addHook('onRequest', async (request) => {
    request.clientIp = request.ip
  })
  await registerVerificationPages(app, {
    store,
    clock,
    random: systemRandom,
    clients: { get: (id) => (id === CLIENT.id ? CLIENT : undefined) },
    users: createUserDirectory(users),
    scopeDescriptions: { 'projects:read': 'Read your projects' },
    issuerOrigin: 'http://localhost',
    codeEntryMaxFailures: MAX_FAILURES,
    codeEntryWindowSeconds: WINDOW,
    sessionTtlSeconds: 3600,
    logger,
  })
  await app.ready()
  h = { app, store, clock, logs }
})

afterEach(async () => {
  await h.app.close()
  await h.store.close()
})

// --- helpers ------------------------------------------------------------------------------------

async function createGrant(overrides: Partial<DeviceGrantRecord> = {}): Promise<DeviceGrantRecord> {
  const grant: DeviceGrantRecord = {
    id: `g-${Math.random().toString(36).slice(2)}`,
    deviceCodeHash: sha256Hex(`dc-${Math.random()}`),
    userCode: generateUserCode(systemRandom),
    clientId: CLIENT.id,
    scope: 'projects:read offline_access',
    status: 'pending',
    createdAt: h.clock.now - 120,
    expiresAt: h.clock.now + 480,
    intervalSeconds: 5,
    lastPolledAt: null,
    subject: null,
    decidedAt: null,
    requestIp: '203.0.113.7',
    requestUserAgent: 'acme-cli/1.2 (linux)',
    dpopJkt: null,
    grantId: null,
    ...overrides,
  }
  await h.store.createDeviceGrant(grant)
  return grant
}

/** A code of the right shape that was never issued (differs from `avoid` in its first char). */
function unissuedCode(avoid: string): string {
  let code = generateUserCode(systemRandom)
  while (code === avoid) code = generateUserCode(systemRandom)
  return code
}

function changeOneChar(code: string): string {
  const i = 3
  const replacement = code[i] === 'B' ? 'C' : 'B'
  return code.slice(0, i) + replacement + code.slice(i + 1)
}

function sessionCookieOf(res: LightMyRequestResponse): string | undefined {
  return res.cookies.find((c) => c.name === SESSION_COOKIE)?.value
}

function csrfOf(body: string): string {
  const match = /name="csrf_token" value="([^"]+)"/.exec(body)
  if (match?.[1] === undefined) throw new Error('no csrf_token in page')
  return match[1]
}

interface Browser {
  cookie: string
  csrf: string
}

async function openAnonymous(remoteAddress = '127.0.0.1'): Promise<Browser> {
  const res = await h.app.inject({ method: 'GET', url: '/device', remoteAddress })
  const value = sessionCookieOf(res)
  if (value === undefined) throw new Error('no session cookie')
  return { cookie: `${SESSION_COOKIE}=${value}`, csrf: csrfOf(res.body) }
}

async function signIn(
  username: string,
  password: string,
  remoteAddress = '127.0.0.1',
): Promise<Browser> {
  const anon = await openAnonymous(remoteAddress)
  const res = await postForm('/device/sign-in', anon, { username, password }, {}, remoteAddress)
  expect(res.statusCode).toBe(303)
  const value = sessionCookieOf(res)
  if (value === undefined) throw new Error('no rotated session cookie')
  const cookieHeader = `${SESSION_COOKIE}=${value}`
  const page = await h.app.inject({
    method: 'GET',
    url: '/device',
    headers: { cookie: cookieHeader },
    remoteAddress,
  })
  return { cookie: cookieHeader, csrf: csrfOf(page.body) }
}

async function postForm(
  url: string,
  browser: Partial<Browser>,
  form: Record<string, string>,
  headers: Record<string, string> = {},
  remoteAddress = '127.0.0.1',
): Promise<LightMyRequestResponse> {
  const fields = { ...form }
  if (browser.csrf !== undefined && !('csrf_token' in fields)) fields.csrf_token = browser.csrf
  return h.app.inject({
    method: 'POST',
    url,
    remoteAddress,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(browser.cookie === undefined ? {} : { cookie: browser.cookie }),
      ...headers,
    },
    payload: new URLSearchParams(fields).toString(),
  })
}

function enterCode(browser: Browser, userCode: string, remoteAddress?: string) {
  return postForm('/device', browser, { user_code: userCode }, {}, remoteAddress)
}

function decide(
  browser: Browser,
  userCode: string,
  decision: 'approve' | 'deny',
  headers: Record<string, string> = {},
) {
  return postForm('/device', browser, { user_code: userCode, decision }, headers)
}

async function statusOf(grant: DeviceGrantRecord) {
  const stored = await h.store.findDeviceGrantByUserCode(grant.userCode)
  return { status: stored?.status, subject: stored?.subject }
}

function expectReviewPage(res: LightMyRequestResponse, grant: DeviceGrantRecord) {
  expect(res.statusCode).toBe(200)
  expect(res.headers['content-type']).toContain('text/html')
  expect(res.body).toContain('Acme &lt;CLI&gt; &amp; &quot;Tools&quot;')
  expect(res.body).toContain('Read your projects')
  expect(res.body).toContain('offline_access')
  expect(res.body).toContain(formatUserCode(grant.userCode))
  expect(res.body).toContain(`name="user_code" value="${grant.userCode}"`)
  expect(res.body).toContain('203.0.113.7')
  expect(res.body).toContain('acme-cli/1.2 (linux)')
  expect(res.body).toContain('2 minutes ago')
  expect(res.body).toContain('UTC')
  expect(res.body).toContain('8 minutes')
  expect(res.body).toContain('Only approve if you started this on a device you are holding.')
  expect(res.body).toContain(APPROVE_BUTTON)
  expect(res.body).toContain(DENY_BUTTON)
}

// --- tests --------------------------------------------------------------------------------------

describe('RFC 8628 §3.3 verification pages: sessions and pages', () => {
  it('creates dg_session on the first GET with HttpOnly, Secure, SameSite=Lax, Path=/ and stores only its hash', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/device' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.headers['content-type']).toContain('text/html')
    const setCookie = String(res.headers['set-cookie'])
    expect(setCookie).toMatch(/^dg_session=/)
    expect(setCookie).toContain('HttpOnly')
    expect(setCookie).toContain('Secure')
    expect(setCookie).toContain('SameSite=Lax')
    expect(setCookie).toContain('Path=/')
    const value = sessionCookieOf(res)!
    expect(await h.store.findWebSession(sha256Hex(value), T0)).toBeDefined()
    expect(await h.store.findWebSession(value, T0)).toBeUndefined()
  })

  it('shows an accessible code-entry form: lang, main, title, label for user_code, named Continue button', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/device' })
    expect(res.body).toContain('<html lang="en">')
    expect(res.body).toContain('<main>')
    expect(res.body).toMatch(/<title>[^<]+<\/title>/)
    expect(res.body).toContain('<label for="user_code">Code</label>')
    expect(res.body).toMatch(/<input[^>]*\sid="user_code"[^>]*>/)
    expect(res.body).toMatch(/<input[^>]*\sname="user_code"[^>]*>/)
    expect(res.body).toContain('<button type="submit" class="primary">Continue</button>')
    expect(res.body).toContain('name="csrf_token"')
    expect(res.body).not.toContain('<script')
  })

  it('keeps the session and its CSRF token across GETs (no new cookie when one is live)', async () => {
    const browser = await openAnonymous()
    const res = await h.app.inject({
      method: 'GET',
      url: '/device',
      headers: { cookie: browser.cookie },
    })
    expect(sessionCookieOf(res)).toBeUndefined()
    expect(csrfOf(res.body)).toBe(browser.csrf)
  })

  it('publishes a CSP hash that matches the inline stylesheet exactly', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/device' })
    const css = /<style>([\s\S]*?)<\/style>/.exec(res.body)?.[1]
    expect(css).toBe(PAGE_CSS)
    const hash = `'sha256-${createHash('sha256').update(css!).digest('base64')}'`
    expect(STYLE_HASH_SOURCE).toBe(hash)
    expect(VERIFICATION_PAGE_CSP).toContain(`style-src ${hash}`)
    expect(VERIFICATION_PAGE_CSP).toContain("frame-ancestors 'none'")
    expect(VERIFICATION_PAGE_CSP).toContain("default-src 'none'")
  })
})

describe('RFC 8628 §3.3 sign-in', () => {
  it('C20 verification_uri_complete without a session shows the sign-in page carrying the canonical code', async () => {
    const grant = await createGrant()
    const res = await h.app.inject({
      method: 'GET',
      url: `/device?user_code=${formatUserCode(grant.userCode).toLowerCase()}`,
    })
    expect(res.statusCode).toBe(200)
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.body).toContain('action="/device/sign-in"')
    expect(res.body).toContain('<label for="username">')
    expect(res.body).toContain('<label for="password">')
    expect(res.body).toContain(`name="user_code" value="${grant.userCode}"`)
    expect(res.body).toContain('>Sign in</button>')
    expect(res.body).not.toContain(APPROVE_BUTTON)
  })

  it('rotates the session at sign-in: new cookie, new CSRF token, old session deleted (no fixation)', async () => {
    const grant = await createGrant()
    const anon = await openAnonymous()
    const res = await postForm('/device/sign-in', anon, {
      username: 'demo',
      password: 'demo-pass',
      user_code: formatUserCode(grant.userCode).toLowerCase(),
    })
    expect(res.statusCode).toBe(303)
    expect(res.headers['cache-control']).toBe('no-store')
    // `typed`: proof the code came through the form, given for every code (RFC 8628 §5.1).
    expect(res.headers.location).toMatch(new RegExp(`^/device\\?user_code=${grant.userCode}&typed=[0-9a-f]{32}$`))
    const newValue = sessionCookieOf(res)!
    expect(`${SESSION_COOKIE}=${newValue}`).not.toBe(anon.cookie)
    const oldValue = anon.cookie.slice(SESSION_COOKIE.length + 1)
    expect(await h.store.findWebSession(sha256Hex(oldValue), T0)).toBeUndefined()
    const fresh = await h.store.findWebSession(sha256Hex(newValue), T0)
    expect(fresh).toMatchObject({ subject: 'demo', authTime: T0 })
    expect(fresh?.csrfToken).not.toBe(anon.csrf)

    // The pre-sign-in cookie is worthless now.
    const stale = await decide(anon, grant.userCode, 'approve')
    expect(stale.statusCode).toBe(403)

    const review = await h.app.inject({
      method: 'GET',
      url: res.headers.location as string,
      headers: { cookie: `${SESSION_COOKIE}=${newValue}` },
    })
    expectReviewPage(review, grant)
    expect(review.body).toContain('Signed in as <strong>Demo</strong>')
  })

  it('answers a wrong password with 401 "Invalid username or password" and stays signed out', async () => {
    const anon = await openAnonymous()
    const res = await postForm('/device/sign-in', anon, { username: 'demo', password: 'nope' })
    expect(res.statusCode).toBe(401)
    expect(res.body).toContain('Invalid username or password')
    expect(sessionCookieOf(res)).toBeUndefined()
    const unknown = await postForm('/device/sign-in', anon, { username: 'nobody', password: 'x' })
    expect(unknown.statusCode).toBe(401)
    expect(unknown.body).toContain('Invalid username or password')
  })

  it('limits failed sign-ins per IP and username: 10 failures, then 429 with Retry-After even for the right password', async () => {
    const anon = await openAnonymous()
    for (let i = 0; i < 10; i++) {
      const res = await postForm('/device/sign-in', anon, {
        username: 'demo',
        password: `wrong-${i}`,
      })
      expect(res.statusCode).toBe(401)
    }
    const blocked = await postForm('/device/sign-in', anon, {
      username: 'demo',
      password: 'demo-pass',
    })
    expect(blocked.statusCode).toBe(429)
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0)
    // Another account from the same address is unaffected.
    const other = await postForm('/device/sign-in', anon, {
      username: 'mallory',
      password: 'mallory-pass',
    })
    expect(other.statusCode).toBe(303)
  })

  it('refuses sign-in without the session CSRF token (login CSRF)', async () => {
    const anon = await openAnonymous()
    const res = await postForm(
      '/device/sign-in',
      { cookie: anon.cookie },
      { username: 'demo', password: 'demo-pass' },
    )
    expect(res.statusCode).toBe(403)
    expect(sessionCookieOf(res)).toBeUndefined()
  })
})

describe('RFC 8628 §3.3 review and decision', () => {
  it('C17 typing the code at verification_uri shows the same review page as verification_uri_complete', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const typed = await enterCode(demo, formatUserCode(grant.userCode))
    const complete = await h.app.inject({
      method: 'GET',
      url: `/device?user_code=${formatUserCode(grant.userCode)}`,
      headers: { cookie: demo.cookie },
    })
    expectReviewPage(typed, grant)
    expectReviewPage(complete, grant)
    expect(typed.body).toBe(complete.body)
  })

  it('RFC 8628 §3.3.1 opening verification_uri_complete pre-fills but never decides', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    await h.app.inject({
      method: 'GET',
      url: `/device?user_code=${grant.userCode}`,
      headers: { cookie: demo.cookie },
    })
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it.each([
    ['lower case without dash', (c: string) => c.toLowerCase()],
    ['lower case with dash', (c: string) => formatUserCode(c).toLowerCase()],
    ['spaces around and a space for the dash', (c: string) => ` ${c.slice(0, 4)} ${c.slice(4)} `],
  ])('C16 RFC 8628 §6.1 accepts the code in %s', async (_name, transform) => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    expectReviewPage(await enterCode(demo, transform(grant.userCode)), grant)
  })

  it('C16 a code that differs in one character is an invalid code, not a match', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const res = await enterCode(demo, changeOneChar(grant.userCode))
    expect(res.statusCode).toBe(400)
    expect(res.body).toContain('not valid')
    expect(res.body).not.toContain(APPROVE_BUTTON)
    const junk = await enterCode(demo, 'AEIOU-123')
    expect(junk.statusCode).toBe(400)
    expect(junk.body).toContain('not valid')
  })

  it('C16 approving through a normalised entry records approved with the subject', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const res = await decide(demo, grant.userCode.toLowerCase(), 'approve')
    expect(res.statusCode).toBe(200)
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.body).toContain(
      'You approved <strong>Acme &lt;CLI&gt; &amp; &quot;Tools&quot;</strong>',
    )
    expect(res.body).toContain('Return to your device')
    expect(await statusOf(grant)).toEqual({ status: 'approved', subject: 'demo' })
  })

  it('deny records denied with the subject', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const res = await decide(demo, grant.userCode, 'deny')
    expect(res.statusCode).toBe(200)
    expect(res.body).toContain('Denied')
    expect(await statusOf(grant)).toEqual({ status: 'denied', subject: 'demo' })
  })

  it('refuses a decision from a session that is not signed in', async () => {
    const grant = await createGrant()
    const anon = await openAnonymous()
    const res = await decide(anon, grant.userCode, 'approve')
    expect(res.statusCode).toBe(401)
    expect(res.body).toContain('action="/device/sign-in"')
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('a code decided by someone else shows a "used" page and a second decision is refused', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const mallory = await signIn('mallory', 'mallory-pass')
    expect((await decide(demo, grant.userCode, 'approve')).statusCode).toBe(200)
    const again = await enterCode(mallory, grant.userCode)
    expect(again.statusCode).toBe(400)
    expect(again.body).toContain('already been used')
    expect(again.body).not.toContain(APPROVE_BUTTON)
    const flip = await decide(mallory, grant.userCode, 'deny')
    expect(flip.statusCode).toBe(400)
    expect(await statusOf(grant)).toEqual({ status: 'approved', subject: 'demo' })
  })

  it('a code this user decided shows "already approved by you" again; a contrary decision is refused with 409', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    expect((await decide(demo, grant.userCode, 'approve')).statusCode).toBe(200)
    const back = await enterCode(demo, grant.userCode)
    expect(back.statusCode).toBe(200)
    expect(back.body).toContain('<h1>Device approved</h1>')
    expect(back.body).toContain('You already approved this request.')
    expect(back.body).not.toContain(APPROVE_BUTTON)
    const flip = await decide(demo, grant.userCode, 'deny')
    expect(flip.statusCode).toBe(409)
    expect(flip.body).toContain('You already approved this request.')
    expect(await statusOf(grant)).toEqual({ status: 'approved', subject: 'demo' })
  })

  it('C14 RFC 8628 §3.5 an expired code gets no consent screen and its approval is refused', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    h.clock.now = grant.expiresAt + 2
    const viaLink = await h.app.inject({
      method: 'GET',
      url: `/device?user_code=${formatUserCode(grant.userCode)}`,
      headers: { cookie: demo.cookie },
    })
    expect(viaLink.statusCode).toBe(400)
    expect(viaLink.headers['content-type']).toContain('text/html')
    expect(viaLink.body).toContain('expired')
    expect(viaLink.body).not.toContain(APPROVE_BUTTON)
    const typed = await enterCode(demo, grant.userCode)
    expect(typed.statusCode).toBe(400)
    expect(typed.body).not.toContain(APPROVE_BUTTON)
    const forced = await decide(demo, grant.userCode, 'approve')
    expect(forced.statusCode).toBe(400)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('escapes every value on the review page (user agent and client name cannot inject markup)', async () => {
    const grant = await createGrant({ requestUserAgent: '<img src=x onerror=alert(1)>' })
    const demo = await signIn('demo', 'demo-pass')
    const res = await enterCode(demo, grant.userCode)
    expect(res.body).toContain('&lt;img src=x onerror=alert(1)&gt;')
    expect(res.body).not.toContain('<img')
    expect(res.body).not.toContain('<CLI>')
  })
})

describe('RFC 6749 §10.12 CSRF protection of the decision (C19)', () => {
  it('C19 a cross-site POST without a CSRF token and with a foreign Origin gets 403 and nothing is approved', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const res = await postForm(
      '/device',
      { cookie: demo.cookie },
      { user_code: grant.userCode, decision: 'approve' },
      { origin: 'https://attacker.example', 'sec-fetch-site': 'cross-site' },
    )
    expect(res.statusCode).toBe(403)
    expect(res.headers['content-type']).toContain('text/html')
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.body).not.toContain(APPROVE_BUTTON)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('C19 a CSRF token from another session gets 403 and nothing is approved', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const mallory = await signIn('mallory', 'mallory-pass')
    const res = await decide({ cookie: demo.cookie, csrf: mallory.csrf }, grant.userCode, 'approve')
    expect(res.statusCode).toBe(403)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('C19 a valid token is still refused with a foreign Origin or Sec-Fetch-Site: cross-site', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    expect(
      (await decide(demo, grant.userCode, 'approve', { origin: 'https://attacker.example' }))
        .statusCode,
    ).toBe(403)
    expect((await decide(demo, grant.userCode, 'approve', { origin: 'null' })).statusCode).toBe(403)
    expect(
      (await decide(demo, grant.userCode, 'approve', { 'sec-fetch-site': 'cross-site' }))
        .statusCode,
    ).toBe(403)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('C19 a POST without a session cookie gets 403', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const res = await decide(
      { cookie: 'dg_session=forged', csrf: demo.csrf },
      grant.userCode,
      'approve',
    )
    expect(res.statusCode).toBe(403)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('C19 refuses an Origin that matches only a forged Host header (DNS rebinding), accepts the issuer origin', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const rebound = await decide(demo, grant.userCode, 'approve', {
      origin: 'http://rebind.attacker.example',
      host: 'rebind.attacker.example',
    })
    expect(rebound.statusCode).toBe(403)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
    const ok = await decide(demo, grant.userCode, 'approve', {
      origin: 'http://localhost',
      host: 'rebind.attacker.example',
    })
    expect(ok.statusCode).toBe(200)
    expect(await statusOf(grant)).toEqual({ status: 'approved', subject: 'demo' })
  })

  it('C19 the legitimate same-origin approval still works (the PR #1002 regression)', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const res = await decide(demo, grant.userCode, 'approve', {
      origin: 'http://localhost:80',
      host: 'localhost:80',
      'sec-fetch-site': 'same-origin',
    })
    expect(res.statusCode).toBe(200)
    expect(await statusOf(grant)).toEqual({ status: 'approved', subject: 'demo' })
  })
})

describe('RFC 8628 §5.1 user-code entry rate limit (C15)', () => {
  it('C15 after 5 failures answers 429 with Retry-After, also for the real code, and the grant stays pending', async () => {
    const grant = await createGrant()
    const mallory = await signIn('mallory', 'mallory-pass')
    for (let i = 0; i < MAX_FAILURES; i++) {
      const res = await enterCode(mallory, unissuedCode(grant.userCode))
      expect(res.statusCode).toBe(400)
    }
    const blocked = await enterCode(mallory, unissuedCode(grant.userCode))
    expect(blocked.statusCode).toBe(429)
    expect(blocked.headers['cache-control']).toBe('no-store')
    const retryAfter = Number(blocked.headers['retry-after'])
    expect(retryAfter).toBeGreaterThan(0)
    expect(retryAfter).toBeLessThanOrEqual(WINDOW)

    const real = await enterCode(mallory, grant.userCode)
    expect(real.statusCode).toBe(429)
    expect(real.headers['retry-after']).toBeDefined()
    expect(real.body).not.toContain(APPROVE_BUTTON)
    expect(real.body).toBe(blocked.body)
    const forcedDecision = await decide(mallory, grant.userCode, 'approve')
    expect(forcedDecision.statusCode).toBe(429)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('C15 a different signed-in user behind the same IP is not locked out', async () => {
    const grant = await createGrant()
    const mallory = await signIn('mallory', 'mallory-pass')
    for (let i = 0; i <= MAX_FAILURES; i++) await enterCode(mallory, unissuedCode(grant.userCode))
    expect((await enterCode(mallory, grant.userCode)).statusCode).toBe(429)
    const demo = await signIn('demo', 'demo-pass')
    expectReviewPage(await enterCode(demo, grant.userCode), grant)
  })

  it('C15 a signed-in attacker cannot escape the limit with a new session of the same account', async () => {
    const grant = await createGrant()
    const mallory = await signIn('mallory', 'mallory-pass')
    for (let i = 0; i < MAX_FAILURES; i++) await enterCode(mallory, unissuedCode(grant.userCode))
    const again = await signIn('mallory', 'mallory-pass')
    expect((await enterCode(again, grant.userCode)).statusCode).toBe(429)
  })

  it('C15 anonymous sessions are limited per IP too: fresh cookies do not reset the count', async () => {
    const grant = await createGrant()
    for (let i = 0; i < MAX_FAILURES; i++) {
      const anon = await openAnonymous('198.51.100.9')
      expect((await enterCode(anon, unissuedCode(grant.userCode), '198.51.100.9')).statusCode).toBe(
        400,
      )
    }
    const fresh = await openAnonymous('198.51.100.9')
    expect((await enterCode(fresh, grant.userCode, '198.51.100.9')).statusCode).toBe(429)
    const elsewhere = await openAnonymous('192.0.2.44')
    const ok = await enterCode(elsewhere, grant.userCode, '192.0.2.44')
    expect(ok.statusCode).toBe(200)
    expect(ok.body).toContain('action="/device/sign-in"')
  })

  it('C15 guessed decisions count as failed entries too', async () => {
    const grant = await createGrant()
    const mallory = await signIn('mallory', 'mallory-pass')
    for (let i = 0; i < MAX_FAILURES; i++) {
      expect((await decide(mallory, unissuedCode(grant.userCode), 'approve')).statusCode).toBe(400)
    }
    expect((await decide(mallory, grant.userCode, 'approve')).statusCode).toBe(429)
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it('C14 expired and malformed codes count as failures; the block ends when the window does', async () => {
    const grant = await createGrant({ expiresAt: T0 + 5000 })
    const expired = await createGrant({ expiresAt: T0 - 1 })
    const mallory = await signIn('mallory', 'mallory-pass')
    await enterCode(mallory, expired.userCode)
    await enterCode(mallory, 'not-a-code')
    for (let i = 0; i < MAX_FAILURES - 2; i++)
      await enterCode(mallory, unissuedCode(grant.userCode))
    const blocked = await enterCode(mallory, grant.userCode)
    expect(blocked.statusCode).toBe(429)
    h.clock.now += Number(blocked.headers['retry-after'])
    expect((await enterCode(mallory, grant.userCode)).statusCode).toBe(200)
  })
})

describe('RFC 8628 §5.1: an attacker cannot lock out users behind the same IP (C15)', () => {
  it('offers Sign in on the code-entry page; GET /device/sign-in shows the sign-in form, a code in its URL only as a link code', async () => {
    const entry = await h.app.inject({ method: 'GET', url: '/device' })
    expect(entry.statusCode).toBe(200)
    expect(entry.body).toMatch(/<a href="\/device\/sign-in">Sign in<\/a>/)
    const cookie = `${SESSION_COOKIE}=${sessionCookieOf(entry)}`
    const page = await h.app.inject({ method: 'GET', url: '/device/sign-in', headers: { cookie } })
    expect(page.statusCode).toBe(200)
    expect(page.headers['cache-control']).toBe('no-store')
    expect(page.body).toContain('action="/device/sign-in"')
    expect(page.body).toContain(`name="csrf_token" value="${csrfOf(entry.body)}"`)
    expect(page.body).not.toContain('name="user_code"')
    // A code in the URL (the 429 page's link keeps it) is carried as a link's code: after sign-in it
    // returns without the typed-code proof, so a link cannot reach the typed-code path through sign-in.
    const withCode = await h.app.inject({ method: 'GET', url: '/device/sign-in?user_code=bcdf-ghjk', headers: { cookie } })
    expect(withCode.body).toContain('name="user_code" value="BCDFGHJK"')
    expect(withCode.body).toContain('name="code_source" value="link"')
    const junk = await h.app.inject({ method: 'GET', url: '/device/sign-in?user_code=%3Cscript%3E', headers: { cookie } })
    expect(junk.body).not.toContain('name="user_code"')
  })

  it('C15 a signed-out user behind an IP locked by junk codes is told to sign in, and then continues', async () => {
    const ip = '198.51.100.20'
    const grant = await createGrant()
    for (let i = 0; i < MAX_FAILURES; i++) {
      const attacker = await openAnonymous(ip)
      const failed = await enterCode(attacker, unissuedCode(grant.userCode), ip)
      expect(failed.statusCode).toBe(400)
      // The form says how many attempts are left (issue 16 §19): the address's budget shrinks.
      const left = MAX_FAILURES - 1 - i
      expect(failed.body).toMatch(left === 0 ? /id="attempts_left">\s*No attempts left/ : new RegExp(`id="attempts_left">\\s*${left} attempts? left`))
    }
    const victim = await openAnonymous(ip)
    const blocked = await enterCode(victim, grant.userCode, ip)
    expect(blocked.statusCode).toBe(429)
    expect(blocked.body).toContain('id="sign_in_to_continue"')
    // The sign-in link keeps the code (issue 16 §19).
    expect(blocked.body).toContain(`<a href="/device/sign-in?user_code=${grant.userCode}">sign in</a> to continue with the same code`)
    // Following that link and signing in from the same IP escapes the per-IP limit, back to the code.
    const form = await h.app.inject({ method: 'GET', url: `/device/sign-in?user_code=${grant.userCode}`, headers: { cookie: victim.cookie }, remoteAddress: ip })
    expect(form.statusCode).toBe(200)
    const res = await postForm('/device/sign-in', victim, { username: 'demo', password: 'demo-pass', user_code: grant.userCode, code_source: 'link' }, {}, ip)
    expect(res.statusCode).toBe(303)
    expect(res.headers.location).toBe(`/device?user_code=${grant.userCode}`)
    const cookie = `${SESSION_COOKIE}=${sessionCookieOf(res)}`
    expectReviewPage(await h.app.inject({ method: 'GET', url: res.headers.location as string, headers: { cookie }, remoteAddress: ip }), grant)
    const page = await h.app.inject({ method: 'GET', url: '/device', headers: { cookie }, remoteAddress: ip })
    const demo = { cookie, csrf: csrfOf(page.body) }
    expectReviewPage(await enterCode(demo, grant.userCode, ip), grant)
    // Signed-out entry on that IP stays limited (per IP and per session).
    const other = await openAnonymous(ip)
    expect((await enterCode(other, grant.userCode, ip)).statusCode).toBe(429)
  })

  it('C15 a 429 for a signed-in user offers Sign out, not sign-in', async () => {
    const mallory = await signIn('mallory', 'mallory-pass')
    for (let i = 0; i < MAX_FAILURES; i++) await enterCode(mallory, 'BBBB-BBBB')
    const blocked = await enterCode(mallory, 'BBBB-BBBB')
    expect(blocked.statusCode).toBe(429)
    expect(blocked.body).not.toContain('id="sign_in_to_continue"')
    expect(blocked.body).toContain('action="/device/sign-out"')
  })
})

describe('RFC 8628 §5.1: legitimate actions are not failed code entries', () => {
  it('a double click on Approve shows the result again and never counts as a failure', async () => {
    const grant = await createGrant()
    const next = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    expect((await decide(demo, grant.userCode, 'approve')).statusCode).toBe(200)
    for (let i = 0; i <= MAX_FAILURES; i++) {
      const again = await decide(demo, grant.userCode, 'approve')
      expect(again.statusCode).toBe(200)
      expect(again.body).toContain('You already approved this request.')
    }
    expectReviewPage(await enterCode(demo, next.userCode), next)
  })

  it('Back after deciding (the code again, typed or via its link) never counts as a failure', async () => {
    const grant = await createGrant()
    const next = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    expect((await decide(demo, grant.userCode, 'deny')).statusCode).toBe(200)
    for (let i = 0; i <= MAX_FAILURES; i++) {
      const typed = await enterCode(demo, formatUserCode(grant.userCode).toLowerCase())
      expect(typed.statusCode).toBe(200)
      expect(typed.body).toContain('You already denied this request.')
      const link = await h.app.inject({ method: 'GET', url: `/device?user_code=${grant.userCode}`, headers: { cookie: demo.cookie } })
      expect(link.statusCode).toBe(200)
      expect(link.body).toContain('You already denied this request.')
    }
    expectReviewPage(await enterCode(demo, next.userCode), next)
    expect(await statusOf(grant)).toEqual({ status: 'denied', subject: 'demo' })
  })

  it('a code decided by someone else counts as a failure', async () => {
    const decided = await createGrant()
    const next = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    expect((await decide(demo, decided.userCode, 'approve')).statusCode).toBe(200)
    const mallory = await signIn('mallory', 'mallory-pass')
    for (let i = 0; i < MAX_FAILURES; i++) {
      expect((await enterCode(mallory, decided.userCode)).statusCode).toBe(400)
    }
    expect((await enterCode(mallory, next.userCode)).statusCode).toBe(429)
  })

  it('failed links count for the session and the signed-in source, not against the signed-in account', async () => {
    const ip = '203.0.113.50'
    const grant = await createGrant()
    const victim = await signIn('demo', 'demo-pass', ip)
    for (let i = 0; i < MAX_FAILURES; i++) {
      const res = await h.app.inject({ method: 'GET', url: `/device?user_code=${unissuedCode(grant.userCode)}`, headers: { cookie: victim.cookie }, remoteAddress: ip })
      expect(res.statusCode).toBe(400)
    }
    // The session is counted (and the signed-in source: see the next test) ...
    expect((await enterCode(victim, grant.userCode, ip)).statusCode).toBe(429)
    // ... the account is not: a new session of the same account, typing, is not blocked.
    const fresh = await signIn('demo', 'demo-pass', ip)
    expectReviewPage(await enterCode(fresh, grant.userCode, ip), grant)
  })

  it('a signed-in guesser cannot escape the limit with links and fresh sessions', async () => {
    const ip = '203.0.113.60'
    const grant = await createGrant()
    // Links are bounded per signed-in source (verification.signed_in_source_max_failed_entries: 10).
    for (let i = 0; i < 10; i++) {
      const mallory = await signIn('mallory', 'mallory-pass', ip)
      const res = await h.app.inject({ method: 'GET', url: `/device?user_code=${unissuedCode(grant.userCode)}`, headers: { cookie: mallory.cookie }, remoteAddress: ip })
      expect(res.statusCode).toBe(400)
    }
    const mallory = await signIn('mallory', 'mallory-pass', ip)
    const blocked = await h.app.inject({ method: 'GET', url: `/device?user_code=${grant.userCode}`, headers: { cookie: mallory.cookie }, remoteAddress: ip })
    expect(blocked.statusCode).toBe(429)
    expect(blocked.body).not.toContain(APPROVE_BUTTON)
  })
})

describe('sign-out, sign-in spraying, and the code field', () => {
  it('shows a named Sign out button to a signed-in user; it deletes the session', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const review = await enterCode(demo, grant.userCode)
    const signOutForm = /<form method="post" action="\/device\/sign-out">\s*<input type="hidden" name="csrf_token" value="([^"]+)" \/>\s*<button type="submit" id="sign_out">Sign out<\/button>/
    expect(signOutForm.exec(review.body)?.[1]).toBe(demo.csrf)
    const entry = await h.app.inject({ method: 'GET', url: '/device', headers: { cookie: demo.cookie } })
    expect(entry.body).toMatch(signOutForm)
    const anonymous = await h.app.inject({ method: 'GET', url: '/device' })
    expect(anonymous.body).not.toContain('/device/sign-out')

    // Without the CSRF token nothing happens.
    expect((await postForm('/device/sign-out', { cookie: demo.cookie }, {})).statusCode).toBe(403)
    const idHash = sha256Hex(demo.cookie.slice(SESSION_COOKIE.length + 1))
    expect(await h.store.findWebSession(idHash, h.clock.now)).toBeDefined()

    const out = await postForm('/device/sign-out', demo, {})
    expect(out.statusCode).toBe(303)
    expect(out.headers.location).toBe('/device')
    expect(out.headers['cache-control']).toBe('no-store')
    const cleared = out.cookies.find((c) => c.name === SESSION_COOKIE)
    expect(cleared?.value).toBe('')
    expect(await h.store.findWebSession(idHash, h.clock.now)).toBeUndefined()
    expect((await decide(demo, grant.userCode, 'approve')).statusCode).toBe(403)
    const after = await h.app.inject({ method: 'GET', url: '/device', headers: { cookie: demo.cookie } })
    expect(after.body).not.toContain('Signed in as')
    expect(await statusOf(grant)).toEqual({ status: 'pending', subject: null })
  })

  it(`limits failed sign-ins per IP across usernames (spraying): ${SIGN_IN_MAX_FAILURES_PER_IP} failures, then 429 even for a right password`, async () => {
    const ip = '192.0.2.77'
    const anon = await openAnonymous(ip)
    for (let i = 0; i < SIGN_IN_MAX_FAILURES_PER_IP; i++) {
      const res = await postForm('/device/sign-in', anon, { username: `user${i}`, password: 'Summer2025!' }, {}, ip)
      expect(res.statusCode).toBe(401)
    }
    const blocked = await postForm('/device/sign-in', anon, { username: 'demo', password: 'demo-pass' }, {}, ip)
    expect(blocked.statusCode).toBe(429)
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0)
    const elsewhere = await openAnonymous('192.0.2.78')
    expect((await postForm('/device/sign-in', elsewhere, { username: 'demo', password: 'demo-pass' }, {}, '192.0.2.78')).statusCode).toBe(303)
  })

  it('keeps what was typed in the field after a failed entry, escaped', async () => {
    const anon = await openAnonymous()
    const res = await enterCode(anon, 'bcdf-ghj"><script>x</script>')
    expect(res.statusCode).toBe(400)
    expect(res.body).toContain('value="bcdf-ghj&quot;&gt;&lt;script&gt;x&lt;/script&gt;"')
    expect(res.body).not.toContain('<script>')
  })

  it('C16 accepts a full-width code with a pasted zero-width space', async () => {
    const grant = await createGrant()
    const demo = await signIn('demo', 'demo-pass')
    const fullWidth = [...formatUserCode(grant.userCode)]
      .map((ch) => String.fromCodePoint(ch.codePointAt(0)! + 0xfee0))
      .join('')
    expectReviewPage(await enterCode(demo, `\u200b${fullWidth}\ufeff`), grant)
  })
})

describe('logging and headers', () => {
  it('never logs a user code, password or cookie value', async () => {
    const grant = await createGrant()
    const anon = await openAnonymous()
    await postForm('/device/sign-in', anon, { username: 'demo', password: 'wrong-secret-pw' })
    const demo = await signIn('demo', 'demo-pass')
    await enterCode(demo, changeOneChar(grant.userCode))
    await decide(demo, grant.userCode, 'approve')
    await decide({ cookie: demo.cookie, csrf: 'x' }, grant.userCode, 'deny')
    const all = h.logs.join('\n')
    expect(all).toContain('device_code.approved')
    expect(all).toContain('verification.code_entry_failed')
    for (const secret of [
      grant.userCode,
      changeOneChar(grant.userCode),
      'wrong-secret-pw',
      'demo-pass',
      demo.cookie.slice(SESSION_COOKIE.length + 1),
      demo.csrf,
    ]) {
      expect(all).not.toContain(secret)
    }
  })

  it('sends Cache-Control: no-store on every page, redirect and error', async () => {
    const grant = await createGrant()
    const anon = await openAnonymous()
    const responses = [
      await h.app.inject({ method: 'GET', url: '/device' }),
      await h.app.inject({ method: 'GET', url: `/device?user_code=${grant.userCode}` }),
      await postForm('/device/sign-in', anon, { username: 'demo', password: 'demo-pass' }),
      await postForm('/device', {}, { user_code: grant.userCode }),
      await enterCode(anon, 'BBBBBBBB'),
    ]
    for (const res of responses) expect(res.headers['cache-control']).toBe('no-store')
  })
})
