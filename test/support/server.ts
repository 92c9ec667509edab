/**
 * Test support: a real devicegate server on a temporary SQLite file (or PostgreSQL), with the
 * fixture clients of `shared/cases/` and a controllable clock, plus a scripted approver that
 * drives the verification pages over HTTP exactly as a browser would.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hash } from '@node-rs/argon2'
import type { ConfigFile } from '../../src/config/schema.js'
import { parseConfig, resolveConfig } from '../../src/config/load.js'
import type { Clock } from '../../src/core/ports.js'
import type { GeoLookup } from '../../src/policy/geo.js'
import type { Logger } from 'pino'
import { createLogger, createServer, type CreateServerOptions, type DevicegateServer } from '../../src/server.js'

/** A clock tests can move; starts at the real time. */
export class TestClock implements Clock {
  #offset = 0
  #frozenAt: number | undefined
  nowSeconds(): number {
    return (this.#frozenAt ?? Math.floor(Date.now() / 1000)) + this.#offset
  }
  /** Moves time forward by `seconds`. */
  advance(seconds: number): void {
    this.#offset += seconds
  }
  /**
   * Stops the clock at the current second, so a test that compares rendered durations
   * ("8 minutes") is not moved by the real time its requests take. `advance` still works.
   */
  freeze(): void {
    this.#frozenAt ??= Math.floor(Date.now() / 1000)
  }
}

export const FIXTURE = {
  password: 'correct horse battery staple',
  attackerPassword: 'attacker password 123',
  confSecret: 'conf-secret-0123456789abcdef',
  clientBSecret: 'client-b-secret-0123456789',
  rsSecret: 'rs-secret-0123456789abcdef',
  adminSecret: 'admin-secret-0123456789abcdef',
} as const

let hashes: Promise<Record<keyof typeof FIXTURE, string>> | undefined
function fixtureHashes() {
  hashes ??= (async () => {
    const out: Partial<Record<keyof typeof FIXTURE, string>> = {}
    for (const [k, v] of Object.entries(FIXTURE)) out[k as keyof typeof FIXTURE] = await hash(v)
    return out as Record<keyof typeof FIXTURE, string>
  })()
  return hashes
}

/** Configuration with the fixture clients and users of `shared/cases/CASES.md`. */
export async function fixtureConfigFile(overrides: Partial<Record<string, unknown>> = {}): Promise<ConfigFile> {
  const h = await fixtureHashes()
  const device = ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']
  return parseConfig({
    scopes: { read: 'Read your data', write: 'Change your data', admin: 'Administer everything', offline_access: 'Stay signed in' },
    clients: [
      { client_id: 'cli', name: 'Test CLI', type: 'public', grant_types: device, scopes: ['read', 'write', 'offline_access'], default_scopes: ['read'], refresh_token_issuance: 'always' },
      { client_id: 'short-cli', name: 'Short CLI', type: 'public', grant_types: device, scopes: ['read', 'write', 'offline_access'], device_code_ttl_seconds: 15, refresh_token_issuance: 'always' },
      { client_id: 'opaque-cli', name: 'Opaque CLI', type: 'public', grant_types: device, scopes: ['read', 'offline_access'], access_token_format: 'opaque' },
      { client_id: 'conf', name: 'Confidential App', type: 'confidential', client_secret_hash: h.confSecret, token_endpoint_auth_methods: ['client_secret_basic', 'client_secret_post'], grant_types: [...device, 'client_credentials'], scopes: ['read', 'write', 'offline_access'], refresh_token_issuance: 'always' },
      { client_id: 'client-b', name: 'Client B', type: 'confidential', client_secret_hash: h.clientBSecret, grant_types: device, scopes: ['read', 'write', 'offline_access'], refresh_token_issuance: 'always' },
      { client_id: 'rs', name: 'Resource Server', type: 'confidential', client_secret_hash: h.rsSecret, grant_types: ['client_credentials'], scopes: ['read', 'admin'], default_scopes: ['read'], introspection: true },
    ],
    users: [
      { username: 'alice', display_name: 'Alice', password_hash: h.password },
      { username: 'mallory', display_name: 'Mallory', password_hash: h.attackerPassword },
    ],
    log_level: 'silent',
    ...overrides,
  })
}

export interface TestServer {
  server: DevicegateServer
  /** Base URL to connect to, e.g. http://127.0.0.1:41234 (also the issuer unless `issuer` was given). */
  url: string
  /** The issuer the server announces (RFC 8414 `issuer`). */
  issuer: string
  clock: TestClock
  close(): Promise<void>
}

/**
 * Starts a listening server on 127.0.0.1 with a random port and a fresh SQLite file.
 * @param opts.storageUrl use this store instead (e.g. PostgreSQL).
 * @param opts.issuer announce this issuer instead of the listening address, as a deployment behind
 *   a TLS-terminating proxy does (e.g. `https://devicegate.test`); tests still connect to `url`.
 * @param opts.logger capture the server's logs (default: silent).
 */
export async function startTestServer(
  opts: { config?: ConfigFile; storageUrl?: string; clock?: TestClock; issuer?: string; logger?: Logger; geo?: GeoLookup; consoleSignIns?: CreateServerOptions['consoleSignIns']; consoleExtensions?: CreateServerOptions['consoleExtensions'] } = {},
): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-test-'))
  const clock = opts.clock ?? new TestClock()
  const file = opts.config ?? (await fixtureConfigFile())
  // Bind first to learn the port, so the issuer (and DPoP htu) carry the real one.
  const { createServer: createNetServer } = await import('node:net')
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => resolve(p))
    })
  })
  const config = await resolveConfig(
    { ...file, storage: { url: opts.storageUrl ?? `sqlite:${join(dir, 'devicegate.db')}` } },
    { host: '127.0.0.1', port, issuer: opts.issuer ?? `http://127.0.0.1:${port}`, dataDir: dir },
  )
  const server = await createServer(config, { clock, logger: opts.logger ?? createLogger('silent'), ...(opts.geo ? { geo: opts.geo } : {}), ...(opts.consoleSignIns ? { consoleSignIns: opts.consoleSignIns } : {}), ...(opts.consoleExtensions ? { consoleExtensions: opts.consoleExtensions } : {}) })
  await server.app.listen({ host: '127.0.0.1', port })
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    issuer: config.issuer,
    clock,
    async close() {
      await server.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** POSTs a form (pairs allow repeated names) and returns status, headers and parsed JSON. */
export async function postForm(
  url: string,
  form: Record<string, string> | [string, string][],
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form as never).toString(),
    redirect: 'manual',
  })
  const text = await res.text()
  let json: any
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, json, text }
}

/** HTTP Basic credentials (RFC 6749 §2.3.1). */
export function basic(id: string, secret: string): string {
  return 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')
}

/**
 * A browser-like session on the verification pages: keeps the cookie and the CSRF token. Its
 * POSTs carry the `Origin` a browser would send: the public origin, i.e. the issuer's (learnt from
 * the RFC 8414 metadata unless given), which differs from `baseUrl` behind a proxy or a load balancer.
 */
export class PageSession {
  cookie = ''
  csrf = ''
  #origin: string | undefined
  /**
   * @param origin The Origin header of POSTs; default: the issuer's origin from the metadata.
   * @param headers Sent with every request (e.g. `X-Forwarded-For` through a trusted proxy).
   */
  constructor(
    readonly baseUrl: string,
    origin?: string,
    readonly headers: Record<string, string> = {},
  ) {
    this.#origin = origin
  }

  /** The Origin header of this session's POSTs. */
  async origin(): Promise<string> {
    if (this.#origin === undefined) {
      const res = await fetch(`${this.baseUrl}/.well-known/oauth-authorization-server`)
      const { issuer } = (await res.json()) as { issuer: string }
      this.#origin = new URL(issuer).origin
    }
    return this.#origin
  }

  #absorb(res: Response, body: string): void {
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('dg_session='))
    if (setCookie) this.cookie = setCookie.split(';')[0]!
    const m = /name="csrf_token" value="([^"]+)"/.exec(body)
    if (m) this.csrf = m[1]!
  }

  /** GETs a page path (e.g. `/device?user_code=…`). */
  async get(path: string): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await fetch(this.baseUrl + path, { headers: { ...this.headers, ...(this.cookie ? { cookie: this.cookie } : {}) }, redirect: 'manual' })
    const body = await res.text()
    this.#absorb(res, body)
    return { status: res.status, body, headers: res.headers }
  }

  /** POSTs a page form with this session's cookie and CSRF token. */
  async post(path: string, form: Record<string, string>): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await fetch(this.baseUrl + path, {
      method: 'POST',
      headers: { ...this.headers, 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookie, origin: await this.origin() },
      body: new URLSearchParams({ csrf_token: this.csrf, ...form }).toString(),
      redirect: 'manual',
    })
    const body = await res.text()
    this.#absorb(res, body)
    return { status: res.status, body, headers: res.headers }
  }

  /** Signs in (rotating the session) and loads a page to pick up the new CSRF token. */
  async signIn(username: string, password: string): Promise<void> {
    if (!this.cookie) await this.get('/device')
    const res = await this.post('/device/sign-in', { username, password })
    if (res.status !== 303) throw new Error(`sign-in failed: ${res.status}`)
    await this.get('/device')
  }

  /** Enters the code and presses Approve or Deny. Returns the final page status. */
  async decide(userCode: string, decision: 'approve' | 'deny'): Promise<number> {
    await this.post('/device', { user_code: userCode })
    return (await this.post('/device', { user_code: userCode, decision })).status
  }
}

/** Signs in as the fixture user and approves (or denies) `userCode`. */
export async function approveAs(baseUrl: string, userCode: string, decision: 'approve' | 'deny' = 'approve', username = 'alice'): Promise<void> {
  const page = new PageSession(baseUrl)
  await page.signIn(username, username === 'alice' ? FIXTURE.password : FIXTURE.attackerPassword)
  const status = await page.decide(userCode, decision)
  if (status !== 200) throw new Error(`decision failed with ${status}`)
}
