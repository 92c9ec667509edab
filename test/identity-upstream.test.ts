/**
 * approvers sign in through an upstream OpenID Connect provider — openid-client as the
 * relying party against a provider built on `jose` that the test can make misbehave. Each failure
 * (state mismatch, wrong audience, expired, `alg: none`, another nonce, a foreign key, a denial, an
 * unreachable provider) ends on a clear 4xx page with nobody signed in; a success creates the
 * person just in time keyed by (iss, sub) — never email — and returns to the same code review.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startFakeIdp, type FakeIdp } from './support/fake-idp.js'
import { fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

let idp: FakeIdp
let t: TestServer
let claimsForNext: Record<string, unknown> = {}

beforeAll(async () => {
  idp = await startFakeIdp({ clientId: 'devicegate', subject: () => claimsForNext })
  process.env.DG_TEST_UPSTREAM_SECRET = 'upstream-client-secret-0123456789'
  t = await startTestServer({
    config: await fixtureConfigFile({
      identity_providers: [
        { id: 'corp', name: 'Corp SSO', issuer: idp.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_UPSTREAM_SECRET', timeout_seconds: 2 },
        { id: 'strict', issuer: idp.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_UPSTREAM_SECRET', allowed_email_domains: ['example.com'] },
        { id: 'dead', issuer: 'http://127.0.0.1:9/', client_id: 'devicegate', timeout_seconds: 1 },
      ],
      console: { roles: { viewer: { groups: ['eng'] } } },
    }),
  })
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})
beforeEach(() => {
  idp.shape = {}
  claimsForNext = { sub: 'sub-ann', email: 'ann@example.com', email_verified: true, preferred_username: 'ann@example.com', name: 'Ann', groups: ['eng'] }
})

function cookieOf(res: Response, name: string): string | undefined {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';')
    const [k, v] = pair!.split('=')
    if (k === name) return v
  }
  return undefined
}

/** Start → provider → callback, as a browser would follow it; `tamper` may change the callback. */
async function upstreamSignIn(provider = 'corp', opts: { userCode?: string; browserState?: (s: string) => string; tamper?: (u: URL) => void } = {}) {
  const start = await fetch(`${t.url}/device/upstream/${provider}/start${opts.userCode ? `?user_code=${opts.userCode}` : ''}`, { redirect: 'manual' })
  if (start.status !== 303) return { start, res: start, body: await start.text() }
  const state = cookieOf(start, 'dg_upstream')!
  const atIdp = await fetch(start.headers.get('location')!, { redirect: 'manual' })
  const callback = new URL(atIdp.headers.get('location')!)
  opts.tamper?.(callback)
  const res = await fetch(callback, { redirect: 'manual', headers: { cookie: `dg_upstream=${opts.browserState ? opts.browserState(state) : state}` } })
  return { start, res, body: await res.text(), authorization: new URL(start.headers.get('location')!) }
}

describe('authorization request (OpenID Connect Core 1.0 §3.1.2.1, RFC 7636)', () => {
  it('sends code + PKCE S256 + state + nonce to the per-provider redirect URI, and binds state to the browser', async () => {
    const start = await fetch(`${t.url}/device/upstream/corp/start`, { redirect: 'manual' })
    expect(start.status).toBe(303)
    const url = new URL(start.headers.get('location')!)
    expect(url.origin + url.pathname).toBe(`${idp.issuer}/authorize`)
    expect(url.searchParams.get('response_type')).toBe('code')
    expect(url.searchParams.get('client_id')).toBe('devicegate')
    expect(url.searchParams.get('redirect_uri')).toBe(`${t.issuer}/device/upstream/corp/callback`)
    expect(url.searchParams.get('code_challenge_method')).toBe('S256')
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(url.searchParams.get('nonce')).toBeTruthy()
    expect(url.searchParams.get('scope')!.split(' ')).toContain('openid')
    expect(url.searchParams.get('prompt')).toBeNull()
    const cookie = start.headers.getSetCookie().find((c) => c.startsWith('dg_upstream='))!
    expect(cookie).toContain(`dg_upstream=${url.searchParams.get('state')}`)
    expect(cookie).toMatch(/HttpOnly/i)
    expect(cookie).toMatch(/SameSite=Lax/i)
  })

  it('asks for a fresh authentication on a step-up (prompt=login, max_age=0)', async () => {
    const start = await fetch(`${t.url}/device/upstream/corp/start?step_up=1`, { redirect: 'manual' })
    const url = new URL(start.headers.get('location')!)
    expect(url.searchParams.get('prompt')).toBe('login')
    expect(url.searchParams.get('max_age')).toBe('0')
  })

  it('refuses a return path that leaves the site', async () => {
    for (const to of ['https://evil.example/device', '//evil.example/device', '/admin/api/grants']) {
      const res = await fetch(`${t.url}/device/upstream/corp/start?return_to=${encodeURIComponent(to)}`, { redirect: 'manual' })
      expect(res.status).toBe(400)
    }
  })
})

describe('successful upstream sign-in', () => {
  it('creates the person just in time with mapped groups and returns to the same code review, signed in', async () => {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    const { res } = await upstreamSignIn('corp', { userCode: auth.json.user_code })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe(`/device?user_code=${auth.json.user_code.replace('-', '')}`)
    const session = cookieOf(res, 'dg_session')
    expect(session).toBeTruthy()
    const person = t.server.identity.directory.all().find((p) => p.upstreamSub === 'sub-ann')!
    expect(person).toMatchObject({ source: 'provider', upstreamIssuer: idp.issuer, userName: 'ann@example.com', email: 'ann@example.com', groups: ['eng'] })
    const review = await fetch(`${t.url}${res.headers.get('location')}`, { headers: { cookie: `dg_session=${session}` } })
    const html = await review.text()
    expect(review.status).toBe(200)
    expect(html).toContain('Approve')
  })

  it('keys people by (iss, sub), never email, and refreshes groups at each sign-in', async () => {
    claimsForNext = { ...claimsForNext, groups: ['eng', 'ops'] }
    await upstreamSignIn()
    const ann = t.server.identity.directory.all().filter((p) => p.upstreamSub === 'sub-ann')
    expect(ann).toHaveLength(1)
    expect(t.server.identity.directory.get(ann[0]!.id)?.groups).toEqual(['eng', 'ops'])
    // Same email, another subject: another person (a reassigned address must not inherit an account).
    claimsForNext = { ...claimsForNext, sub: 'sub-other', preferred_username: 'ann@example.com' }
    const { res } = await upstreamSignIn()
    expect(res.status).toBe(303)
    const other = t.server.identity.directory.all().find((p) => p.upstreamSub === 'sub-other')!
    expect(other.id).not.toBe(ann[0]!.id)
    expect(other.userName).toBe('corp:ann@example.com')
  })

  it('counts a second factor in amr as this sign-in\'s MFA (audited)', async () => {
    claimsForNext = { ...claimsForNext, amr: ['pwd', 'otp'] }
    const { res } = await upstreamSignIn()
    expect(res.status).toBe(303)
    const session = cookieOf(res, 'dg_session')!
    const { sha256Hex } = await import('../src/system.js')
    const record = await t.server.store.findWebSession(sha256Hex(session), t.clock.nowSeconds())
    expect(record?.mfaAt).toBeTypeOf('number')
    const events = await t.server.store.listAuditEvents({ limit: 10_000 })
    const signedIn = events.filter((e) => e.type === 'session.signed_in').map((e) => JSON.parse(e.details ?? '{}'))
    expect(signedIn.at(-1)).toMatchObject({ via: 'upstream', provider: 'corp', mfa: true })
  })
})

describe('every upstream failure ends on a clear page, nobody signed in, never a 5xx', () => {
  const refused = async (r: Awaited<ReturnType<typeof upstreamSignIn>>, status: number, title: string) => {
    expect(r.res.status).toBe(status)
    expect(r.res.headers.get('content-type')).toContain('text/html')
    expect(r.body).toContain(title)
    expect(cookieOf(r.res, 'dg_session')).toBeUndefined()
  }
  const peopleCount = () => t.server.identity.directory.all().length

  it('state mismatch: a response bound to another browser is refused', async () => {
    const before = peopleCount()
    await refused(await upstreamSignIn('corp', { browserState: () => 'another-browser-state' }), 400, 'Sign-in expired')
    expect(peopleCount()).toBe(before)
  })

  it('a replayed callback (state already used) is refused', async () => {
    const first = await upstreamSignIn()
    expect(first.res.status).toBe(303)
    const again = await fetch(first.res.url, { redirect: 'manual' })
    expect(again.status).toBe(400)
  })

  it('an ID Token for another audience is refused', async () => {
    idp.shape = { claims: { aud: 'someone-else' } }
    await refused(await upstreamSignIn(), 400, 'Sign-in refused')
  })

  it('an expired ID Token is refused', async () => {
    const past = Math.floor(Date.now() / 1000) - 3600
    idp.shape = { claims: { iat: past - 300, exp: past } }
    await refused(await upstreamSignIn(), 400, 'Sign-in refused')
  })

  it('an unsigned ID Token (alg: none) is refused', async () => {
    idp.shape = { alg: 'none' }
    await refused(await upstreamSignIn(), 400, 'Sign-in refused')
  })

  it('an ID Token signed by a key outside the provider\'s JWKS is refused', async () => {
    idp.shape = { foreignKey: true }
    await refused(await upstreamSignIn(), 400, 'Sign-in refused')
  })

  it('an ID Token with another nonce is refused', async () => {
    idp.shape = { claims: { nonce: 'not-the-one-sent' } }
    await refused(await upstreamSignIn(), 400, 'Sign-in refused')
  })

  it('an ID Token from another issuer is refused', async () => {
    idp.shape = { claims: { iss: 'https://evil.example' } }
    await refused(await upstreamSignIn(), 400, 'Sign-in refused')
  })

  it('the provider denying the sign-in (error=access_denied) is a cancelled sign-in', async () => {
    const r = await upstreamSignIn('corp', {
      tamper: (u) => {
        u.searchParams.delete('code')
        u.searchParams.set('error', 'access_denied')
      },
    })
    await refused(r, 403, 'Sign-in cancelled')
  })

  it('a token endpoint error is a provider error', async () => {
    idp.shape = { error: 'server_error' }
    await refused(await upstreamSignIn(), 400, 'Sign-in failed')
  })

  it('an unreachable provider', async () => {
    const r = await upstreamSignIn('dead')
    expect(r.res.status).toBe(400)
    expect(r.body).toContain('Identity provider unreachable')
  })

  it('an unknown provider is 404', async () => {
    const res = await fetch(`${t.url}/device/upstream/nope/start`, { redirect: 'manual' })
    expect(res.status).toBe(404)
  })

  it('an email outside the allowed domains (or unverified) is refused and creates nobody', async () => {
    const before = peopleCount()
    claimsForNext = { ...claimsForNext, sub: 'sub-x', email: 'x@elsewhere.org' }
    await refused(await upstreamSignIn('strict'), 403, 'Account not allowed')
    claimsForNext = { ...claimsForNext, sub: 'sub-y', email: 'y@example.com', email_verified: false }
    await refused(await upstreamSignIn('strict'), 403, 'Account not allowed')
    expect(peopleCount()).toBe(before)
  })

  it('a disabled person cannot sign in upstream', async () => {
    claimsForNext = { ...claimsForNext, sub: 'sub-dis', preferred_username: 'dis@example.com' }
    expect((await upstreamSignIn()).res.status).toBe(303)
    const person = t.server.identity.directory.all().find((p) => p.upstreamSub === 'sub-dis')!
    await t.server.identity.people.setStatus(person.id, 'disabled', 'test')
    await refused(await upstreamSignIn(), 403, 'Account disabled')
  })

  it('audits each failure with its code', async () => {
    const events = await t.server.store.listAuditEvents({ limit: 10_000 })
    const codes = events.filter((e) => e.type === 'session.upstream_failed').map((e) => JSON.parse(e.details ?? '{}').failure)
    expect(codes).toEqual(expect.arrayContaining(['state_mismatch', 'invalid_response', 'denied', 'provider_error', 'unreachable', 'email_not_allowed', 'account_disabled']))
  })
})

describe('the sign-in page offers the providers; local passwords can be switched off', () => {
  it('shows "Sign in with <provider>" links that carry the code, beside the password form', async () => {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    const html = await (await fetch(`${t.url}/device?user_code=${auth.json.user_code}`)).text()
    const code = auth.json.user_code.replace('-', '')
    expect(html).toContain(`href="/device/upstream/corp/start?user_code=${code}"`)
    expect(html).toContain('Sign in with Corp SSO')
    expect(html).toContain('name="password"')
  })

  it('without local passwords: no password form, and a password sign-in is refused', async () => {
    const other = await startTestServer({
      config: await fixtureConfigFile({
        identity: { local_passwords: false },
        identity_providers: [{ id: 'corp', name: 'Corp SSO', issuer: idp.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_UPSTREAM_SECRET' }],
      }),
    })
    try {
      const html = await (await fetch(`${other.url}/device/sign-in`)).text()
      expect(html).toContain('Sign in with Corp SSO')
      expect(html).not.toContain('name="password"')
      const { PageSession, FIXTURE } = await import('./support/server.js')
      const page = new PageSession(other.url)
      await page.get('/device')
      expect((await page.post('/device/sign-in', { username: 'alice', password: FIXTURE.password })).status).toBe(401)
    } finally {
      await other.close()
    }
  })
})

describe('the governance console signs people in through the same upstream sign-in', () => {
  it('offers "Sign in with <provider>" and comes back to the console with the person', async () => {
    claimsForNext = { ...claimsForNext, amr: ['pwd', 'otp'] }
    const page = await (await fetch(`${t.url}/console/sign-in`)).text()
    expect(page).toContain('/console/sign-in/corp')
    const start = await fetch(`${t.url}/console/sign-in/corp`, { redirect: 'manual' })
    expect(start.status).toBe(303)
    const state = cookieOf(start, 'dg_upstream')!
    const atIdp = await fetch(start.headers.get('location')!, { redirect: 'manual' })
    const callback = await fetch(atIdp.headers.get('location')!, { redirect: 'manual', headers: { cookie: `dg_upstream=${state}` } })
    expect(callback.status).toBe(303)
    expect(callback.headers.get('location')).toBe('/console/sign-in/corp/done')
    const session = cookieOf(callback, 'dg_session')!
    const done = await fetch(`${t.url}/console/sign-in/corp/done`, { redirect: 'manual', headers: { cookie: `dg_session=${session}` } })
    expect(done.status).toBe(303)
    expect(done.headers.get('location')).toMatch(/^\/console/)
    expect(done.headers.get('location')).not.toBe('/console/sign-in')
  })
})
