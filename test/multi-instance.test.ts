/**
 * Scale: several stateless instances on one PostgreSQL database behave as one server.
 *
 * Three real `devicegate serve` processes, started together on one fresh schema with the same
 * configuration file and the same issuer (the load balancer's URL), on different ports. Each
 * check sends its requests to named instances, as a load balancer without sticky sessions would.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { decodeProtectedHeader } from 'jose'
import pg from 'pg'
import { stringify as toYaml } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dpopKey, makeProof } from './support/dpop.js'
import { deleteRedisKeys, REDIS_URL } from './support/store-contract.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, PageSession, postForm } from './support/server.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
const ROOT = resolve(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin', 'devicegate.js')
/** The public URL every instance announces (a load balancer in front of them). */
const ISSUER = 'http://auth.devicegate.test'
/** Instances of one deployment share one key-encryption key for signing keys (issue 16 §2). */
const SHARED_KEK = randomBytes(32).toString('base64url')
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

if (!PG_URL) {
  console.warn(
    'multi-instance tests SKIPPED: set DEVICEGATE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run three devicegate processes on one PostgreSQL database',
  )
}

interface Instance {
  name: string
  url: string
  child: ChildProcess
  stderr: string
}

/** Ports that were free a moment ago (a server must know its port before it starts). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createNetServer>>((done) => {
      const s = createNetServer().listen(0, '127.0.0.1', () => done(s))
    })),
  )
  const ports = servers.map((s) => (s.address() as { port: number }).port)
  await Promise.all(servers.map((s) => new Promise((done) => s.close(done))))
  return ports
}

function startInstance(name: string, configFile: string, port: number): Instance {
  const child = spawn(process.execPath, [BIN, 'serve', '--config', configFile, '--host', '127.0.0.1', '--port', String(port), '--issuer', ISSUER], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: '', DEVICEGATE_KEK: SHARED_KEK },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const instance: Instance = { name, url: `http://127.0.0.1:${port}`, child, stderr: '' }
  child.stderr!.on('data', (d) => (instance.stderr += d))
  return instance
}

async function waitHealthy(instance: Instance, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (instance.child.exitCode !== null) throw new Error(`instance ${instance.name} exited ${instance.child.exitCode}: ${instance.stderr}`)
    try {
      if ((await fetch(`${instance.url}/healthz`)).status === 200) return
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`instance ${instance.name} not healthy after ${timeoutMs} ms: ${instance.stderr}`)
}

async function stopInstance(instance: Instance): Promise<void> {
  if (instance.child.exitCode !== null || instance.child.signalCode !== null) return
  const exited = new Promise((done) => instance.child.once('exit', done))
  instance.child.kill('SIGTERM')
  const timer = setTimeout(() => instance.child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

/** Where the instances keep poll times and DPoP jtis (README "Several instances"). */
const EPHEMERAL_BACKENDS = [
  { name: 'UNLOGGED tables', run: Boolean(PG_URL) },
  { name: 'Redis', run: Boolean(PG_URL && REDIS_URL) },
] as const
if (PG_URL && !REDIS_URL) console.warn('multi-instance tests on Redis SKIPPED: set DEVICEGATE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) too')

for (const backend of EPHEMERAL_BACKENDS)
describe.runIf(backend.run)(`several instances on one PostgreSQL database (ephemeral state: ${backend.name})`, () => {
  const schema = `dg_multi_${process.pid}_${randomBytes(4).toString('hex')}`
  const redisKeyPrefix = `dg_test:${schema}:`
  const admin = () => new pg.Client({ connectionString: PG_URL })
  let dir = ''
  let configFile = ''
  let A: Instance
  let B: Instance
  let C: Instance
  let all: Instance[] = []

  beforeAll(async () => {
    if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first')
    const c = admin()
    await c.connect()
    await c.query(`create schema ${schema}`)
    await c.end()
    const url = new URL(PG_URL!)
    url.searchParams.set('options', `-c search_path=${schema}`)
    dir = mkdtempSync(join(tmpdir(), 'devicegate-multi-'))
    configFile = join(dir, 'devicegate.yaml')
    const file = await fixtureConfigFile({
      log_level: 'warn',
      storage: {
        url: url.toString(),
        pool_size: 5,
        ...(backend.name === 'Redis' ? { ephemeral: { url: REDIS_URL, key_prefix: redisKeyPrefix } } : {}),
      },
      trusted_proxies: ['127.0.0.1'],
    })
    writeFileSync(configFile, toYaml(file))
    const [pa, pb, pc] = (await freePorts(3)) as [number, number, number]
    // Started together on an empty schema: they race to migrate and to create the first key.
    ;[A, B, C] = [startInstance('A', configFile, pa), startInstance('B', configFile, pb), startInstance('C', configFile, pc)]
    all = [A, B, C]
    await Promise.all(all.map((i) => waitHealthy(i)))
  }, 60_000)

  afterAll(async () => {
    await Promise.all(all.map(stopInstance))
    if (dir) rmSync(dir, { recursive: true, force: true })
    const c = admin()
    await c.connect()
    await c.query(`drop schema if exists ${schema} cascade`)
    await c.end()
    if (backend.name === 'Redis') await deleteRedisKeys(REDIS_URL!, redisKeyPrefix)
  })

  const authorize = async (on: Instance, scope = 'read offline_access') => {
    const res = await postForm(`${on.url}/device_authorization`, { client_id: 'cli', scope })
    expect(res.status).toBe(200)
    return res.json as { device_code: string; user_code: string; verification_uri: string }
  }
  const poll = (on: Instance, deviceCode: string) => postForm(`${on.url}/token`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: 'cli' })
  const refresh = (on: Instance, token: string) => postForm(`${on.url}/token`, { grant_type: 'refresh_token', refresh_token: token, client_id: 'cli' })
  const introspect = async (on: Instance, token: string) =>
    (await postForm(`${on.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json as { active: boolean }
  /** A device flow started on C, approved through A's pages, redeemed on B. */
  const loggedIn = async () => {
    const { device_code, user_code } = await authorize(C)
    await approveAs(A.url, user_code)
    const res = await poll(B, device_code)
    expect(res.status).toBe(200)
    return res.json as { access_token: string; refresh_token: string }
  }

  it('announces the same issuer and publishes the same JWKS on every instance, and all sign with one key', async () => {
    const metadata = await Promise.all(all.map(async (i) => (await (await fetch(`${i.url}/.well-known/oauth-authorization-server`)).json()) as { issuer: string }))
    expect(metadata.map((m) => m.issuer)).toEqual([ISSUER, ISSUER, ISSUER])
    const sets = await Promise.all(all.map(async (i) => (await (await fetch(`${i.url}/jwks`)).json()) as { keys: Array<{ kid: string }> }))
    const kids = sets.map((s) => s.keys.map((k) => k.kid).sort())
    expect(kids[1]).toEqual(kids[0])
    expect(kids[2]).toEqual(kids[0])
    const signedBy = await Promise.all(
      all.map(async (i) => {
        const res = await postForm(`${i.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret) })
        expect(res.status, res.text).toBe(200)
        return decodeProtectedHeader(res.json.access_token as string).kid
      }),
    )
    expect(new Set(signedBy).size).toBe(1)
    expect(kids[0]).toContain(signedBy[0])
  })

  it('redeems a device code approved through instance A exactly once under 50 concurrent polls spread over all instances', async () => {
    const { device_code, user_code, verification_uri } = await authorize(C)
    expect(verification_uri).toBe(`${ISSUER}/device`)
    await approveAs(A.url, user_code)
    const results = await Promise.all(Array.from({ length: 50 }, (_, n) => poll(all[n % 3]!, device_code)))
    const ok = results.filter((r) => r.status === 200)
    expect(ok).toHaveLength(1)
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(400)
      expect(['slow_down', 'invalid_grant']).toContain(r.json.error)
    }
    expect(await introspect(C, ok[0]!.json.access_token)).toMatchObject({ active: true, client_id: 'cli', sub: 'alice' })
  })

  it('answers slow_down on B to a poll made right after one on A, and keeps the grown interval (RFC 8628 §3.5)', async () => {
    const { device_code } = await authorize(C)
    expect((await poll(A, device_code)).json.error).toBe('authorization_pending')
    const tooFast = await poll(B, device_code)
    expect(tooFast.status).toBe(400)
    expect(tooFast.json).toMatchObject({ error: 'slow_down', error_description: expect.stringContaining('10 seconds') })
    expect((await poll(C, device_code)).json).toMatchObject({ error: 'slow_down', error_description: expect.stringContaining('15 seconds') })
  })

  it('answers with tokens on B, which had answered the code pending, once A\'s approval reaches it (notified on commit), and only once', async () => {
    const { device_code, user_code } = await authorize(C)
    expect((await poll(B, device_code)).json.error).toBe('authorization_pending')
    await approveAs(A.url, user_code)
    // B answers from its cache of pending codes until the notification of A's commit arrives
    // (milliseconds): the staleness window of src/storage/pending-grant-cache.ts.
    const deadline = Date.now() + 5_000
    let res = await poll(B, device_code)
    while (res.status !== 200 && Date.now() < deadline) {
      expect(res.status).toBe(400)
      expect(['slow_down', 'authorization_pending']).toContain(res.json.error)
      await new Promise((r) => setTimeout(r, 20))
      res = await poll(B, device_code)
    }
    expect(res.status, res.text).toBe(200)
    expect((await poll(C, device_code)).json.error).toBe('invalid_grant')
  })

  it('detects a refresh token rotated on A and replayed on B, and revokes the whole family', async () => {
    const first = await loggedIn()
    const rotated = await refresh(A, first.refresh_token)
    expect(rotated.status, rotated.text).toBe(200)
    expect(await introspect(C, rotated.json.access_token)).toMatchObject({ active: true })

    const replay = await refresh(B, first.refresh_token)
    expect(replay.status).toBe(400)
    expect(replay.json.error).toBe('invalid_grant')

    // RFC 9700 §4.14.2: the family is revoked, so the token A issued fails too, on any instance.
    const afterReplay = await refresh(A, rotated.json.refresh_token)
    expect(afterReplay.status).toBe(400)
    expect(afterReplay.json.error).toBe('invalid_grant')
    expect(await introspect(C, rotated.json.access_token)).toEqual({ active: false })
  })

  it('makes a revocation on B hold on A and C at once', async () => {
    const tokens = await loggedIn()
    expect(await introspect(A, tokens.access_token)).toMatchObject({ active: true })
    const revoked = await postForm(`${B.url}/revoke`, { token: tokens.access_token, client_id: 'cli' })
    expect(revoked.status).toBe(200)
    expect(await introspect(A, tokens.access_token)).toEqual({ active: false })
    expect(await introspect(C, tokens.access_token)).toEqual({ active: false })

    // Revoking the refresh token on B ends the family on A.
    expect(await introspect(A, tokens.refresh_token)).toMatchObject({ active: true })
    expect((await postForm(`${B.url}/revoke`, { token: tokens.refresh_token, client_id: 'cli' })).status).toBe(200)
    const res = await refresh(A, tokens.refresh_token)
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('invalid_grant')
  })

  it('refuses on B a DPoP proof already accepted on A (jti replay, RFC 9449 §11.1)', async () => {
    const key = await dpopKey('ES256')
    const proof = await makeProof(key, { htu: `${ISSUER}/token` })
    const send = (on: Instance) =>
      postForm(`${on.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret), dpop: proof })
    const first = await send(A)
    expect(first.status, first.text).toBe(200)
    expect(first.json.token_type).toBe('DPoP')
    const replay = await send(B)
    expect(replay.status).toBe(400)
    expect(replay.json.error).toBe('invalid_dpop_proof')
    expect((await send(C)).json.error).toBe('invalid_dpop_proof')
    // A fresh proof by the same key still works on B.
    const fresh = await makeProof(key, { htu: `${ISSUER}/token` })
    const ok = await postForm(`${B.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret), dpop: fresh })
    expect(ok.status, ok.text).toBe(200)
  })

  it('shares the code-entry rate limit (RFC 8628 §5.1): failures on A and B count together', async () => {
    // Signed-in entry is limited per account (default: 5 failures per window) and per session.
    const onA = new PageSession(A.url)
    await onA.signIn('mallory', FIXTURE.attackerPassword)
    for (let n = 0; n < 3; n++) expect((await onA.post('/device', { user_code: 'BBBB-BBBB' })).status).not.toBe(429)
    const onB = new PageSession(B.url)
    await onB.signIn('mallory', FIXTURE.attackerPassword)
    for (let n = 0; n < 2; n++) expect((await onB.post('/device', { user_code: 'BBBB-BBBB' })).status).not.toBe(429)
    // The sixth attempt, on C in a new session and with a real code, is blocked.
    const { user_code } = await authorize(A)
    const onC = new PageSession(C.url)
    await onC.signIn('mallory', FIXTURE.attackerPassword)
    const blocked = await onC.post('/device', { user_code })
    expect(blocked.status).toBe(429)
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0)
  })

  it('publishes a key made by `devicegate keys rotate` on every instance at once', async () => {
    const before = ((await (await fetch(`${A.url}/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)
    const rotated = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      const child = spawn(process.execPath, [BIN, 'keys', 'rotate', '--config', configFile], { cwd: ROOT, env: { ...process.env, DATABASE_URL: '', DEVICEGATE_KEK: SHARED_KEK } })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stderr.on('data', (d) => (stderr += d))
      child.on('exit', (code) => done({ code, stdout, stderr }))
    })
    expect(rotated.code, rotated.stderr).toBe(0)
    const kid = /new signing key (\S+);/.exec(rotated.stdout)?.[1]
    expect(kid).toBeDefined()
    for (const i of all) {
      const kids = ((await (await fetch(`${i.url}/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)
      expect(kids, i.name).toContain(kid)
      // Retired keys stay published while tokens they signed may still be in use.
      for (const old of before) expect(kids, i.name).toContain(old)
    }
  })
})
