/**
 * The `devicegate` command as a person runs it (built CLI, `node bin/devicegate.js`):
 * - `serve --dev` starts with no file, prints the banner and the generated demo password and
 *   client secret exactly once, or none of them when they come from the environment
 *   (`DEVICEGATE_DEMO_PASSWORD`, `DEVICEGATE_DEMO_CLIENT_SECRET`), and serves the dev issuer.
 * - `serve --config` with an invalid file stops start-up with a message naming the field.
 * - `keys rotate` adds a signing key and keeps the old one published (JWKS, RFC 7517).
 *
 * dist/ is rebuilt here when any source file is newer than it (`npm test` builds first anyway).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { connect } from 'node:net'
import { join } from 'node:path'
import { generate } from 'otplib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureBuilt } from './support/cli.js'
import { ConsoleClient } from './support/console.js'

const ROOT = join(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin/devicegate.js')
const dirs: string[] = []

beforeAll(() => {
  ensureBuilt()
}, 120_000)
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'devicegate-cli-'))
  dirs.push(d)
  return d
}

interface Proc {
  child: ChildProcess
  output: () => string
  exited: Promise<number>
}

function run(args: string[], env: Record<string, string | undefined> = {}): Proc {
  const fullEnv: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...env }
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete fullEnv[k]
  const child = spawn(process.execPath, [BIN, ...args], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()))
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)))
  return { child, output: () => out, exited }
}

/** Starts `serve --dev` on a free port and waits for the banner; returns the base URL. */
async function serveDev(env: Record<string, string | undefined>): Promise<{ proc: Proc; url: string }> {
  const proc = run(['serve', '--dev', '--port', '0', '--data-dir', tempDir()], env)
  const deadline = Date.now() + 30_000
  for (;;) {
    const m = /devicegate \(dev\) listening on (http:\/\/\S+)/.exec(proc.output())
    // The banner ends with the "then open …" line; wait for all of it.
    if (m && /then open /.test(proc.output())) return { proc, url: m[1]! }
    if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`serve --dev did not start:\n${proc.output()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function stop(proc: Proc): Promise<number> {
  proc.child.kill('SIGTERM')
  return proc.exited
}

const count = (haystack: string, needle: string) => haystack.split(needle).length - 1

describe('devicegate serve --dev', () => {
  it('prints the banner and the generated demo password and client secret exactly once, and serves the dev issuer', async () => {
    const { proc, url } = await serveDev({ DEVICEGATE_DEMO_PASSWORD: undefined, DEVICEGATE_DEMO_CLIENT_SECRET: undefined })
    try {
      const health = await fetch(`${url}/healthz`)
      expect(health.status).toBe(200)
      expect(await health.json()).toEqual({ status: 'ok' })
      // The issuer is the address actually listened on, also with --port 0.
      const metadata = (await (await fetch(`${url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>
      expect(metadata.issuer).toBe(url)
      expect(metadata.token_endpoint).toBe(`${url}/token`)
      // demo-cli is seeded: a public device client with read, write and offline_access.
      const device = await fetch(`${url}/device_authorization`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'client_id=demo-cli&scope=read%20write%20offline_access',
      })
      expect(device.status).toBe(200)
      expect(((await device.json()) as { verification_uri: string }).verification_uri).toBe(`${url}/device`)
    } finally {
      await stop(proc)
    }
    const out = proc.output()
    expect(out).toMatch(/--dev: demo client and user; not for production/)
    const password = /demo user:\s+demo\s+password: (\S+)/.exec(out)?.[1]
    const secret = /machine client: demo-api\s+secret: (\S+)/.exec(out)?.[1]
    expect(password, out).toMatch(/^\S{12,}$/)
    expect(secret, out).toMatch(/^\S{16,}$/)
    expect(count(out, password!)).toBe(1)
    expect(count(out, secret!)).toBe(1)
  })

  it('lets the demo user open the console as admin with the printed password and TOTP secret (only in --dev)', async () => {
    const { proc, url } = await serveDev({ DEVICEGATE_DEMO_PASSWORD: undefined, DEVICEGATE_DEMO_CLIENT_SECRET: undefined, DEVICEGATE_DEMO_TOTP_SECRET: undefined })
    try {
      const out = proc.output()
      expect(out).toContain(`console:        ${url}/console`)
      const password = /demo user:\s+demo\s+password: (\S+)/.exec(out)![1]!
      const totpSecret = /demo TOTP:\s+secret ([A-Z2-7]+)/.exec(out)?.[1]
      expect(totpSecret, out).toMatch(/^[A-Z2-7]{16,}$/)
      expect(count(out, totpSecret!)).toBe(1)
      const c = new ConsoleClient(url, url)
      await c.get('/console/sign-in')
      const res = await c.post('/console/sign-in', { username: 'demo', password, totp: await generate({ secret: totpSecret! }) })
      expect(res.status).toBe(303)
      const home = await c.get('/console')
      expect(home.status).toBe(200)
      expect(home.body).toContain('Signed in as <strong>Demo User</strong> (admin)')
    } finally {
      await stop(proc)
    }
  })

  it('prints no demo password or secret when they come from the environment, and uses them', async () => {
    const password = 'env-demo-password-4711'
    const secret = 'env-demo-client-secret-0815'
    const totpSecret = 'JBSWY3DPEHPK3PXPJBSWY3DP'
    const { proc, url } = await serveDev({ DEVICEGATE_DEMO_PASSWORD: password, DEVICEGATE_DEMO_CLIENT_SECRET: secret, DEVICEGATE_DEMO_TOTP_SECRET: totpSecret })
    try {
      // demo-api authenticates with the environment's secret (client_credentials, RFC 6749 §4.4).
      const token = await fetch(`${url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`demo-api:${secret}`).toString('base64')}` },
        body: 'grant_type=client_credentials',
      })
      expect(token.status).toBe(200)
    } finally {
      await stop(proc)
    }
    const out = proc.output()
    expect(out).toContain('(password from DEVICEGATE_DEMO_PASSWORD)')
    expect(out).toContain('(secret from DEVICEGATE_DEMO_CLIENT_SECRET)')
    expect(out).toContain('(secret from DEVICEGATE_DEMO_TOTP_SECRET)')
    expect(out).not.toContain(password)
    expect(out).not.toContain(secret)
    expect(out).not.toContain(totpSecret)
  })
})

describe('devicegate serve --config with an invalid file', () => {
  it('stops start-up with exit code 1 and a message naming each bad field', async () => {
    const dir = tempDir()
    const file = join(dir, 'devicegate.yaml')
    writeFileSync(
      file,
      [
        'listen: { port: 70000 }',
        'clients:',
        '  - client_id: app',
        '    access_token_ttl_seconds: "1h"',
        '    grant_types: [password]',
      ].join('\n'),
    )
    const proc = run(['serve', '--config', file, '--data-dir', dir])
    expect(await proc.exited).toBe(1)
    const out = proc.output()
    expect(out).toMatch(/^devicegate: invalid configuration:/m)
    expect(out).toMatch(/^listen\.port: .*got 70000$/m)
    expect(out).toMatch(/^clients\[0\]\.access_token_ttl_seconds: .*got "1h"$/m)
    expect(out).toMatch(/^clients\[0\]\.grant_types\[0\]: .*got "password"$/m)
    expect(out).not.toMatch(/\bat .*\.js:\d+/) // no stack trace
  })
})

describe('devicegate keys rotate (RFC 7517 JWKS)', () => {
  it('adds a new signing key and keeps the old one published until its tokens expire', async () => {
    const dir = tempDir()
    const file = join(dir, 'devicegate.yaml')
    writeFileSync(file, `data_dir: ${JSON.stringify(dir)}\nclients:\n  - client_id: app\n    scopes: [read]\n    access_token_ttl_seconds: 900\n`)
    const list = async () => {
      const p = run(['keys', 'list', '--config', file])
      expect(await p.exited, p.output()).toBe(0)
      return p.output().trim().split('\n')
    }
    const before = await list() // opening the store creates the first key
    expect(before).toHaveLength(1)
    expect(before[0]).toMatch(/^\S+ {2}ES256 {2}created \S+ {2}active$/)
    const oldKid = before[0]!.split(' ')[0]!

    const rotate = run(['keys', 'rotate', '--config', file])
    expect(await rotate.exited, rotate.output()).toBe(0)
    // Published at least as long as the longest access-token lifetime (900 s here).
    const publishSeconds = Number(/^new signing key \S+;.* previous keys stay published for (\d+) s/.exec(rotate.output())?.[1])
    expect(publishSeconds, rotate.output()).toBeGreaterThanOrEqual(900)

    const after = await list()
    expect(after).toHaveLength(2)
    const old = after.find((l) => l.startsWith(oldKid))!
    expect(old).toMatch(/retired, published until \S+$/)
    const until = Date.parse(/published until (\S+)$/.exec(old)![1]!)
    expect(Math.abs(until - (Date.now() + publishSeconds * 1000))).toBeLessThan(30_000)
    expect(after.filter((l) => l.endsWith('active'))).toHaveLength(1)

    // A server on that data directory publishes both keys.
    const serve = run(['serve', '--config', file, '--port', '0'])
    try {
      const deadline = Date.now() + 30_000
      let url: string | undefined
      while (url === undefined) {
        url = /"msg":"Server listening at (http:\/\/[^"]+)"/.exec(serve.output())?.[1]
        if (serve.child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start:\n${serve.output()}`)
        await new Promise((r) => setTimeout(r, 50))
      }
      const jwks = (await (await fetch(`${url}/jwks`)).json()) as { keys: { kid: string }[] }
      expect(jwks.keys.map((k) => k.kid).sort()).toEqual(after.map((l) => l.split(' ')[0]!).sort())
    } finally {
      await stop(serve)
    }
  })
})

describe('devicegate serve: SIGTERM with an upload in flight (issue 16 item 9)', () => {
  it('exits 0 within the documented shutdown deadline (listen.shutdown_deadline_seconds, 10 s)', { timeout: 60_000 }, async () => {
    const { proc, url } = await serveDev({ DEVICEGATE_DEMO_PASSWORD: 'demo-password-123', DEVICEGATE_DEMO_CLIENT_SECRET: 'demo-secret-0123456789' })
    const { port } = new URL(url)
    // A client that announced a 60,000-byte body and sends one byte every 200 ms.
    const socket = connect(Number(port), '127.0.0.1')
    socket.on('error', () => undefined)
    socket.write('POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n')
    const drip = setInterval(() => socket.writable && socket.write('a'), 200)
    try {
      await new Promise((r) => setTimeout(r, 500))
      const started = Date.now()
      proc.child.kill('SIGTERM')
      expect(await proc.exited).toBe(0)
      const tookMs = Date.now() - started
      // The 10 s deadline plus process exit, with room for a loaded machine; it used to take over 40 s.
      expect(tookMs).toBeLessThan(14_000)
      expect(proc.output()).toMatch(/shutdown deadline reached/)
    } finally {
      clearInterval(drip)
      socket.destroy()
    }
  })
})
