/**
 * Availability: what devicegate does when its database is not there.
 *
 * - At start-up: `devicegate serve` exits non-zero with one line naming the database (password
 *   hidden) and the reason, never a stack.
 * - At run time (PostgreSQL): a database that goes away — backends terminated, or a server that
 *   stops answering — yields 503 `temporarily_unavailable` with `Retry-After` within the
 *   configured timeouts, never a hang or a 500; and service resumes once the database is back.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer, Socket, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../src/config/load.js'
import { createLogger, createServer, type DevicegateServer } from '../src/server.js'
import { basic, FIXTURE, fixtureConfigFile, postForm } from './support/server.js'

const ROOT = resolve(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin', 'devicegate.js')
const PG_URL = process.env.DEVICEGATE_TEST_PG_URL

/** Runs `devicegate ARGS` to completion. */
function runCli(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stderr: string; stdout: string; ms: number }> {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first')
  const started = Date.now()
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, DATABASE_URL: '' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      fail(new Error(`devicegate ${args.join(' ')} still running after ${timeoutMs} ms; stderr: ${stderr}`))
    }, timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      done({ code, stderr, stdout, ms: Date.now() - started })
    })
  })
}

describe('start-up with an unreachable database', () => {
  let dir = ''
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'devicegate-avail-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('exits 1 with one line naming the database and the reason, no stack, password hidden', async () => {
    const file = join(dir, 'unreachable.yaml')
    writeFileSync(file, 'storage:\n  url: postgres://postgres:s3cret-pw@127.0.0.1:1/x\nlog_level: silent\n')
    const res = await runCli(['serve', '--config', file])
    expect(res.code).toBe(1)
    expect(res.stdout).toBe('')
    expect(res.stderr).toMatch(/^devicegate: database unavailable: postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/x: .*ECONNREFUSED.*\n$/)
    expect(res.stderr.split('\n').filter(Boolean)).toHaveLength(1)
    expect(res.stderr).not.toContain('s3cret-pw')
    expect(res.stderr).not.toMatch(/\n\s+at /)
  })

  it('exits 1 with one line when the host name does not resolve', async () => {
    const file = join(dir, 'unresolvable.yaml')
    writeFileSync(file, 'storage:\n  url: postgres://postgres@devicegate-db.invalid:5432/x\nlog_level: silent\n')
    const res = await runCli(['serve', '--config', file])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/^devicegate: database unavailable: postgres:\/\/postgres@devicegate-db\.invalid:5432\/x: .+\n$/)
  })

  it.skipIf(!PG_URL)('exits 1 with one line when the database or schema does not exist', async () => {
    const noDb = new URL(PG_URL!)
    noDb.pathname = `/devicegate_missing_${randomBytes(3).toString('hex')}`
    const file = join(dir, 'missing-db.yaml')
    writeFileSync(file, `storage:\n  url: ${noDb.toString()}\nlog_level: silent\n`)
    const res = await runCli(['serve', '--config', file])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/^devicegate: database unavailable: postgres:\/\/.*: database "devicegate_missing_\w+" does not exist\n$/)

    const noSchema = new URL(PG_URL!)
    noSchema.searchParams.set('options', '-c search_path=devicegate_missing_schema')
    writeFileSync(file, `storage:\n  url: ${noSchema.toString()}\nlog_level: silent\n`)
    const res2 = await runCli(['serve', '--config', file])
    expect(res2.code).toBe(1)
    expect(res2.stderr).toMatch(/^devicegate: database unavailable: .*search_path does not exist\n$/)
  })
})

/**
 * A TCP relay between devicegate and PostgreSQL that can stop answering: in `blackhole` mode it
 * accepts connections and swallows bytes both ways, like a partitioned network or a frozen host.
 */
class FlakyRelay {
  mode: 'pass' | 'blackhole' = 'pass'
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  constructor(readonly upstreamHost: string, readonly upstreamPort: number) {
    this.#server = createNetServer((down) => {
      this.#sockets.add(down)
      down.on('close', () => this.#sockets.delete(down))
      down.on('error', () => {})
      if (this.mode === 'blackhole') return // accept, never answer
      const up = new Socket()
      this.#sockets.add(up)
      up.on('error', () => down.destroy())
      down.on('close', () => up.destroy())
      up.on('close', () => down.destroy())
      up.connect(upstreamPort, upstreamHost)
      down.on('data', (chunk) => this.mode === 'pass' && up.write(chunk))
      up.on('data', (chunk) => this.mode === 'pass' && down.write(chunk))
    })
  }
  listen(): Promise<number> {
    return new Promise((done) => this.#server.listen(0, '127.0.0.1', () => done((this.#server.address() as { port: number }).port)))
  }
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise((done) => this.#server.close(done))
  }
}

if (!PG_URL) {
  console.warn('database availability tests at run time SKIPPED: set DEVICEGATE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)')
}

describe.skipIf(!PG_URL)('PostgreSQL going away at run time', () => {
  const schema = `dg_avail_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = () => new pg.Client({ connectionString: PG_URL })
  let relay: FlakyRelay
  let server: DevicegateServer
  let base = ''
  const logLines: string[] = []

  beforeAll(async () => {
    const c = admin()
    await c.connect()
    await c.query(`create schema ${schema}`)
    await c.end()
    const upstream = new URL(PG_URL!)
    relay = new FlakyRelay(upstream.hostname, Number(upstream.port || 5432))
    const relayPort = await relay.listen()
    const url = new URL(PG_URL!)
    url.hostname = '127.0.0.1'
    url.port = String(relayPort)
    url.searchParams.set('options', `-c search_path=${schema}`)
    url.searchParams.set('application_name', schema)
    const file = await fixtureConfigFile({ log_level: 'info' })
    const config = await resolveConfig(
      { ...file, storage: { url: url.toString(), pool_size: 4, connect_timeout_seconds: 1, query_timeout_seconds: 1 } },
      { host: '127.0.0.1', port: 0 },
    )
    const sink = new Writable({
      write(chunk, _enc, done) {
        logLines.push(String(chunk))
        done()
      },
    })
    server = await createServer(config, { logger: createLogger('info', sink) })
    await server.app.listen({ host: '127.0.0.1', port: 0 })
    base = `http://127.0.0.1:${(server.app.server.address() as { port: number }).port}`
  })
  afterAll(async () => {
    await server?.close()
    await relay?.close()
    const c = admin()
    await c.connect()
    await c.query(`drop schema if exists ${schema} cascade`)
    await c.end()
  })

  const requests = () => [
    () => postForm(`${base}/device_authorization`, { client_id: 'cli', scope: 'read' }),
    () => postForm(`${base}/token`, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: 'x'.repeat(43), client_id: 'cli' }),
    () => postForm(`${base}/introspect`, { token: 'dga_unknown' }, { authorization: basic('rs', FIXTURE.rsSecret) }),
    async () => {
      const res = await fetch(`${base}/healthz`)
      const text = await res.text()
      return { status: res.status, headers: res.headers, json: JSON.parse(text), text }
    },
  ]

  it('serves normally through the relay', async () => {
    const res = await postForm(`${base}/device_authorization`, { client_id: 'cli', scope: 'read' })
    expect(res.status).toBe(200)
  })

  it('answers 200 or 503 (never 500) after its backends are terminated, then recovers', async () => {
    const c = admin()
    await c.connect()
    const { rowCount } = await c.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [schema])
    await c.end()
    expect(rowCount).toBeGreaterThan(0)
    const results = await Promise.all(Array.from({ length: 8 }, () => postForm(`${base}/device_authorization`, { client_id: 'cli', scope: 'read' })))
    for (const r of results) {
      expect([200, 503]).toContain(r.status)
      if (r.status === 503) expect(r.json).toMatchObject({ error: 'temporarily_unavailable' })
    }
    expect((await postForm(`${base}/device_authorization`, { client_id: 'cli', scope: 'read' })).status).toBe(200)
  })

  it('answers 503 temporarily_unavailable with Retry-After within the timeouts when the server stops answering', async () => {
    // Warm the pool so that some requests hit connections that go silent mid-conversation.
    await Promise.all(Array.from({ length: 4 }, () => postForm(`${base}/device_authorization`, { client_id: 'cli', scope: 'read' })))
    relay.mode = 'blackhole'
    const started = Date.now()
    const results = await Promise.all([...requests(), ...requests()].map(async (send) => {
      const t0 = Date.now()
      const res = await send()
      return { ...res, ms: Date.now() - t0 }
    }))
    for (const r of results) {
      expect(r.status, r.text).toBe(503)
      expect(r.json).toMatchObject({ error: 'temporarily_unavailable' })
      expect(r.json.error_description).not.toMatch(/\bat\b.*\.js/)
      expect(r.headers.get('retry-after')).toBe('5')
      expect(r.headers.get('cache-control')).toBe('no-store')
      // query timeout 1 s (+1 s client side) or connect timeout 1 s; queued behind 4 connections.
      expect(r.ms).toBeLessThan(8_000)
    }
    expect(Date.now() - started).toBeLessThan(10_000)
    // Keys outlive an outage: the JWKS is still served from the last set read.
    const jwks = await fetch(`${base}/jwks`)
    expect(jwks.status).toBe(200)
    expect(((await jwks.json()) as { keys: unknown[] }).keys.length).toBeGreaterThan(0)
  })

  it('recovers once the server answers again: no connection is left stuck in the pool', async () => {
    relay.mode = 'pass'
    const statuses: number[] = []
    for (let i = 0; i < 10; i++) {
      const res = await postForm(`${base}/device_authorization`, { client_id: 'cli', scope: 'read' })
      statuses.push(res.status)
      if (res.status === 200) break
      await new Promise((r) => setTimeout(r, 300))
    }
    expect(statuses.at(-1)).toBe(200)
    // Every pooled connection works again (pool_size 4; 8 concurrent requests use them all).
    const results = await Promise.all(Array.from({ length: 8 }, () => postForm(`${base}/device_authorization`, { client_id: 'cli', scope: 'read' })))
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200))
  })

  it('logged the outage as store unavailable, never as an unhandled error', () => {
    const entries = logLines.map((l) => JSON.parse(l) as { msg?: string; level: number })
    expect(entries.some((e) => e.msg === 'store unavailable')).toBe(true)
    expect(entries.filter((e) => e.msg === 'unhandled error')).toEqual([])
  })
})
