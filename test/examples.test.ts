/**
 * The examples compile and run as their headers say, against a real server.
 *
 * `npm run build:examples`, then `devicegate serve --dev` (the built CLI), the resource API
 * example with the documented environment (`DEVICEGATE_ISSUER`, `API_AUDIENCE`,
 * `RS_CLIENT_ID=demo-api`, `RS_CLIENT_SECRET`), and the client example logging in as the demo
 * user through the verification pages (scripted over HTTP) and calling the API: it prints 200 and
 * exits 0. After a central revocation the API refuses the token (revocation feed) and the client
 * example exits 1, not 0.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEV_EXAMPLE_API_RESOURCE } from '../src/config/load.js'
import { PageSession } from './support/server.js'
import { BIN, ensureBuilt, ROOT, runCli } from './support/cli.js'

const PASSWORD = 'example demo password 42'
const SECRET = 'example-demo-api-secret-0123456789'
const dir = mkdtempSync(join(tmpdir(), 'devicegate-examples-'))
const children: ChildProcess[] = []

interface Proc {
  child: ChildProcess
  out: () => string
  err: () => string
  exited: Promise<number>
}

function start(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, args, { cwd: dir, env: { ...process.env, NO_COLOR: '1', XDG_CONFIG_HOME: join(dir, 'config'), ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)))
  return { child, out: () => out, err: () => err, exited }
}

async function waitFor<T>(what: string, p: Proc, read: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = read()
    if (v !== undefined) return v
    if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`${what} did not appear:\n${p.out()}\n${p.err()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

let issuer = ''
let apiUrl = ''

beforeAll(async () => {
  ensureBuilt()
  const build = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.examples.json')], { encoding: 'utf8' })
  if (build.status !== 0) throw new Error(`npm run build:examples failed:\n${build.stdout}${build.stderr}`)
  const env = { DEVICEGATE_DEMO_PASSWORD: PASSWORD, DEVICEGATE_DEMO_CLIENT_SECRET: SECRET }
  const server = start([BIN, 'serve', '--dev', '--host', '127.0.0.1', '--port', '0'], env)
  issuer = await waitFor('the dev banner', server, () => /issuer: +(\S+)/.exec(server.out())?.[1])
  const port = await freePort()
  const api = start([join(ROOT, 'build/examples/resource-api.js')], {
    DEVICEGATE_ISSUER: issuer,
    API_AUDIENCE: DEV_EXAMPLE_API_RESOURCE,
    PORT: String(port),
    RS_CLIENT_ID: 'demo-api',
    RS_CLIENT_SECRET: SECRET,
  })
  apiUrl = await waitFor('the example API', api, () => (/example API on (\S+)/.exec(api.out()) ? `http://127.0.0.1:${port}` : undefined))
}, 180_000)

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('close', r)))))
  rmSync(dir, { recursive: true, force: true })
})

/** Runs the client example; approves its code as the demo user when it shows one. */
async function runClientExample(): Promise<{ code: number; out: string; err: string }> {
  const client = start([join(ROOT, 'build/examples/client-login.js'), issuer, 'demo-cli', `${apiUrl}/me`, DEV_EXAMPLE_API_RESOURCE], { DEVICEGATE_STORE: 'file' })
  const shown = await Promise.race([
    waitFor('a user code', client, () => /code:\s+([A-Z]{4}-[A-Z]{4})/.exec(client.err())?.[1]).catch(() => undefined),
    client.exited.then(() => undefined),
  ])
  if (shown !== undefined) {
    const page = new PageSession(issuer)
    await page.signIn('demo', PASSWORD)
    expect(await page.decide(shown, 'approve')).toBe(200)
  }
  return { code: await client.exited, out: client.out(), err: client.err() }
}

describe('examples run as their headers say', () => {
  it('client-login calls resource-api with a token for its audience: 200, exit 0', async () => {
    const res = await runClientExample()
    expect(res.out).toMatch(/^200 \{"sub":"demo","client_id":"demo-cli"/)
    expect(res.code).toBe(0)
  }, 90_000)

  it('after a central revocation the API answers 401 and client-login exits 1', async () => {
    const revoke = runCli(['revoke', '--user', 'demo', '--dev'], { cwd: dir })
    expect(revoke.status).toBe(0)
    await new Promise((r) => setTimeout(r, 3000)) // the example polls the revocation feed every second
    const res = await runClientExample()
    expect(res.out).toMatch(/^401 /)
    expect(res.err).toContain('the API refused the request: HTTP 401')
    expect(res.code).toBe(1)
  }, 90_000)
})
