/**
 * Durability of a decision before its answer: an approval (or denial) answered 200 on the
 * verification page is committed (SQLite group commit, storage guard): a `kill -9` right after
 * the answer loses nothing, and the device's next poll after a restart gets its tokens
 * (RFC 8628 §3.4, §3.5).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BIN, ensureBuilt } from './support/cli.js'
import { PageSession, postForm } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const PASSWORD = 'durability demo password 0123'

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => resolve(p))
    })
  })
}

/** Starts `devicegate serve --dev` on `dir` and resolves once it answers. */
async function serve(dir: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--dev', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dir], {
    cwd: dir,
    env: { ...process.env, DATABASE_URL: '', DEVICEGATE_DEMO_PASSWORD: PASSWORD },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return child
    } catch {
      // not yet listening
    }
    if (child.exitCode !== null) throw new Error(`serve exited: ${stderr}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`serve did not answer: ${stderr}`)
}

function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}

describe('a decision answered 200 survives kill -9', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-durability-'))
  let child: ChildProcess | undefined
  beforeAll(() => ensureBuilt(), 120_000)
  afterAll(async () => {
    if (child && child.exitCode === null) await killHard(child)
    rmSync(dir, { recursive: true, force: true })
  })

  it('polls tokens after a restart for a code approved just before kill -9, and access_denied for a denied one (RFC 8628 §3.5)', async () => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    child = await serve(dir, port)
    const approved = await postForm(`${url}/device_authorization`, { client_id: 'demo-cli', scope: 'read' })
    const denied = await postForm(`${url}/device_authorization`, { client_id: 'demo-cli', scope: 'read' })
    expect(approved.status).toBe(200)
    const page = new PageSession(url)
    await page.signIn('demo', PASSWORD)
    expect(await page.decide(denied.json.user_code, 'deny')).toBe(200)
    expect(await page.decide(approved.json.user_code, 'approve')).toBe(200)
    await killHard(child)
    child = await serve(dir, port)
    const poll = (code: string) => postForm(`${url}/token`, { grant_type: DEVICE_GRANT, client_id: 'demo-cli', device_code: code })
    const tokens = await poll(approved.json.device_code)
    expect(tokens.status).toBe(200)
    expect(tokens.json.access_token).toEqual(expect.any(String))
    expect((await poll(denied.json.device_code)).json.error).toBe('access_denied')
  }, 60_000)
})
