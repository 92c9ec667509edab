/**
 * Probes of the hot-path changes against a real server: the fast path answers pipelined
 * requests (with fastify-routed ones between them) in order, each with its own answer and one
 * access line, and survives clients that leave; shared `authorization_pending`/`slow_down`
 * answers carry no header of another request and name each code's own interval (RFC 8628 §3.5,
 * RFC 9449 §8); the verified-secret cache and Basic credential decoding (RFC 6749 §2.3.1).
 */
import { connect } from 'node:net'
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../src/server.js'
import { dpopKey, makeProof } from './support/dpop.js'
import { parseConfig } from '../src/config/load.js'
import { basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

/** Writes `text` in one write on one connection; resolves with every byte received until `count` responses are in or the socket closes. */
function pipelined(port: number, text: string, count: number): Promise<{ status: number; body: string; headers: Record<string, string> }[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let buf = ''
    const out: { status: number; body: string; headers: Record<string, string> }[] = []
    const parse = () => {
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const [statusLine = '', ...lines] = buf.slice(0, end).split('\r\n')
        const headers: Record<string, string> = {}
        for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim()
        const length = Number(headers['content-length'] ?? 0)
        if (buf.length - end - 4 < length) return
        out.push({ status: Number(statusLine.split(' ')[1]), headers, body: buf.slice(end + 4, end + 4 + length) })
        buf = buf.slice(end + 4 + length)
        if (out.length === count) {
          socket.destroy()
          resolve(out)
          return
        }
      }
    }
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      parse()
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(out))
    socket.write(text)
  })
}

function form(path: string, body: string, extra = ''): string {
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`
}

describe('fast path and shared OAuth answers under pipelining and concurrency', () => {
  let t: TestServer
  const lines: Record<string, unknown>[] = []
  beforeAll(async () => {
    const logger = createLogger('info', new Writable({ write: (chunk, _e, done) => (lines.push(...String(chunk).split('\n').filter(Boolean).map((l) => JSON.parse(l))), done()) }))
    t = await startTestServer({ logger })
  })
  afterAll(() => t?.close())

  it('answers three pipelined token requests on one socket each with its own answer and access line, in order (RFC 9112 §9.3.2)', async () => {
    const da = await postForm(`${t.url}/device_authorization`, { client_id: 'cli' })
    expect(da.status).toBe(200)
    const port = Number(new URL(t.url).port)
    lines.length = 0
    const text =
      form('/token', 'grant_type=client_credentials&scope=read', `Authorization: ${basic('conf', FIXTURE.confSecret)}\r\n`) +
      form('/token', 'grant_type=nope&client_id=cli') +
      form('/token', `grant_type=${encodeURIComponent(DEVICE_GRANT)}&client_id=cli&device_code=${da.json.device_code}`)
    const answers = await pipelined(port, text, 3)
    expect(answers.map((a) => a.status)).toEqual([200, 400, 400])
    expect(JSON.parse(answers[0]!.body).token_type).toBeDefined()
    expect(JSON.parse(answers[1]!.body).error).toBe('unsupported_grant_type')
    expect(JSON.parse(answers[2]!.body)).toEqual({ error: 'authorization_pending', error_description: 'the user has not yet approved the request' })
    await new Promise((r) => setTimeout(r, 50))
    const access = lines.filter((l) => l.msg === 'request')
    expect(access.map((l) => l.status)).toEqual([200, 400, 400])
    expect(new Set(access.map((l) => l.reqId)).size).toBe(3)
  })

  it('answers pipelined requests in order when a slow fast-path answer precedes fastify ones (RFC 9112 §9.3.2)', async () => {
    const port = Number(new URL(t.url).port)
    const chunked = 'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n17\r\ngrant_type=nope&client_\r\n6\r\nid=cli\r\n0\r\n\r\n'
    const text =
      form('/token', 'grant_type=client_credentials', `Authorization: ${basic('conf', 'a-wrong-secret')}\r\n`) +
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' +
      chunked +
      form('/token', 'grant_type=client_credentials&scope=read', `Authorization: ${basic('conf', FIXTURE.confSecret)}\r\n`)
    const answers = await pipelined(port, text, 4)
    expect(answers.map((a) => a.status)).toEqual([401, 200, 400, 200])
    expect(JSON.parse(answers[0]!.body).error).toBe('invalid_client')
    expect(answers[0]!.headers['www-authenticate']).toBe('Basic realm="devicegate", charset="UTF-8"')
    expect(JSON.parse(answers[1]!.body)).toEqual({ status: 'ok' })
    expect(JSON.parse(answers[2]!.body).error).toBe('unsupported_grant_type')
    expect(JSON.parse(answers[3]!.body).access_token).toEqual(expect.any(String))
  })

  it('answers a malformed request pipelined behind a slow one after that one, then closes (RFC 9112 §9.3.2)', async () => {
    const port = Number(new URL(t.url).port)
    // The first answer waits for a secret check; the second request's chunk size is not hex.
    const text =
      form('/token', 'grant_type=client_credentials', `Authorization: ${basic('conf', 'a-wrong-secret')}\r\n`) +
      'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n'
    const answers = await pipelined(port, text, 2)
    expect(answers.map((a) => a.status)).toEqual([401, 400])
    expect(JSON.parse(answers[0]!.body).error).toBe('invalid_client')
    expect(JSON.parse(answers[1]!.body)).toEqual({ error: 'invalid_request', error_description: 'malformed request' })
    expect(answers[1]!.headers.connection).toBe('close')
  })

  it('answers a request whose own chunked body is malformed with 400 at once (RFC 9112 §7.1)', async () => {
    const port = Number(new URL(t.url).port)
    const text = 'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n'
    const started = Date.now()
    const answers = await pipelined(port, text, 1)
    expect(answers.map((a) => a.status)).toEqual([400])
    expect(JSON.parse(answers[0]!.body).error).toBe('invalid_request')
    expect(Date.now() - started).toBeLessThan(2000)
  })

  it('answers a request after one whose client left mid-body, on a new connection', async () => {
    const port = Number(new URL(t.url).port)
    await new Promise<void>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.write(`POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=`)
        setTimeout(() => {
          s.destroy()
          resolve()
        }, 30)
      })
    })
    const [a] = await pipelined(port, form('/token', 'grant_type=nope&client_id=cli'), 1)
    expect(a!.status).toBe(400)
    expect(JSON.parse(a!.body).error).toBe('unsupported_grant_type')
  })

  it('logs each request at most once when clients leave before the answer, and answers the next one', async () => {
    const port = Number(new URL(t.url).port)
    lines.length = 0
    // Full requests whose answers need an argon2 verification (a wrong secret), each client gone at once.
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        new Promise<void>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.write(form('/token', 'grant_type=client_credentials', `Authorization: ${basic('conf', `wrong-${i}`)}\r\n`))
            setImmediate(() => {
              s.destroy()
              resolve()
            })
          })
        }),
      ),
    )
    await new Promise((r) => setTimeout(r, 500))
    const [a] = await pipelined(port, form('/token', 'grant_type=nope&client_id=cli'), 1)
    expect(a!.status).toBe(400)
    await new Promise((r) => setTimeout(r, 50))
    const ids = lines.filter((l) => l.msg === 'request').map((l) => l.reqId)
    expect(new Set(ids).size).toBe(ids.length)
    expect(lines.filter((l) => l.msg === 'request' && l.status === 400)).toHaveLength(1)
  })

  it('names each code its own grown interval in concurrent slow_down answers (RFC 8628 §3.5)', async () => {
    const codes = await Promise.all(Array.from({ length: 4 }, () => postForm(`${t.url}/device_authorization`, { client_id: 'cli' })))
    const poll = (code: string) => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, client_id: 'cli', device_code: code })
    // code i gets i slow_downs first: intervals 5 + 5i
    for (let i = 0; i < codes.length; i++) {
      await poll(codes[i]!.json.device_code)
      for (let k = 0; k < i; k++) await poll(codes[i]!.json.device_code)
    }
    const answers = await Promise.all(codes.map((c) => poll(c.json.device_code)))
    expect(answers.map((a) => a.json.error_description)).toEqual([10, 15, 20, 25].map((s) => `poll no more than once every ${s} seconds`))
    expect(answers.every((a) => a.headers.get('www-authenticate') === null)).toBe(true)
  })
})

describe('verified-secret cache keyed by the digest (RFC 6749 §2.3.1)', () => {
  it('refuses a secret verified for one client when another client or a rotated hash presents it', async () => {
    const { hash } = await import('@node-rs/argon2')
    const { SecretVerifier } = await import('../src/protocol/clients.js')
    const shared = 'shared-secret-0123456789'
    const [h1, h2, h3] = await Promise.all([hash(shared), hash(shared), hash('rotated-secret-0123456789')])
    const v = new SecretVerifier(h1)
    const client = (id: string, secretHash: string) => ({ id, secretHash }) as never
    expect(await v.verify(client('a', h1), shared)).toBe(true)
    expect(await v.verify(client('b', h2), shared)).toBe(true)
    expect(await v.verify(client('a', h1), shared)).toBe(true)
    // a's secret rotated: the old one no longer matches its new hash
    expect(await v.verify(client('a', h3), shared)).toBe(false)
    expect(await v.verify(client('a', h3), 'rotated-secret-0123456789')).toBe(true)
    // b with a's rotated secret: refused though cached for a
    expect(await v.verify(client('b', h2), 'rotated-secret-0123456789')).toBe(false)
    expect(await v.verify(undefined, shared)).toBe(false)
  })
})

describe('Basic credentials form-encoded or not (RFC 6749 §2.3.1)', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer()
  })
  afterAll(() => t?.close())
  const cc = (authorization: string) => postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization })
  const b64 = (s: string) => 'Basic ' + Buffer.from(s).toString('base64')

  it('authenticates a client whose id and secret halves are percent-encoded, and the same unencoded', async () => {
    expect((await cc(b64(`conf:${FIXTURE.confSecret}`))).status).toBe(200)
    expect((await cc(b64(`%63onf:${encodeURIComponent(FIXTURE.confSecret).replace(/-/g, '%2D')}`))).status).toBe(200)
    expect((await cc(b64(`%63onf:${FIXTURE.confSecret}`))).status).toBe(200)
  })

  it('refuses a + that form-decodes to a space, and answers a malformed escape with a 4xx', async () => {
    expect((await cc(b64(`conf+:${FIXTURE.confSecret}`))).json.error).toBe('invalid_client')
    const bad = await cc(b64(`conf:%zz${FIXTURE.confSecret}`))
    expect(bad.status).toBeGreaterThanOrEqual(400)
    expect(bad.status).toBeLessThan(500)
    const bad2 = await cc(b64(`%E0%A4%A:${FIXTURE.confSecret}`))
    expect(bad2.status).toBeLessThan(500)
  })
})

describe('shared pending answers with server DPoP nonces (RFC 9449 §8, RFC 8628 §3.5)', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await fixtureConfigFile({ dpop: { require_nonce: true } }) })
  })
  afterAll(() => t?.close())

  it('answers each pending poll with its own DPoP-Nonce and no header left by an earlier answer', async () => {
    const key = await dpopKey()
    const a = await postForm(`${t.url}/device_authorization`, { client_id: 'cli' })
    const b = await postForm(`${t.url}/device_authorization`, { client_id: 'cli' })
    const poll = (code: string, dpop?: string) => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, client_id: 'cli', device_code: code }, dpop ? { DPoP: dpop } : {})
    const refused = await poll(a.json.device_code, await makeProof(key, { htu: `${t.url}/token`, now: t.clock.nowSeconds() }))
    expect(refused.json.error).toBe('use_dpop_nonce')
    const nonce = refused.headers.get('dpop-nonce')!
    const answers = await Promise.all([poll(b.json.device_code), poll(a.json.device_code, await makeProof(key, { htu: `${t.url}/token`, now: t.clock.nowSeconds(), nonce }))])
    for (const res of answers) {
      expect(res.status).toBe(400)
      expect(res.json).toEqual({ error: 'authorization_pending', error_description: 'the user has not yet approved the request' })
      expect(res.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(res.headers.get('www-authenticate')).toBeNull()
      expect(res.headers.get('cache-control')).toBe('no-store')
    }
    const plain = await poll(b.json.device_code)
    expect(plain.json.error).toBe('slow_down')
    expect(plain.headers.get('www-authenticate')).toBeNull()
  })
})

describe('shared slow_down answers across clients with different intervals (RFC 8628 §3.5)', () => {
  let t: TestServer
  beforeAll(async () => {
    const base = await fixtureConfigFile()
    const seven = { client_id: 'seven-cli', name: 'Seven CLI', type: 'public', grant_types: [DEVICE_GRANT], scopes: ['read'], poll_interval_seconds: 7 }
    t = await startTestServer({ config: parseConfig({ ...base, clients: [...base.clients, seven] }) })
  })
  afterAll(() => t?.close())

  it('names each client its own grown interval when both slow down at once', async () => {
    const start = (client: string) => postForm(`${t.url}/device_authorization`, { client_id: client })
    const [five, seven] = await Promise.all([start('cli'), start('seven-cli')])
    expect(seven.json.interval).toBe(7)
    const poll = (client: string, code: string) => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, client_id: client, device_code: code })
    await Promise.all([poll('cli', five.json.device_code), poll('seven-cli', seven.json.device_code)])
    for (let round = 1; round <= 3; round++) {
      const [a, b] = await Promise.all([poll('cli', five.json.device_code), poll('seven-cli', seven.json.device_code)])
      expect(a.json).toEqual({ error: 'slow_down', error_description: `poll no more than once every ${5 + 5 * round} seconds` })
      expect(b.json).toEqual({ error: 'slow_down', error_description: `poll no more than once every ${7 + 5 * round} seconds` })
    }
  })
})
