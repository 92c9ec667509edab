/**
 * End to end, as a person uses it: the built CLI (`node bin/devicegate.js login … --store file`,
 * XDG_CONFIG_HOME in a temporary directory) logs in while headless Chromium approves on the
 * server's own verification pages; then `whoami`, `token` and `logout` (revocation checked by
 * introspection with a confidential client). Twice: against devicegate, and against an
 * independent server, `oidc-provider` with its device flow, default pages and dev interactions.
 *
 * Chromium is Debian's `/usr/bin/chromium` (or `DEVICEGATE_CHROMIUM`); without it these tests
 * are skipped, loudly. The CLI runs from dist/, rebuilt here when src/client or src/cli is newer.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import type { Server } from 'node:http'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FileTokenStore, readStoredGrant, type StoredGrant } from '../src/client/index.js'
import { basic, FIXTURE, postForm, startTestServer, type TestServer } from './support/server.js'

const ROOT = join(import.meta.dirname, '..')
const CHROMIUM = process.env.DEVICEGATE_CHROMIUM ?? '/usr/bin/chromium'
const HAVE_CHROMIUM = existsSync(CHROMIUM)
if (!HAVE_CHROMIUM) console.warn(`\n*** CLI end-to-end tests SKIPPED: no Chromium at ${CHROMIUM} (set DEVICEGATE_CHROMIUM) ***\n`)
const ACCOUNT = 'cli-default' // the CLI's account for profile "default"

/** The subset of oidc-provider's API these tests use (the package ships no type declarations). */
type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => { listen(port: number, host: string): Server }
async function loadOidcProvider(): Promise<ProviderConstructor> {
  const name = 'oidc-provider' // through a variable: the untyped module stays out of type checking
  return ((await import(name)) as { default: ProviderConstructor }).default
}

/** Rebuilds dist/ when a CLI or client source file is newer than its output (npm test builds first anyway). */
function ensureBuilt(): void {
  const newest = (dir: string) => Math.max(...readdirSync(dir).map((f) => statSync(join(dir, f)).mtimeMs))
  const out = join(ROOT, 'dist/cli/login.js')
  const stale = !existsSync(out) || Math.max(newest(join(ROOT, 'src/client')), newest(join(ROOT, 'src/cli'))) > statSync(out).mtimeMs
  if (!stale) return
  // tsc emits even when another module of the tree has a type error; the outputs are what matter.
  spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'ignore' })
  if (!existsSync(out)) throw new Error('dist/cli/login.js missing after build; run `npm run build`')
}

interface Run {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<number>
}

/** Spawns the CLI with its own config directory and no terminal (stdout and stderr are pipes). */
function cli(args: string[], configHome: string): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome, NO_COLOR: '1' }
  delete env.DEVICEGATE_STORE
  delete env.DEVICEGATE_DEBUG
  const child = spawn(process.execPath, [join(ROOT, 'bin/devicegate.js'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)))
  return { child, stdout: () => out, stderr: () => err, exited }
}

async function cliDone(args: string[], configHome: string) {
  const run = cli(args, configHome)
  const code = await run.exited
  return { code, stdout: run.stdout(), stderr: run.stderr() }
}

/** Waits until the CLI has shown the code and URL; returns them. */
async function shownCode(run: Run, timeoutMs = 20_000): Promise<{ userCode: string; verificationUri: string }> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const m = /To sign in, open (\S+)\nand enter the code:\s+(\S+)/.exec(run.stderr())
    if (m) return { verificationUri: m[1]!, userCode: m[2]! }
    if (run.child.exitCode !== null || Date.now() > deadline) throw new Error(`the CLI showed no code:\n${run.stderr()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function expectNoStackTrace(text: string): void {
  expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m)
}

let browser: Browser
beforeAll(async () => {
  if (!HAVE_CHROMIUM) return
  ensureBuilt()
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
}, 120_000)
afterAll(async () => {
  await browser?.close()
})

describe.runIf(HAVE_CHROMIUM)('CLI login against devicegate, approved in Chromium', () => {
  let ts: TestServer
  let home: string
  beforeAll(async () => {
    ts = await startTestServer()
    home = mkdtempSync(join(tmpdir(), 'devicegate-cli-e2e-'))
  })
  afterAll(async () => {
    await ts?.close()
    rmSync(home, { recursive: true, force: true })
  })

  async function introspect(token: string) {
    return (await postForm(`${ts.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json as Record<string, unknown>
  }

  /** Types the code on the verification page, signs in as alice and presses the named button. */
  async function decideInBrowser(shown: { userCode: string; verificationUri: string }, button: 'Approve' | 'Deny') {
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      await page.goto(shown.verificationUri)
      await page.getByLabel('Code').fill(shown.userCode)
      await page.getByRole('button', { name: 'Continue' }).click()
      await page.getByLabel('Username').fill('alice')
      await page.getByLabel('Password').fill(FIXTURE.password)
      await page.getByRole('button', { name: 'Sign in' }).click()
      await page.getByRole('button', { name: button }).click()
      await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toBe(button === 'Approve' ? 'Device approved' : 'Denied')
    } finally {
      await context.close()
    }
  }

  it('login shows the code, stores DPoP-bound tokens encrypted (0600), and prints no token', async () => {
    const run = cli(['login', '--issuer', ts.url, '--client-id', 'cli', '--scope', 'read offline_access', '--store', 'file'], home)
    const shown = await shownCode(run)
    expect(shown.verificationUri).toBe(`${ts.url}/device`)
    expect(shown.userCode).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/)
    // Written after the code, possibly in a later chunk of stderr (a loaded machine splits them).
    await expect.poll(() => run.stderr(), { timeout: 10_000 }).toMatch(/Waiting for approval \(the code expires in \d+:\d\d\)/)
    await decideInBrowser(shown, 'Approve')
    expect(await run.exited).toBe(0)
    expect(run.stderr()).toContain(`Logged in to ${ts.url} as alice.`)
    expect(run.stderr()).toMatch(/Tokens: DPoP \(bound to this installation's key/)
    expect(run.stdout()).toBe('')

    const dir = join(home, 'devicegate')
    const grant = (await readStoredGrant(new FileTokenStore({ dir }), ACCOUNT))!
    expect(grant.tokenType).toBe('DPoP')
    for (const f of readdirSync(dir)) {
      expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600)
      const text = readFileSync(join(dir, f), 'utf8')
      expect(text).not.toContain(grant.accessToken)
      expect(text).not.toContain(grant.refreshToken!)
    }
    expect(run.stderr()).not.toContain(grant.accessToken)
    expect(await introspect(grant.accessToken)).toMatchObject({ active: true, sub: 'alice', cnf: { jkt: grant.dpopJkt } })
  })

  it('whoami shows the subject, marked unverified, and the binding', async () => {
    const r = await cliDone(['whoami', '--store', 'file'], home)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^subject:\s+alice\s+\(unverified: decoded locally from the access token\)$/m)
    expect(r.stdout).toMatch(/^issuer:\s+http:\/\/127\.0\.0\.1:\d+$/m)
    expect(r.stdout).toMatch(/^token type:\s+DPoP, bound to key \S+$/m)
    expect(r.stdout).toMatch(/^scope:\s+read offline_access$/m)
  })

  it('token prints the access token to a pipe, with a warning on stderr', async () => {
    const grant = (await readStoredGrant(new FileTokenStore({ dir: join(home, 'devicegate') }), ACCOUNT))!
    const r = await cliDone(['token', '--store', 'file'], home)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`${grant.accessToken}\n`)
    expect(r.stderr).toMatch(/warning: printing an access token\. Keep it out of shell history, logs and CI output/)
  })

  it('parallel token calls share one refresh through the lock file: one new token for all (issue 16 item 10)', async () => {
    const store = new FileTokenStore({ dir: join(home, 'devicegate') })
    const grant = (await readStoredGrant(store, ACCOUNT))!
    // Make the stored token due: 30 s left of a 600 s lifetime.
    const now = Math.floor(Date.now() / 1000)
    await store.set(`grant-${ACCOUNT}`, JSON.stringify({ ...grant, obtainedAt: now - 570, expiresAt: now + 30 }))
    const runs = await Promise.all(Array.from({ length: 4 }, () => cliDone(['token', '--store', 'file'], home)))
    for (const r of runs) expect(r.code).toBe(0)
    const printed = new Set(runs.map((r) => r.stdout))
    expect(printed.size).toBe(1)
    const [token] = [...printed]
    expect(token).not.toBe(`${grant.accessToken}\n`)
    expect(await introspect(token!.trim())).toMatchObject({ active: true })
    expect(((await readStoredGrant(store, ACCOUNT))!).accessToken).toBe(token!.trim())
  })

  it('logout revokes at the server (introspection says inactive), then deletes locally', async () => {
    const dir = join(home, 'devicegate')
    const grant = (await readStoredGrant(new FileTokenStore({ dir }), ACCOUNT))!
    const r = await cliDone(['logout', '--store', 'file'], home)
    expect(r.code).toBe(0)
    expect(r.stderr).toContain(`Revoked at ${ts.url} and deleted from file.`)
    expect(await introspect(grant.refreshToken!)).toEqual({ active: false })
    expect(await introspect(grant.accessToken)).toEqual({ active: false })
    expect(await readStoredGrant(new FileTokenStore({ dir }), ACCOUNT)).toBeUndefined()
    const after = await cliDone(['whoami', '--store', 'file'], home)
    expect(after.code).toBe(1)
    expect(after.stderr).toMatch(/^devicegate: not logged in; run `devicegate login/m)
    expectNoStackTrace(after.stderr)
  })

  it('says clearly when the user denies', async () => {
    const run = cli(['login', '--issuer', ts.url, '--client-id', 'cli', '--store', 'file'], home)
    await decideInBrowser(await shownCode(run), 'Deny')
    expect(await run.exited).toBe(1)
    expect(run.stderr()).toContain('devicegate: the login was denied on the verification page (access_denied)')
    expectNoStackTrace(run.stderr())
  })

  it('says clearly when the code expires', async () => {
    // Without DPoP: moving the server's clock an hour on would (rightly) fail the proofs' `iat`.
    const run = cli(['login', '--issuer', ts.url, '--client-id', 'cli', '--store', 'file', '--no-dpop'], home)
    await shownCode(run)
    ts.clock.advance(3600) // the server's clock: the code is now past its lifetime
    expect(await run.exited).toBe(1)
    expect(run.stderr()).toContain('devicegate: the code expired before it was approved; run `devicegate login` again (expired_token)')
    expectNoStackTrace(run.stderr())
  })

  it('says clearly when the client is unknown or the server is down', async () => {
    const wrong = await cliDone(['login', '--issuer', ts.url, '--client-id', 'no-such-client', '--store', 'file'], home)
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/devicegate: .* does not accept client "no-such-client" \(invalid_client/)
    expectNoStackTrace(wrong.stderr)
    const port = await new Promise<number>((resolve) => {
      const s = createNetServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    const down = await cliDone(['login', '--issuer', `http://127.0.0.1:${port}`, '--client-id', 'cli', '--store', 'file'], home)
    expect(down.code).toBe(1)
    expect(down.stderr).toContain(`devicegate: cannot reach http://127.0.0.1:${port} (connection refused); is the issuer URL right and the server running?`)
    expectNoStackTrace(down.stderr)
  })
})

describe.runIf(HAVE_CHROMIUM)('CLI login against oidc-provider (an independent RFC 8628 server)', () => {
  let server: Server | undefined
  let issuer: string
  let home: string
  const RS_SECRET = 'rs-secret-for-oidc-provider-0123456789'
  const quiet: Array<[keyof Console, Console[keyof Console]]> = []

  beforeAll(async () => {
    // oidc-provider prints development notices through console; keep the test output readable.
    for (const name of ['log', 'warn', 'info'] as const) {
      const original = console[name]
      quiet.push([name, original])
      console[name] = ((...args: unknown[]) => {
        if (typeof args[0] === 'string' && args[0].startsWith('oidc-provider ')) return
        ;(original as (...a: unknown[]) => void).apply(console, args)
      }) as never
    }
    const port = await new Promise<number>((resolve) => {
      const s = createNetServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    issuer = `http://127.0.0.1:${port}`
    const Provider = await loadOidcProvider()
    const provider = new Provider(issuer, {
      clients: [
        { client_id: 'cli', token_endpoint_auth_method: 'none', grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'], response_types: [], redirect_uris: [] },
        { client_id: 'rs', client_secret: RS_SECRET, grant_types: [], response_types: [], redirect_uris: [] },
      ],
      features: { deviceFlow: { enabled: true }, revocation: { enabled: true }, introspection: { enabled: true } },
      scopes: ['openid', 'offline_access'],
    })
    server = provider.listen(port, '127.0.0.1')
    home = mkdtempSync(join(tmpdir(), 'devicegate-cli-oidc-'))
  })
  afterAll(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()))
    rmSync(home, { recursive: true, force: true })
    for (const [name, original] of quiet) (console as unknown as Record<string, unknown>)[name] = original
  })

  async function introspect(token: string) {
    const res = await postForm(`${issuer}/token/introspection`, { token }, { authorization: basic('rs', RS_SECRET) })
    expect(res.status).toBe(200)
    return res.json as Record<string, unknown>
  }

  /** oidc-provider's own pages: code entry, confirmation, dev login, consent, success. */
  async function approveInOidcProvider(shown: { userCode: string; verificationUri: string }) {
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      await page.goto(shown.verificationUri)
      await page.locator('input[name="user_code"]').fill(shown.userCode)
      await page.getByRole('button', { name: 'Continue' }).click()
      await expect.poll(() => page.title()).toBe('Device Login Confirmation')
      await page.getByRole('button', { name: 'Continue' }).first().click()
      await page.getByPlaceholder('Enter any login').fill('alice')
      await page.getByPlaceholder('and password').fill('any password')
      await page.getByRole('button', { name: 'Sign-in' }).click()
      await page.getByRole('button', { name: 'Continue' }).click() // consent: offline access
      await expect.poll(() => page.title()).toBe('Sign-in Success')
    } finally {
      await context.close()
    }
  }

  it('logs in (discovered via openid-configuration, DPoP-bound), whoami via userinfo, logout revokes', async () => {
    const run = cli(['login', '--issuer', issuer, '--client-id', 'cli', '--scope', 'openid offline_access', '--store', 'file'], home)
    const shown = await shownCode(run)
    expect(shown.verificationUri).toBe(`${issuer}/device`)
    await approveInOidcProvider(shown)
    expect(await run.exited).toBe(0)
    expect(run.stderr()).toContain(`Logged in to ${issuer}.`)
    expect(run.stderr()).toMatch(/Tokens: DPoP \(bound to this installation's key/)
    expect(run.stdout()).toBe('')

    const dir = join(home, 'devicegate')
    const grant: StoredGrant = (await readStoredGrant(new FileTokenStore({ dir }), ACCOUNT))!
    expect(grant.refreshToken).toBeDefined()
    expect(await introspect(grant.accessToken)).toMatchObject({ active: true, sub: 'alice' })

    const who = await cliDone(['whoami', '--store', 'file'], home)
    expect(who.code).toBe(0)
    expect(who.stdout).toMatch(/^subject:\s+alice\s+\(from the server's userinfo endpoint\)$/m)

    const out = await cliDone(['logout', '--store', 'file'], home)
    expect(out.stderr).toContain(`Revoked at ${issuer} and deleted from file.`)
    expect(out.code).toBe(0)
    expect(await introspect(grant.refreshToken!)).toMatchObject({ active: false })
    expect(await introspect(grant.accessToken)).toMatchObject({ active: false })
    expect(await readStoredGrant(new FileTokenStore({ dir }), ACCOUNT)).toBeUndefined()
  })
})
