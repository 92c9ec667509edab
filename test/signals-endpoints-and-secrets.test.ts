/**
 * Shared Signals push delivery hardening (issue 13 §2):
 * - the receiver's `authorization_header` (SSF 1.0 §8.1.1, RFC 8935 §2) is stored only sealed
 *   with the key encryption of signing keys, bound to its stream, never returned by a stream
 *   read nor logged; one left in plaintext by an older database is moved and sealed
 *   (migration 016_signals_secrets and the next start);
 * - push endpoints (and webhooks) must not point into devicegate's own network (SSRF guard):
 *   https and public addresses only, checked at create/update (400, nothing stored) and again
 *   at delivery (DNS rebinding), unless `signals.allow_private_endpoints`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Database from 'better-sqlite3'
import { decodeProtectedHeader } from 'jose'
import { Kysely, Migrator, SqliteDialect } from 'kysely'
import { afterAll, describe, expect, it } from 'vitest'
import { parseConfig } from '../src/config/load.js'
import { LocalKeyEncryption } from '../src/protocol/key-encryption.js'
import { createLogger } from '../src/server.js'
import { checkEndpointUrl, EndpointRefusedError, isPublicAddress, postToEndpoint } from '../src/signals/endpoint-guard.js'
import { openStreamSecret, sealStoredSecrets, sealStreamSecret } from '../src/signals/secrets.js'
import { openStore } from '../src/storage/index.js'
import { migrations } from '../src/storage/migrations.js'
import { startTestServer, type TestServer } from './support/server.js'
import { clientToken, json, signalsConfig, startPushReceiver } from './support/signals.js'

const PUSH = 'urn:ietf:rfc:8935'
const HEADER = 'Bearer receiver-inbound-secret-7f3a9c'
const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
const tempDb = () => {
  const d = mkdtempSync(join(tmpdir(), 'devicegate-ssf-secrets-'))
  dirs.push(d)
  return join(d, 'devicegate.db')
}
const rows = (file: string) => {
  const db = new Database(file, { readonly: true })
  try {
    return db.prepare("SELECT id, config, secret FROM signal_destinations WHERE kind = 'ssf_stream'").all() as { id: string; config: string; secret: string | null }[]
  } finally {
    db.close()
  }
}

describe('SSF push authorization_header at rest (SSF 1.0 §8.1.1, RFC 8935 §2)', () => {
  it('stores it sealed and bound to the stream, pushes it, never returns or logs it', async () => {
    const file = tempDb()
    let logs = ''
    const sink = new Writable({ write: (c, _e, done) => ((logs += String(c)), done()) })
    const t = await startTestServer({ config: await signalsConfig(), storageUrl: `sqlite:${file}`, logger: createLogger('debug', sink) })
    const receiver = await startPushReceiver({ transmitter: t.url, issuer: t.issuer, audience: 'receiver' })
    try {
      const as = await clientToken(t.url, 'receiver')
      const created = await json(`${t.url}/ssf/stream`, 'POST', as, { delivery: { method: PUSH, endpoint_url: receiver.url, authorization_header: HEADER } })
      expect(created.status).toBe(201)
      expect(JSON.stringify(created.body)).not.toContain('receiver-inbound-secret')
      const read = await json(`${t.url}/ssf/stream?stream_id=${created.body.stream_id}`, 'GET', as)
      expect(read.body.delivery).toEqual({ method: PUSH, endpoint_url: receiver.url })
      expect(JSON.stringify((await json(`${t.url}/ssf/stream`, 'GET', as)).body)).not.toContain('receiver-inbound-secret')

      const [row] = rows(file)
      expect(row!.config).not.toContain('receiver-inbound-secret')
      expect(row!.secret).not.toContain('receiver-inbound-secret')
      // A JWE (dir + A256GCM) naming the KEK and bound to this stream.
      expect(decodeProtectedHeader(row!.secret!)).toMatchObject({ alg: 'dir', enc: 'A256GCM', kid: expect.any(String), dg_sig_kid: `ssf_stream:${row!.id}:authorization_header` })

      // The first attempt fails (503): the retry is logged, without the header or the SET.
      receiver.failNext = 1
      const verify = await json(`${t.url}/ssf/verify`, 'POST', as, { stream_id: created.body.stream_id, state: 'x' })
      expect(verify.status).toBe(204)
      await receiver.waitFor(1)
      expect(receiver.authorizations).toEqual([HEADER, HEADER])
      expect(logs).toContain('signal push failed; will retry')
      const db = new Database(file, { readonly: true })
      const sets = (db.prepare('SELECT payload FROM signal_deliveries').all() as { payload: string }[]).map((r) => r.payload)
      db.close()
      expect(sets.length).toBeGreaterThan(0)
      for (const set of sets) expect(logs).not.toContain(set.split('.')[1]!)
      // A PATCH without the header keeps it; one that changes the endpoint drops it.
      await json(`${t.url}/ssf/stream`, 'PATCH', as, { stream_id: created.body.stream_id, description: 'kept' })
      expect(rows(file)[0]!.secret).toBe(row!.secret)
      const moved = await json(`${t.url}/ssf/stream`, 'PATCH', as, { stream_id: created.body.stream_id, delivery: { method: PUSH, endpoint_url: `${receiver.url}/v2` } })
      expect(moved.status).toBe(200)
      expect(rows(file)[0]!.secret).toBeNull()
      expect(logs).not.toContain('receiver-inbound-secret')
    } finally {
      await receiver.close()
      await t.close()
    }
  })

  it('does not open a sealed header moved to another stream', async () => {
    const kek = new LocalKeyEncryption(new Uint8Array(32).fill(7))
    const sealed = await sealStreamSecret(kek, 'stream-a', HEADER)
    expect(await openStreamSecret(kek, 'stream-a', sealed)).toBe(HEADER)
    await expect(openStreamSecret(kek, 'stream-b', sealed)).rejects.toMatchObject({ code: 'ERR_KEK_DECRYPT' })
  })

  it('re-seals push secrets under the current key-encryption key after a KEK rotation (keys rewrap)', async () => {
    const store = await openStore(`sqlite:${tempDb()}`)
    try {
      const oldKek = new LocalKeyEncryption(new Uint8Array(32).fill(1))
      const newKek = new LocalKeyEncryption(new Uint8Array(32).fill(2), [new Uint8Array(32).fill(1)])
      const now = 1_700_000_000
      await store.createSignalDestination({ id: 's1', kind: 'ssf_stream', owner: 'receiver', config: { method: 'push', endpointUrl: 'https://r.example/e' }, status: 'enabled', statusReason: null, createdAt: now, updatedAt: now, nextAttemptAtMs: 0, failingSince: null, secret: await sealStreamSecret(oldKek, 's1', HEADER) })
      expect(await sealStoredSecrets(store, newKek)).toEqual({ sealed: 0, unchanged: 1, failed: [] })
      expect(await sealStoredSecrets(store, newKek, { rewrap: true })).toEqual({ sealed: 1, unchanged: 0, failed: [] })
      const stored = (await store.findSignalDestination('s1'))!.secret!
      expect(newKek.keyIdOf(stored)).toBe(newKek.currentKeyId)
      expect(await openStreamSecret(new LocalKeyEncryption(new Uint8Array(32).fill(2)), 's1', stored)).toBe(HEADER)
    } finally {
      await store.close()
    }
  })

  it('moves a plaintext header of an older database out of the config (migration 016) and seals it on the next start', async () => {
    const file = tempDb()
    const receiver = await startPushReceiver({ transmitter: 'http://127.0.0.1:1', issuer: 'x', audience: 'receiver' })
    let t: TestServer = await startTestServer({ config: await signalsConfig(), storageUrl: `sqlite:${file}` })
    const as = await clientToken(t.url, 'receiver')
    const created = await json(`${t.url}/ssf/stream`, 'POST', as, { delivery: { method: PUSH, endpoint_url: receiver.url } })
    await t.close()
    // The database as it was before 016_signals_secrets (every later migration undone, 016's down
    // drops the secret column): the header in the stream's config JSON.
    const db = new Database(file)
    const kysely = new Kysely<any>({ dialect: new SqliteDialect({ database: db }) })
    const { error } = await new Migrator({ db: kysely, provider: { getMigrations: async () => migrations } }).migrateTo('015_signals_review_events')
    if (error !== undefined) throw error
    const config = JSON.parse((db.prepare('SELECT config FROM signal_destinations WHERE id = ?').get(created.body.stream_id) as { config: string }).config)
    db.prepare('UPDATE signal_destinations SET config = ? WHERE id = ?').run(JSON.stringify({ ...config, authorizationHeader: HEADER }), created.body.stream_id)
    await kysely.destroy()
    t = await startTestServer({ config: await signalsConfig(), storageUrl: `sqlite:${file}` })
    try {
      const [row] = rows(file)
      expect(row!.config).not.toContain('receiver-inbound-secret')
      expect(row!.secret).not.toContain('receiver-inbound-secret')
      expect(decodeProtectedHeader(row!.secret!).dg_sig_kid).toBe(`ssf_stream:${row!.id}:authorization_header`)
    } finally {
      await receiver.close()
      await t.close()
    }
  })
})

describe('push endpoints must not reach internal hosts (SSRF guard)', () => {
  it.each([
    ['127.0.0.1', false],
    ['10.1.2.3', false],
    ['172.16.0.1', false],
    ['192.168.1.1', false],
    ['169.254.169.254', false], // cloud metadata
    ['100.100.100.200', false], // carrier-grade NAT, Alibaba metadata
    ['0.0.0.0', false],
    ['224.0.0.1', false],
    ['::1', false],
    ['::', false],
    ['::ffff:127.0.0.1', false],
    ['::ffff:7f00:1', false],
    ['64:ff9b::a9fe:a9fe', false], // NAT64 of 169.254.169.254
    ['fd00:ec2::254', false], // AWS metadata (IPv6)
    ['fe80::1', false],
    ['2002:7f00:1::1', false], // 6to4
    ['8.8.8.8', true],
    ['93.184.215.14', true],
    ['2606:4700:4700::1111', true],
    ['::ffff:8.8.8.8', true],
  ])('classifies %s as public: %s', (ip, expected) => {
    expect(isPublicAddress(ip)).toBe(expected)
  })

  it('refuses a host with any internal address among those it resolves to, and one that does not resolve', async () => {
    const policy = { allowHttp: false, allowPrivate: false }
    await expect(checkEndpointUrl('https://mixed.example/x', policy, '"endpoint_url"', async () => [{ address: '93.184.215.14', family: 4 }, { address: '10.0.0.5', family: 4 }])).rejects.toBeInstanceOf(EndpointRefusedError)
    await expect(checkEndpointUrl('https://nowhere.example/x', policy, '"endpoint_url"', async () => { throw new Error('ENOTFOUND') })).rejects.toThrow('does not resolve')
    await expect(checkEndpointUrl('https://ok.example/x', policy, '"endpoint_url"', async () => [{ address: '93.184.215.14', family: 4 }])).resolves.toBeInstanceOf(URL)
    await expect(checkEndpointUrl('http://ok.example/x', policy, '"endpoint_url"', async () => [{ address: '93.184.215.14', family: 4 }])).rejects.toThrow('https')
  })

  it('re-checks at delivery: a name that now resolves to loopback (DNS rebinding) is refused before any byte is sent', async () => {
    let hits = 0
    const server = createServer((_req, res) => {
      hits++
      res.writeHead(204).end()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const port = (server.address() as { port: number }).port
    try {
      const rebound = async () => [{ address: '127.0.0.1', family: 4 }]
      const send = (url: string, allowPrivate: boolean) => postToEndpoint(url, { headers: {}, body: '{}', timeoutMs: 2000 }, { allowHttp: true, allowPrivate }, rebound)
      await expect(send(`http://receiver.example:${port}/events`, false)).rejects.toBeInstanceOf(EndpointRefusedError)
      await expect(send(`http://127.0.0.1:${port}/events`, false)).rejects.toBeInstanceOf(EndpointRefusedError)
      expect(hits).toBe(0)
      // The operator's switch lets it through (tests, --dev).
      expect((await send(`http://receiver.example:${port}/events`, true)).status).toBe(204)
      expect(hits).toBe(1)
    } finally {
      await new Promise((r) => server.close(r))
    }
  })

  it('answers stream create and update with an internal endpoint_url by 400 invalid_request and stores nothing', async () => {
    const t = await startTestServer({ config: await signalsConfig({ allow_private_endpoints: false }) })
    try {
      const as = await clientToken(t.url, 'receiver')
      for (const endpoint_url of ['http://127.0.0.1:9/events', 'https://169.254.169.254/latest/meta-data', 'https://[::1]/events', 'https://localhost/events', 'https://10.0.0.8/events', 'https://[::ffff:127.0.0.1]/x']) {
        const res = await json(`${t.url}/ssf/stream`, 'POST', as, { delivery: { method: PUSH, endpoint_url, authorization_header: HEADER } })
        expect(res.status, endpoint_url).toBe(400)
        expect(res.headers.get('content-type')).toMatch(/^application\/json/)
        expect(res.body).toMatchObject({ err: 'invalid_request', description: expect.stringMatching(/internal address|does not resolve/) })
      }
      expect((await json(`${t.url}/ssf/stream`, 'GET', as)).body).toEqual([])
      // A public address is accepted; moving it inward is refused and leaves it as it was.
      const created = await json(`${t.url}/ssf/stream`, 'POST', as, { delivery: { method: PUSH, endpoint_url: 'https://93.184.215.14/events' } })
      expect(created.status).toBe(201)
      const moved = await json(`${t.url}/ssf/stream`, 'PATCH', as, { stream_id: created.body.stream_id, delivery: { method: PUSH, endpoint_url: 'https://192.168.0.10/events' } })
      expect(moved.status).toBe(400)
      expect(moved.body).toMatchObject({ err: 'invalid_request' })
      expect((await json(`${t.url}/ssf/stream?stream_id=${created.body.stream_id}`, 'GET', as)).body.delivery.endpoint_url).toBe('https://93.184.215.14/events')
    } finally {
      await t.close()
    }
  })

  it('refuses a webhook on a private IP literal in the configuration unless the endpoint allows its private network', () => {
    const hook = { id: 'siem', url: 'https://10.0.0.7/hook', secret_env: 'X' }
    expect(() => parseConfig({ signals: { webhooks: [hook] } })).toThrow(/allow_private_network/)
    expect(() => parseConfig({ signals: { webhooks: [{ ...hook, allow_private_network: true }] } })).not.toThrow()
    expect(() => parseConfig({ signals: { webhooks: [{ ...hook, url: 'https://siem.example/hook' }] } })).not.toThrow()
  })
})

describe('signals secrets never reach the logs (pino redaction)', () => {
  it('redacts push authorization headers, webhook secrets and signatures, and SET contents wherever they are logged', () => {
    let out = ''
    const logger = createLogger('debug', new Writable({ write: (c, _e, done) => ((out += String(c)), done()) }))
    const set = 'eyJhbGciOiJFUzI1NiJ9.eyJzZXQtY29udGVudHMiOnRydWV9.c2lnbmF0dXJl'
    logger.info({ body: { delivery: { method: PUSH, authorization_header: HEADER } } }, 'stream request')
    logger.info({ authorization_header: HEADER, config: { authorizationHeader: HEADER }, headers: { authorization: HEADER, 'webhook-signature': 'v1,c2lnbmF0dXJlLXZhbHVl' } }, 'push')
    logger.info({ endpoint: { secret: 'whsec_c2VjcmV0LXdlYmhvb2sta2V5LWJ5dGVz' }, secret: 'whsec_c2VjcmV0LXdlYmhvb2sta2V5LWJ5dGVz' }, 'webhook')
    logger.info({ sets: { jti1: set }, delivery: { payload: set, set }, payload: set }, 'sets')
    logger.flush()
    for (const secret of ['receiver-inbound-secret', 'c2VjcmV0LXdlYmhvb2sta2V5LWJ5dGVz', 'c2lnbmF0dXJlLXZhbHVl', 'eyJzZXQtY29udGVudHMiOnRydWV9']) expect(out).not.toContain(secret)
    expect(out).toContain('[redacted]')
  })
})
