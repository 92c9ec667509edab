/**
 * The reported failing inputs of `shared/cases/` (copied to `test/cases/cases.json` and
 * `test/cases/cases-3.json`, so CI needs no sibling checkout), each run as its own black-box test
 * against a real listening server.
 *
 * A small interpreter executes the steps exactly as `CASES.md` ("Conventions") describes them:
 * placeholders and filters, HTTP Basic and DPoP notation, captured values, real-time waits
 * (`wait_before_seconds` is a real sleep: these are timing tests, so no TestClock), `repeat`,
 * CASES-3.md's additions (`query:` on any method, empty forms, `{jkt:K}`, literal credentials),
 * `parallel` and `aggregate`, and browser steps driven through the verification pages. Cases run
 * concurrently, one fresh server each, so the wall time is about that of the longest case.
 *
 * The server is deployed the way the cases assume: an https issuer on the default port behind a
 * TLS-terminating proxy (`https://devicegate.test`). The harness connects to the app's own socket
 * and maps URLs under the issuer to it; DPoP `htu` values keep the public URLs.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import { describe, expect, it, vi } from 'vitest'
import { USER_CODE_ALPHABET } from '../src/core/user-code.js'
import { createLogger } from '../src/server.js'
import { FIXTURE, fixtureConfigFile, PageSession, startTestServer, type TestServer } from './support/server.js'

// ---- the case format (CASES.md "Step and expectation format") ----------------------------------

interface CaseRequest {
  method: string
  path: string
  query?: Record<string, string>
  headers?: Record<string, string>
  form?: Record<string, string> | [string, string][]
  json?: unknown
}
interface Expectation {
  status?: number | number[]
  error?: string | string[] | null
  headers?: Record<string, string>
  body?: Record<string, unknown>
  outcome?: 'accepted' | 'refused'
  notes?: string
}
interface Step {
  description: string
  request?: CaseRequest
  action?: 'approve' | 'deny'
  user_code?: string
  via?: 'verification_uri' | 'verification_uri_complete'
  expect: Expectation
  save?: Record<string, string>
  wait_before_seconds?: string | number
  parallel?: number
  repeat?: number
  aggregate?: Record<string, number>
}
interface Case {
  id: string
  title: string
  rfc: string[]
  steps: Step[]
}

/** Every shared case file: part 1 (C01–C48) and part 3 (C49–C64, CASES-3.md). */
const CASE_FILES = ['cases.json', 'cases-3.json'] as const
const CASES = CASE_FILES.flatMap(
  (file) => JSON.parse(readFileSync(new URL(`./cases/${file}`, import.meta.url), 'utf8')) as Case[],
)

/** The public origin of the server under test (see the file comment). */
const ISSUER = 'https://devicegate.test'
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

/** Fixture placeholders of CASES.md, mapped to `test/support/server.ts`. */
const FIXTURES: Record<string, string> = {
  client_id: 'cli',
  short_client_id: 'short-cli',
  conf_client_id: 'conf',
  conf_client_secret: FIXTURE.confSecret,
  client_b_id: 'client-b',
  client_b_secret: FIXTURE.clientBSecret,
  rs_client_id: 'rs',
  rs_client_secret: FIXTURE.rsSecret,
  scope: 'read',
  scope_extra: 'write',
  // Exists on the server (the `rs` client may request it) but `cli` may not.
  scope_forbidden: 'admin',
}

/**
 * What the notes of a page step say in prose and the step's `expect` cannot: whether the consent
 * screen (the Approve button) is shown, and what it must name. Keyed `CASE#step` (1-based).
 */
const PAGE_NOTES: Record<string, { consent: boolean; contains?: string[] }> = {
  'C03#3': { consent: true, contains: ['Test CLI', '(read)', '(write)'] },
  'C14#2': { consent: false },
  'C14#3': { consent: false },
  'C15#3': { consent: false },
  'C15#5': { consent: true, contains: ['Test CLI'] },
  'C16#2': { consent: true, contains: ['Test CLI', '(read)'] },
  'C16#3': { consent: true, contains: ['Test CLI', '(read)'] },
  'C16#6': { consent: false },
  'C17#2': { consent: false },
  'C17#3': { consent: true, contains: ['Test CLI', '(read)'] },
  // RFC 8628 §3.3.1 / §5.4: an earlier approval is never remembered; the page asks again.
  'C54#5': { consent: true, contains: ['Test CLI', '(read)'] },
  'C54#7': { consent: true, contains: ['Test CLI', '(read)'] },
}

// ---- helpers ---------------------------------------------------------------------------------

interface Response {
  status: number
  headers: Headers
  text: string
  json: Record<string, unknown> | undefined
  /** Headers as sent, after expansion (for `save: request.headers.X`). */
  sentHeaders: Record<string, string>
}

const sleep = (seconds: number) => new Promise((r) => setTimeout(r, seconds * 1000))
const nowSeconds = () => Math.floor(Date.now() / 1000)
const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

function randomUserCode(): string {
  let code = ''
  for (let i = 0; i < 8; i++) code += USER_CODE_ALPHABET[randomBytes(1)[0]! % USER_CODE_ALPHABET.length]
  return `${code.slice(0, 4)}-${code.slice(4)}`
}

/** Filters on captured values (CASES.md "Notation inside values"). */
function applyFilter(value: string, filter: string): string {
  switch (filter) {
    case 'lower':
      return value.toLowerCase()
    case 'strip-dash':
      return value.replace(/-/g, '')
    case 'dash-to-space':
      return value.replace(/-/g, ' ')
    case 'change-one-char': {
      // Replace the last code character with the next letter of the alphabet: still well-formed.
      const i = value.search(/[A-Za-z](?=[^A-Za-z]*$)/)
      const ch = value[i]!.toUpperCase()
      const next = USER_CODE_ALPHABET[(USER_CODE_ALPHABET.indexOf(ch) + 1) % USER_CODE_ALPHABET.length]!
      return value.slice(0, i) + next + value.slice(i + 1)
    }
    case 'scheme=http':
      return value.replace(/^[a-z][a-z0-9+.-]*:/i, 'http:')
    case 'upper-host':
      return value.replace(/^([a-z]+:\/\/)([^/:?#]+)/i, (_m, scheme: string, host: string) => scheme + host.toUpperCase())
    case 'explicit-default-port':
      return value.replace(/^([a-z]+):\/\/([^/:?#]+)(?=[/?#]|$)/i, (m, scheme: string) =>
        `${m}:${scheme.toLowerCase() === 'https' ? 443 : 80}`,
      )
    default:
      throw new Error(`unknown filter |${filter}`)
  }
}

/** Splits `s` at top-level `{…}` placeholders (they nest: `{dpop htu={token_endpoint}}`). */
function* tokens(s: string): Generator<{ literal: string } | { placeholder: string }> {
  let i = 0
  while (i < s.length) {
    const open = s.indexOf('{', i)
    if (open < 0) {
      yield { literal: s.slice(i) }
      return
    }
    if (open > i) yield { literal: s.slice(i, open) }
    let depth = 0
    let j = open
    for (; j < s.length; j++) {
      if (s[j] === '{') depth++
      else if (s[j] === '}' && --depth === 0) break
    }
    if (depth !== 0) throw new Error(`unbalanced braces in ${s}`)
    yield { placeholder: s.slice(open + 1, j) }
    i = j + 1
  }
}

/** One browser-like session at the verification pages. */
class Browser extends PageSession {
  constructor(
    baseUrl: string,
    readonly who: string,
  ) {
    super(baseUrl)
  }
  /** Takes a new cookie and CSRF token from a response the harness sent on this session's behalf. */
  absorb(res: { headers: Headers; text: string }): void {
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('dg_session='))
    if (setCookie) this.cookie = setCookie.split(';')[0]!
    const m = /name="csrf_token" value="([^"]+)"/.exec(res.text)
    if (m) this.csrf = m[1]!
  }
}

/** Everything one case run holds. */
class Run {
  readonly vars: Record<string, string | number> = {}
  readonly keys = new Map<string, { privateKey: CryptoKey; jwk: JWK }>()
  alice!: Browser
  mallory!: Browser
  /** A second signed-in session, the source of `{csrf_token_of_other_session}`. */
  other!: Browser
  metadata: Record<string, unknown> = {}
  /** The verification_uri of the latest device authorization response. */
  shownVerificationUri: string | undefined
  where = ''

  constructor(readonly t: TestServer) {}

  async start(): Promise<void> {
    const res = await fetch(`${this.t.url}/.well-known/oauth-authorization-server`)
    expect(res.status, 'RFC 8414 metadata').toBe(200)
    this.metadata = (await res.json()) as Record<string, unknown>
    expect(this.metadata.issuer).toBe(ISSUER)
    expect(this.metadata.grant_types_supported, 'RFC 8628 §4').toContain(DEVICE_GRANT)
    expect(this.metadata.dpop_signing_alg_values_supported, 'RFC 9449 §5.1').toContain('ES256')
    for (const name of ['device_authorization_endpoint', 'token_endpoint', 'revocation_endpoint', 'introspection_endpoint', 'jwks_uri'])
      expect(typeof this.metadata[name], name).toBe('string')
    this.alice = new Browser(this.t.url, 'alice')
    this.mallory = new Browser(this.t.url, 'mallory')
    this.other = new Browser(this.t.url, 'alice (second session)')
    await Promise.all([
      this.alice.signIn('alice', FIXTURE.password),
      this.mallory.signIn('mallory', FIXTURE.attackerPassword),
      this.other.signIn('alice', FIXTURE.password),
    ])
  }

  /** Maps a URL under the public issuer to the socket the harness connects to. */
  local(url: string): string {
    return url.startsWith(ISSUER + '/') || url === ISSUER ? this.t.url + url.slice(ISSUER.length) : url
  }

  async key(name: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
    let k = this.keys.get(name)
    if (!k) {
      const pair = await generateKeyPair('ES256')
      k = { privateKey: pair.privateKey, jwk: await exportJWK(pair.publicKey) }
      this.keys.set(name, k)
    }
    return k
  }

  /** `{dpop key=K1 htm=POST htu=<url> [jti=..] [iat=-600] [alg=none]}` (RFC 9449 §4.2). */
  async dpop(spec: string, session: Browser | undefined): Promise<string> {
    const args: Record<string, string> = {}
    for (const m of spec.matchAll(/(\w+)=(<[^>]*>|\{[^{}]*\}\S*|\S+)/g)) args[m[1]!] = m[2]!
    const key = await this.key(args.key ?? 'K1')
    let jti: string = randomUUID()
    if (args.jti !== undefined) {
      const ref = /^<jti of (\w+)>$/.exec(args.jti)
      if (ref) {
        const proof = String(this.need(ref[1]!))
        jti = (JSON.parse(Buffer.from(proof.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti
      } else jti = args.jti
    }
    const payload = {
      jti,
      htm: args.htm ?? 'POST',
      htu: await this.expand(args.htu ?? '{token_endpoint}', session),
      iat: nowSeconds() + Number(args.iat ?? 0),
    }
    const header = { typ: 'dpop+jwt', jwk: key.jwk }
    if (args.alg === 'none') return `${b64url({ ...header, alg: 'none' })}.${b64url(payload)}.`
    if (args.alg !== undefined && args.alg !== 'ES256') throw new Error(`unsupported dpop alg ${args.alg}`)
    return new SignJWT(payload).setProtectedHeader({ ...header, alg: 'ES256' }).sign(key.privateKey)
  }

  need(name: string): string | number {
    const v = this.vars[name]
    if (v === undefined) throw new Error(`${this.where}: {${name}} was never captured`)
    return v
  }

  /** Resolves one placeholder's content (without the braces). */
  async resolve(inner: string, session: Browser | undefined): Promise<string> {
    if (inner.startsWith('dpop ')) return this.dpop(inner.slice(5), session)
    // `{jkt:K1}`: the RFC 7638 thumbprint of a DPoP key (RFC 9449 §6.1 `cnf.jkt`).
    if (inner.startsWith('jkt:')) return calculateJwkThumbprint((await this.key(inner.slice(4))).jwk)
    if (inner.startsWith('b64:')) {
      const [a, b] = inner.slice(4).split(':') as [string, string]
      const value = (name: string) => (name === 'wrong-secret' ? name : (FIXTURES[name] ?? String(this.need(name))))
      return Buffer.from(`${value(a)}:${value(b)}`).toString('base64')
    }
    const [name, ...filters] = inner.split('|') as [string, ...string[]]
    let value: string
    if (name in FIXTURES) value = FIXTURES[name]!
    else if (name.endsWith('_endpoint') || name === 'jwks_uri') {
      const v = this.metadata[name]
      if (typeof v !== 'string') throw new Error(`metadata has no ${name}`)
      value = v
    } else if (name === 'session_cookie') value = this.alice.cookie
    else if (name === 'attacker_session_cookie') value = this.mallory.cookie
    else if (name === 'csrf_token') value = (session ?? this.alice).csrf
    else if (name === 'csrf_token_of_other_session') value = this.other.csrf
    else if (name === 'random_device_code' || name === 'random_token') value = randomBytes(32).toString('base64url')
    else if (name === 'random_user_code') value = randomUserCode()
    else value = String(this.need(name))
    for (const f of filters) value = applyFilter(value, f)
    return value
  }

  async expand(template: string, session?: Browser): Promise<string> {
    let out = ''
    for (const tok of tokens(template)) out += 'literal' in tok ? tok.literal : await this.resolve(tok.placeholder, session)
    return out
  }

  /** `wait_before_seconds`: `{interval}+6` etc.; an absent interval counts as 5 (RFC 8628 §3.2). */
  async waitSeconds(expr: string | number | undefined): Promise<number> {
    if (expr === undefined) return 0
    if (typeof expr === 'number') return expr
    if (this.vars.interval === undefined) this.vars.interval = 5
    const text = await this.expand(expr)
    return text.split('+').reduce((sum, part) => sum + Number(part.trim()), 0)
  }

  /** The session a request acts for, from its Cookie header template. */
  sessionOf(req: CaseRequest): Browser | undefined {
    const cookie = req.headers?.Cookie
    if (cookie === '{session_cookie}') return this.alice
    if (cookie === '{attacker_session_cookie}') return this.mallory
    if (cookie !== undefined) throw new Error(`unknown cookie ${cookie}`)
    return undefined
  }

  /** Expands placeholders in every string of a JSON value (request bodies, expected members). */
  async expandDeep(v: unknown, session?: Browser): Promise<unknown> {
    if (typeof v === 'string') return this.expand(v, session)
    if (Array.isArray(v)) return Promise.all(v.map((x) => this.expandDeep(x, session)))
    if (v !== null && typeof v === 'object')
      return Object.fromEntries(await Promise.all(Object.entries(v).map(async ([k, x]) => [k, await this.expandDeep(x, session)])))
    return v
  }

  async send(req: CaseRequest): Promise<Response> {
    const session = this.sessionOf(req)
    const sentHeaders: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers ?? {})) sentHeaders[k] = await this.expand(v, session)
    let url = this.local(await this.expand(req.path, session))
    if (req.query) {
      const q = new URLSearchParams()
      for (const [k, v] of Object.entries(req.query)) q.append(k, await this.expand(v, session))
      url += (url.includes('?') ? '&' : '?') + q.toString()
    }
    let body: string | undefined
    if (req.form !== undefined) {
      const pairs = Array.isArray(req.form) ? req.form : Object.entries(req.form)
      const form = new URLSearchParams()
      for (const [k, v] of pairs) form.append(k, await this.expand(v, session))
      body = form.toString()
    } else if (req.json !== undefined) {
      body = JSON.stringify(await this.expandDeep(req.json, session))
    }
    const res = await fetch(url, { method: req.method, headers: sentHeaders, body, redirect: 'manual' })
    const text = await res.text()
    let json: Record<string, unknown> | undefined
    try {
      const parsed: unknown = JSON.parse(text)
      json = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined
    } catch {
      json = undefined
    }
    const out = { status: res.status, headers: res.headers, text, json, sentHeaders }
    session?.absorb(out)
    return out
  }

  /** Checks one response against `expect` plus the rules every response must meet. */
  async check(res: Response, exp: Expectation, req: CaseRequest, key: string): Promise<void> {
    const at = this.where
    const statuses = exp.status === undefined ? undefined : Array.isArray(exp.status) ? exp.status : [exp.status]
    if (statuses) expect(statuses, `${at}: status (body ${res.text.slice(0, 300)})`).toContain(res.status)
    expect(res.status, `${at}: never 5xx`).toBeLessThan(500)
    const code = res.json?.error
    if (typeof exp.error === 'string') expect(code, `${at}: error`).toBe(exp.error)
    else if (Array.isArray(exp.error)) expect(exp.error, `${at}: error`).toContain(code)
    else if (res.status >= 200 && res.status < 300) expect(code, `${at}: no error on success`).toBeUndefined()
    for (const [name, rule] of Object.entries(exp.headers ?? {})) {
      const value = res.headers.get(name)
      if (rule === '!') expect(value, `${at}: ${name} absent`).toBeNull()
      else if (rule === '*') expect(value, `${at}: ${name} present`).not.toBeNull()
      else if (rule.startsWith('~')) expect(value ?? '', `${at}: ${name}`).toContain(await this.expand(rule.slice(1)))
      else expect(value, `${at}: ${name}`).toBe(await this.expand(rule))
    }
    for (const [member, want] of Object.entries(exp.body ?? {})) {
      if (member === '$only') {
        expect(Object.keys(res.json ?? {}).filter((k) => !(want as string[]).includes(k)), `${at}: only ${String(want)}`).toEqual([])
      } else if (typeof want === 'string' && want.startsWith('set-equals:')) {
        const expected = (await this.expand(want.slice('set-equals:'.length))).split(' ').filter(Boolean).sort()
        const actual = String(res.json?.[member] ?? '').split(' ').filter(Boolean).sort()
        expect(actual, `${at}: ${member} (as a set)`).toEqual(expected)
      } else {
        expect(res.json?.[member], `${at}: body.${member}`).toEqual(await this.expandDeep(want))
      }
    }
    // Rules from the Conventions and notes that hold for every response.
    if (res.status >= 400 && res.json)
      for (const secret of ['access_token', 'refresh_token', 'device_code'])
        expect(res.json[secret], `${at}: no ${secret} in an error response`).toBeUndefined()
    if (res.status === 429) expect(res.headers.get('retry-after'), `${at}: 429 carries Retry-After (RFC 6585 §4)`).not.toBeNull()
    for (const c of res.headers.getSetCookie().filter((c) => c.startsWith('dg_session='))) {
      expect(c, `${at}: session cookie HttpOnly`).toMatch(/;\s*HttpOnly/i)
      expect(c, `${at}: session cookie Secure`).toMatch(/;\s*Secure/i)
      expect(c, `${at}: session cookie SameSite`).toMatch(/;\s*SameSite=(Lax|Strict)/i)
    }
    if (req.path === '{token_endpoint}') expect(res.headers.get('last-modified'), `${at}: no Last-Modified`).toBeNull()
    // A page that redirects (e.g. to sign-in) is checked again where it lands (C20: "follow the redirect").
    const location = res.headers.get('location')
    if (req.method === 'GET' && res.status >= 300 && res.status < 400 && location !== null && exp.headers) {
      const landed = await this.send({ ...req, path: new URL(location, this.t.url).href })
      await this.check(landed, { status: 200, headers: exp.headers }, { ...req, path: location }, `${key} (redirect)`)
    }
    const page = PAGE_NOTES[key]
    if (page) {
      const isConsent = /<button name="decision" value="approve">/.test(res.text)
      expect(isConsent, `${at}: consent screen ${page.consent ? 'shown' : 'not shown'}`).toBe(page.consent)
      for (const s of page.contains ?? []) expect(res.text, `${at}: page names ${s}`).toContain(s)
    }
  }

  /**
   * `BROWSER APPROVE|DENY`: the signed-in test user opens the page (by typing the code at
   * verification_uri, or via verification_uri_complete), then presses the button. A "forced"
   * submission still posts the decision when no consent screen was shown.
   * @returns whether the decision was recorded.
   */
  async browserDecision(step: Step): Promise<'accepted' | 'refused'> {
    const user = this.alice
    const code = await this.expand(step.user_code ?? '{user_code}')
    const verificationUri = this.shownVerificationUri ?? String(this.need('verification_uri'))
    const pagePath = (url: string) => {
      const u = new URL(url)
      return u.pathname + u.search
    }
    let page: { status: number; body: string }
    if (step.via === 'verification_uri_complete') {
      const complete =
        step.user_code === '{user_code}' && this.vars.verification_uri_complete !== undefined
          ? String(this.vars.verification_uri_complete)
          : `${verificationUri}?user_code=${encodeURIComponent(code)}`
      page = await user.get(pagePath(complete))
    } else {
      await user.get(pagePath(verificationUri))
      page = await user.post(pagePath(verificationUri), { user_code: code })
    }
    expect(page.status, `${this.where}: page never 5xx`).toBeLessThan(500)
    const hiddenCode = /name="user_code" value="([^"]+)"/.exec(page.body)?.[1] ?? code
    const decision = step.action!
    const res = await user.post(pagePath(verificationUri), { user_code: hiddenCode, decision })
    expect(res.status, `${this.where}: decision never 5xx`).toBeLessThan(500)
    const recorded = res.status === 200 && (decision === 'approve' ? /<h1>Device approved<\/h1>/ : /<h1>Denied<\/h1>/).test(res.body)
    return recorded ? 'accepted' : 'refused'
  }

  async runStep(c: Case, step: Step, index: number): Promise<void> {
    const key = `${c.id}#${index + 1}`
    this.where = `${key} (${step.description})`
    const wait = await this.waitSeconds(step.wait_before_seconds)
    if (wait > 0) await sleep(wait)

    if (step.action) {
      const outcome = await this.browserDecision(step)
      expect(outcome, `${this.where}: browser ${step.action}`).toBe(step.expect.outcome)
      return
    }
    const req = step.request!
    const responses: Response[] = []
    if (step.parallel !== undefined) responses.push(...(await Promise.all(Array.from({ length: step.parallel }, () => this.send(req)))))
    else for (let i = 0; i < (step.repeat ?? 1); i++) responses.push(await this.send(req))

    if (step.aggregate) this.checkAggregate(step.aggregate, responses)
    for (const res of responses) {
      // With an aggregate, `expect.status` lists what each response may be; the rest is per response.
      await this.check(res, step.expect, req, key)
    }
    const last = responses.at(-1)!
    // The person reads verification_uri off the device, whether or not the case captures it.
    if (typeof last.json?.verification_uri === 'string') this.shownVerificationUri = last.json.verification_uri
    for (const [name, from] of Object.entries(step.save ?? {})) {
      let value: unknown
      if (from.startsWith('body.')) value = last.json?.[from.slice(5)]
      else if (from.startsWith('request.headers.')) value = last.sentHeaders[from.slice('request.headers.'.length)]
      else throw new Error(`unknown save source ${from}`)
      if (value === undefined) {
        // `interval` is optional (RFC 8628 §3.2); every other captured value must be there.
        if (name === 'interval' || name === 'verification_uri_complete') continue
        throw new Error(`${this.where}: ${from} missing, cannot save {${name}} (body ${last.text.slice(0, 300)})`)
      }
      this.vars[name] = typeof value === 'number' ? value : String(value)
    }
  }

  /**
   * The server's logs (captured at trace level) never contain a credential the run saw: tokens,
   * device and user codes, DPoP proofs, client secrets, passwords, session cookies, CSRF tokens.
   * C15's blocked guesses are logged as an event an anomaly detector can read.
   */
  checkLogs(lines: string[], id: string): void {
    expect(lines.length, 'logs were captured').toBeGreaterThan(0)
    const secrets = new Set<string>([FIXTURE.password, FIXTURE.attackerPassword, FIXTURE.confSecret, FIXTURE.clientBSecret, FIXTURE.rsSecret])
    for (const [name, value] of Object.entries(this.vars))
      if (/device_code|user_code|access_token|refresh_token|proof/.test(name)) secrets.add(String(value))
    for (const b of [this.alice, this.mallory, this.other]) {
      secrets.add(b.cookie.replace(/^dg_session=/, ''))
      secrets.add(b.csrf)
    }
    for (const value of [...secrets]) if (/^[A-Z]{4}-[A-Z]{4}$/.test(value)) secrets.add(value.replace('-', ''))
    const text = lines.join('\n')
    for (const value of secrets) if (value.length >= 8) expect(text.includes(value), `${id}: logs contain a secret value`).toBe(false)
    if (id === 'C15') expect(text, 'C15: blocked guesses are logged as an event').toContain('"event":"verification.code_entry_blocked"')
  }

  checkAggregate(aggregate: Record<string, number>, responses: Response[]): void {
    const statuses = responses.map((r) => r.status)
    for (const [name, want] of Object.entries(aggregate)) {
      switch (name) {
        case 'success_count':
          expect(statuses.filter((s) => s >= 200 && s < 300).length, `${this.where}: success_count in ${statuses}`).toBe(want)
          break
        case 'eventually_status': {
          const first = statuses.indexOf(want)
          expect(first, `${this.where}: eventually ${want} in ${statuses}`).toBeGreaterThanOrEqual(0)
          // Once reached it holds: a block is not lifted by more attempts.
          expect(statuses.slice(first).every((s) => s === want), `${this.where}: stays ${want} in ${statuses}`).toBe(true)
          break
        }
        case 'max_failures_before_block': {
          const first = statuses.indexOf(429)
          expect(first, `${this.where}: blocked at all in ${statuses}`).toBeGreaterThanOrEqual(0)
          expect(first, `${this.where}: failures before the block in ${statuses}`).toBeLessThanOrEqual(want)
          break
        }
        default:
          throw new Error(`unknown aggregate ${name}`)
      }
    }
  }
}

/**
 * The fixture of CASES.md, adjusted where one case needs more (CASES-3.md "Fixture requirements"):
 * C64 waits out an access token, so the public client gets the shortest lifetime the product
 * allows (60 s, `clients[].access_token_ttl_seconds`).
 */
async function caseConfig(id: string) {
  const file = await fixtureConfigFile()
  if (id !== 'C64') return file
  return { ...file, clients: file.clients.map((c) => (c.client_id === 'cli' ? { ...c, access_token_ttl_seconds: 60 } : c)) }
}

// Every case is its own test; they run at once (each mostly sleeps), so raise the default of 5.
vi.setConfig({ maxConcurrency: CASES.length })

describe.concurrent('shared/cases: reported failing inputs (black-box, real time)', () => {
  it('has every case of the shared file', () => {
    expect(CASES.map((c) => c.id)).toEqual(expect.arrayContaining(['C01', 'C07', 'C15', 'C27', 'C28', 'C49', 'C56', 'C62', 'C64']))
    for (const c of CASES) expect(c.steps.length, c.id).toBeGreaterThan(0)
  })

  for (const c of CASES) {
    it(`${c.id} ${c.title}`, { timeout: 150_000 }, async () => {
      const lines: string[] = []
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
          done()
        },
      })
      const t = await startTestServer({ issuer: ISSUER, logger: createLogger('trace', sink), config: await caseConfig(c.id) })
      let run: Run | undefined
      try {
        run = new Run(t)
        await run.start()
        for (const [i, step] of c.steps.entries()) await run.runStep(c, step, i)
      } finally {
        await t.close()
      }
      run.checkLogs(lines, c.id)
    })
  }
})
