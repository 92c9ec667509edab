/**
 * Test support for the governance console: a server with console roles (vera viewer, otto
 * operator, ada admin through the `identity-admins` group, alice an approver without a role),
 * TOTP enrolled for the role holders, real device flows to seed grants, and an HTTP session that
 * behaves like a browser on the console (cookie, CSRF token, Origin).
 */
import { hash } from '@node-rs/argon2'
import { generate } from 'otplib'
import { parseConfig } from '../../src/config/load.js'
import type { CreateServerOptions } from '../../src/server.js'
import { FIXTURE, PageSession, startTestServer, type TestServer } from './server.js'

export const CONSOLE_TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'
export const CONSOLE_PASSWORD = FIXTURE.password

export interface ConsoleTestServer extends TestServer {
  /** The current TOTP code (after moving the clock to a fresh 30-second step). */
  freshTotp(): Promise<string>
  /** Runs a device flow for `client` approved by `user` from `ip`; returns the grant id. */
  seedGrant(opts?: { user?: string; client?: string; requestIp?: string; approveIp?: string; userAgent?: string; storageClass?: string }): Promise<string>
  /** A signed-in console session. */
  signIn(username: string): Promise<ConsoleClient>
}

/** Starts a console test server (SQLite file, frozen clock, 127.0.0.1 trusted as a proxy). */
export async function startConsoleServer(
  storageUrl?: string,
  consoleSignIns?: CreateServerOptions['consoleSignIns'],
  consoleExtensions?: CreateServerOptions['consoleExtensions'],
  /** Console session settings other than the fixture's (`session_ttl_seconds: 1800`). */
  sessionSettings: { session_ttl_seconds?: number; idle_timeout_seconds?: number } = {},
): Promise<ConsoleTestServer> {
  const h = await hash(CONSOLE_PASSWORD)
  const device = ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']
  const config = parseConfig({
    trusted_proxies: ['127.0.0.1'],
    scopes: { read: 'Read your data', offline_access: 'Stay signed in' },
    clients: [
      { client_id: 'cli', name: 'Test CLI', grant_types: device, scopes: ['read', 'offline_access'], refresh_token_issuance: 'always' },
      { client_id: 'deploy-cli', name: 'Deploy CLI', risk_tier: 'low', grant_types: device, scopes: ['read', 'offline_access'], refresh_token_issuance: 'always' },
    ],
    users: [
      { username: 'alice', display_name: 'Alice', password_hash: h, groups: ['staff'] },
      { username: 'bob', display_name: 'Bob', password_hash: h, groups: ['staff'] },
      { username: 'vera', display_name: 'Vera Viewer', password_hash: h },
      { username: 'otto', display_name: 'Otto Operator', password_hash: h },
      { username: 'ada', display_name: 'Ada Admin', password_hash: h, groups: ['identity-admins'] },
      { username: 'nora', display_name: 'Nora No-MFA', password_hash: h },
    ],
    console: {
      roles: { viewer: { users: ['vera', 'nora'] }, operator: { users: ['otto'] }, admin: { groups: ['identity-admins'] } },
      session_ttl_seconds: 1800,
      ...sessionSettings,
    },
    log_level: 'silent',
  })
  const t = await startTestServer({ config, ...(storageUrl ? { storageUrl } : {}), ...(consoleSignIns ? { consoleSignIns } : {}), ...(consoleExtensions ? { consoleExtensions } : {}) })
  t.clock.freeze()
  for (const u of ['vera', 'otto', 'ada']) await t.server.store.saveTotpSecret(u, CONSOLE_TOTP_SECRET, t.clock.nowSeconds())
  const server: ConsoleTestServer = {
    ...t,
    async freshTotp() {
      t.clock.advance(30)
      return generate({ secret: CONSOLE_TOTP_SECRET, epoch: t.clock.nowSeconds() })
    },
    async seedGrant(opts = {}) {
      const res = await fetch(`${t.url}/device_authorization`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': opts.requestIp ?? '198.51.100.7', 'user-agent': opts.userAgent ?? 'seed-agent/1.0' },
        body: new URLSearchParams({ client_id: opts.client ?? 'cli', scope: 'read offline_access', ...(opts.storageClass ? { storage_class: opts.storageClass } : {}) }).toString(),
      })
      const auth = (await res.json()) as { device_code: string; user_code: string }
      const approver = new PageSession(t.url, undefined, { 'x-forwarded-for': opts.approveIp ?? '203.0.113.9', ...(opts.userAgent ? { 'user-agent': opts.userAgent } : {}) })
      await approver.signIn(opts.user ?? 'alice', CONSOLE_PASSWORD)
      if ((await approver.decide(auth.user_code, 'approve')) !== 200) throw new Error('approval failed')
      const token = await fetch(`${t.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: auth.device_code, client_id: opts.client ?? 'cli' }).toString(),
      })
      if (token.status !== 200) throw new Error(`token request failed: ${token.status}`)
      const [grant] = await t.server.store.listGrantSummaries({ subject: opts.user ?? 'alice' }, { limit: 1 })
      return grant!.id
    },
    async signIn(username) {
      const c = new ConsoleClient(t.url, t.issuer)
      await c.signIn(username, username === 'alice' || username === 'bob' || username === 'nora' ? '' : await server.freshTotp())
      return c
    },
  }
  return server
}

/** A browser-like console session: keeps the `dg_console` cookie and the CSRF token. */
export class ConsoleClient {
  cookie = ''
  csrf = ''
  constructor(
    readonly baseUrl: string,
    readonly issuer: string,
    readonly headers: Record<string, string> = {},
  ) {}

  #absorb(res: Response, body: string) {
    const set = res.headers.getSetCookie().find((c) => c.startsWith('dg_console='))
    if (set) this.cookie = set.split(';')[0]!
    const m = /name="csrf_token" value="([^"]+)"/.exec(body)
    if (m) this.csrf = m[1]!
  }

  async get(path: string): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await fetch(this.baseUrl + path, { headers: { ...this.headers, ...(this.cookie ? { cookie: this.cookie } : {}) }, redirect: 'manual' })
    const body = await res.text()
    this.#absorb(res, body)
    return { status: res.status, body, headers: res.headers }
  }

  /** POSTs a form with the cookie, this session's CSRF token (unless `csrf_token` is given) and the issuer's Origin. */
  async post(path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await fetch(this.baseUrl + path, {
      method: 'POST',
      headers: { ...this.headers, 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookie, origin: new URL(this.issuer).origin, ...headers },
      body: new URLSearchParams({ csrf_token: this.csrf, ...form }).toString(),
      redirect: 'manual',
    })
    const body = await res.text()
    this.#absorb(res, body)
    return { status: res.status, body, headers: res.headers }
  }

  /** Signs in with the fixture password and `totp`; throws unless answered 303. */
  async signIn(username: string, totp: string): Promise<void> {
    await this.get('/console/sign-in')
    const res = await this.post('/console/sign-in', { username, password: CONSOLE_PASSWORD, totp })
    if (res.status !== 303) throw new Error(`console sign-in failed: ${res.status}`)
    await this.get(res.headers.get('location')!)
  }
}
