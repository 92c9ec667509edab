/**
 * The outbox survives a crash (issue 13): with a Shared Signals receiver down, grant revocations
 * leave undelivered events; the server is killed with SIGKILL; the receiver comes up and the
 * server restarts — and the receiver gets every SET, in order, each verified with jose, and any
 * SET sent twice carries the same `jti`. SQLite file, and PostgreSQL when configured.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureBuilt } from './support/cli.js'
import { FIXTURE, postForm } from './support/server.js'
import { clientToken, deviceLogin, json, RECEIVER_SECRET, startPushReceiver } from './support/signals.js'
import { storeAdapters } from './support/store-contract.js'

const ROOT = resolve(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin/devicegate.js')
const dirs: string[] = []

beforeAll(() => {
  ensureBuilt()
}, 120_000)
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => r(p))
    })
  })
}

async function serve(configPath: string, url: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--config', configPath], { env: { ...process.env, DG_ALICE_PW: FIXTURE.password }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
  const end = Date.now() + 20_000
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return child
    } catch {
      // not up yet
    }
    if (child.exitCode !== null || Date.now() > end) throw new Error(`server did not start: ${err}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

for (const { adapter: database, run } of storeAdapters()) {
  describe.skipIf(!run)(`${database.name}: kill -9 with undelivered events`, () => {
    beforeAll(() => database.setup())
    afterAll(() => database.teardown())

    it('delivers every event after the restart, in order, duplicates only with the same jti', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'devicegate-restart-'))
      dirs.push(dir)
      const port = await freePort()
      const receiverPort = await freePort()
      const url = `http://127.0.0.1:${port}`
      const storage = database.name === 'sqlite' ? `sqlite:${join(dir, 'devicegate.db')}` : database.url()
      const secretHash = await hash(RECEIVER_SECRET)
      const config = {
        issuer: url,
        listen: { host: '127.0.0.1', port },
        data_dir: dir,
        storage: { url: storage },
        log_level: 'silent',
        scopes: { read: 'Read', offline_access: 'Stay signed in' },
        clients: [
          { client_id: 'cli', type: 'public', scopes: ['read', 'offline_access'], refresh_token_issuance: 'always' },
          { client_id: 'receiver', type: 'confidential', client_secret_hash: secretHash, grant_types: ['client_credentials'], scopes: ['ssf'] },
        ],
        users: [{ username: 'alice', password_env: 'DG_ALICE_PW' }],
        signals: { allow_private_endpoints: true, ssf: { allow_http_push: true }, delivery: { base_backoff_ms: 50, max_backoff_ms: 200, poll_interval_ms: 50, timeout_ms: 1000 } },
      }
      const configPath = join(dir, 'devicegate.json')
      writeFileSync(configPath, JSON.stringify(config))

      let server = await serve(configPath, url)
      const token = await clientToken(url, 'receiver')
      const stream = await json(`${url}/ssf/stream`, 'POST', token, { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `http://127.0.0.1:${receiverPort}/events` } })
      expect(stream.status).toBe(201)
      // The receiver is down: nothing listens on its port.
      for (let i = 0; i < 5; i++) {
        const tokens = await deviceLogin(url)
        expect((await postForm(`${url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })).status).toBe(200)
      }
      await new Promise((r) => setTimeout(r, 300)) // a few failed pushes
      server.kill('SIGKILL')
      await new Promise((r) => server.once('exit', r))

      const receiver = await startPushReceiver({ transmitter: url, issuer: url, audience: 'receiver', port: receiverPort })
      try {
        server = await serve(configPath, url)
        const sets = await receiver.waitFor(5, 20_000)
        await new Promise((r) => setTimeout(r, 300))
        expect(receiver.refused).toEqual([])
        const sessions = receiver.sets.map((s) => (s.sub_id as { session: { id: string } }).session.id)
        const distinct = [...new Set(sessions)]
        expect(distinct).toHaveLength(5)
        // In order: first appearances follow the revocations.
        expect(sets.slice(0, 5).map((s) => (s.sub_id as { session: { id: string } }).session.id)).toEqual(distinct)
        // A SET sent again (at least once) carries the jti it had.
        for (const id of distinct) expect(new Set(receiver.sets.filter((s) => (s.sub_id as { session: { id: string } }).session.id === id).map((s) => s.jti)).size).toBe(1)
      } finally {
        server.kill('SIGKILL')
        await receiver.close()
      }
    }, 90_000)
  })
}
