/**
 * The fast path in front of fastify (issue 17): the ordinary requests of the four form-encoded
 * JSON endpoints are answered from node's request event, the rest by fastify. A client, the
 * access log and the metrics cannot tell the two apart: same status, headers in the same order,
 * body, log line and counts.
 */
import { createServer, type Server } from 'node:http'
import { connect } from 'node:net'
import { Writable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAccessLog } from '../src/http/access-log.js'
import { createFastRoutes } from '../src/http/fast-routes.js'
import { BODY_LIMIT_BYTES, type FormEndpoint } from '../src/http/oauth-endpoints.js'
import { OAuthError } from '../src/protocol/errors.js'
import { createLogger } from '../src/server.js'
import { basic, FIXTURE, fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

/** A response as received on the wire: status, headers in order (names as sent), body. */
interface Wire {
  status: number
  headers: [string, string][]
  body: string
}

/** Sends raw bytes on a fresh connection and returns the first full response. */
function raw(port: number, chunks: string[], everyMs = 0): Promise<Wire> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const done = () => {
      // An interim `100 Continue` is not the response.
      while (text.startsWith('HTTP/1.1 100 ') && text.includes('\r\n\r\n')) text = text.slice(text.indexOf('\r\n\r\n') + 4)
      const end = text.indexOf('\r\n\r\n')
      if (end < 0) return false
      const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n')
      const headers = lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()] as [string, string])
      const length = Number(headers.find(([n]) => n.toLowerCase() === 'content-length')?.[1] ?? 0)
      if (text.length - end - 4 < length) return false
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4, end + 4 + length) })
      socket.destroy()
      return true
    }
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1')
      done()
    })
    socket.on('error', reject)
    socket.on('close', () => done() || reject(new Error(`connection closed: ${JSON.stringify(text)}`)))
    void (async () => {
      for (const chunk of chunks) {
        socket.write(chunk)
        if (everyMs > 0) await new Promise((r) => setTimeout(r, everyMs))
      }
    })()
  })
}

function post(path: string, body: string, headers: Record<string, string> = {}, contentType: string | null = 'application/x-www-form-urlencoded'): string {
  const all: Record<string, string> = { Host: 'devicegate.test', ...(contentType === null ? {} : { 'Content-Type': contentType }), 'Content-Length': String(Buffer.byteLength(body)), ...headers }
  return `POST ${path} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`
}

/** Headers without those node itself adds to every response (`Date`, `Connection`, `Keep-Alive`, capitalised). */
const own = (w: Wire) => w.headers.filter(([n]) => !['Date', 'Connection', 'Keep-Alive'].includes(n))

describe('fast path: answers exactly as fastify does', () => {
  let t: TestServer
  let port: number
  let lines: string[]
  beforeAll(async () => {
    lines = []
    const sink = new Writable({ write: (chunk, _e, done) => (lines.push(...String(chunk).split('\n').filter(Boolean)), done()) })
    t = await startTestServer({ logger: createLogger('info', sink) })
    port = Number(new URL(t.url).port)
  })
  afterAll(async () => t?.close())

  /** The same request through fastify (app.inject never reaches the fast path). */
  async function viaFastify(path: string, body: string, headers: Record<string, string> = {}): Promise<Wire> {
    const res = await t.server.app.inject({ method: 'POST', url: path, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, payload: body })
    const rawHeaders = res.raw.res.getHeaders()
    return { status: res.statusCode, headers: Object.entries(rawHeaders).map(([n, v]) => [n, String(v)]), body: res.body }
  }

  it('sends the same status, headers in the same order and body as fastify for answers and errors of every endpoint', async () => {
    const cases: [string, string, Record<string, string>][] = [
      ['/token', 'grant_type=nope&client_id=cli', {}],
      ['/token', 'grant_type=a%22b%5Cc%0Ad&client_id=cli', {}],
      ['/token', 'grant_type=a&grant_type=b', {}],
      ['/token', `grant_type=${encodeURIComponent(DEVICE_GRANT)}&client_id=cli&device_code=nope`, {}],
      ['/token', `grant_type=${encodeURIComponent(DEVICE_GRANT)}&client_id=cli&device_code=nope`, { DPoP: 'not-a-jwt' }],
      ['/device_authorization', 'client_id=nobody', {}],
      ['/device_authorization', 'client_id=cli&scope=admin', {}],
      ['/introspect', 'token=nope', { Authorization: basic('rs', FIXTURE.rsSecret) }],
      ['/introspect', 'token=nope', { Authorization: basic('rs', 'wrong') }],
      ['/introspect', '', { Authorization: basic('rs', FIXTURE.rsSecret) }],
      ['/revoke', 'token=nope', { Authorization: basic('conf', FIXTURE.confSecret) }],
      ['/revoke', '', { Authorization: basic('conf', FIXTURE.confSecret) }],
    ]
    for (const [path, body, headers] of cases) {
      const fast = await raw(port, [post(path, body, headers)])
      const slow = await viaFastify(path, body, headers)
      expect({ request: [path, body], ...fast, headers: own(fast) }).toEqual({ request: [path, body], ...slow, headers: own(slow) })
    }
  })

  it('answers a device authorization and a poll with no-store, nosniff and the JSON content type fastify writes', async () => {
    const authz = await raw(port, [post('/device_authorization', 'client_id=cli&scope=read')])
    expect(authz.status).toBe(200)
    expect(own(authz).map(([n]) => n)).toEqual(['cache-control', 'pragma', 'x-content-type-options', 'content-type', 'content-length'])
    expect(Object.fromEntries(own(authz))).toMatchObject({ 'cache-control': 'no-store', pragma: 'no-cache', 'x-content-type-options': 'nosniff', 'content-type': 'application/json; charset=utf-8' })
    const code = JSON.parse(authz.body).device_code as string
    const poll = await raw(port, [post('/token/', `grant_type=${encodeURIComponent(DEVICE_GRANT)}&client_id=cli&device_code=${code}`, {}, 'application/x-www-form-urlencoded;charset=UTF-8')])
    expect(poll.status).toBe(400)
    expect(JSON.parse(poll.body)).toEqual({ error: 'authorization_pending', error_description: 'the user has not yet approved the request' })
  })

  it('refuses an oversized body with 413 invalid_request, by Content-Length and when chunked', async () => {
    const byLength = await raw(port, [`POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${BODY_LIMIT_BYTES + 1}\r\n\r\nabc`])
    expect(byLength.status).toBe(413)
    expect(JSON.parse(byLength.body)).toEqual({ error: 'invalid_request', error_description: 'the request body is too large' })
    const head = `POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n`
    const chunked = await raw(port, [head, `10000\r\n${'a'.repeat(0x10000)}\r\n`, `10\r\n${'a'.repeat(16)}\r\n0\r\n\r\n`], 20)
    expect(chunked.status).toBe(413)
    expect(Object.fromEntries(own(chunked))).toMatchObject({ 'cache-control': 'no-store', connection: 'close' })
  })

  it('refuses a gzip Content-Encoding with 415 and answers a JSON body with invalid_request', async () => {
    const gzip = await raw(port, [post('/token', 'grant_type=nope', { 'Content-Encoding': 'gzip' })])
    expect(gzip.status).toBe(415)
    expect(JSON.parse(gzip.body)).toEqual({ error: 'invalid_request', error_description: 'content-encoding is not supported' })
    const json = await raw(port, [post('/token', JSON.stringify({ grant_type: DEVICE_GRANT }), {}, 'application/json')])
    expect(json.status).toBe(400)
    expect(JSON.parse(json.body)).toEqual({ error: 'invalid_request', error_description: 'the request body must be application/x-www-form-urlencoded' })
    const query = await raw(port, [post('/introspect?token=x', '', { Authorization: basic('rs', FIXTURE.rsSecret) })])
    expect(query.status).toBe(400)
    expect(JSON.parse(query.body).error_description).toMatch(/not in the URI/)
  })

  it('answers GET /token with 405 and Allow: POST', async () => {
    const res = await raw(port, ['GET /token HTTP/1.1\r\nHost: x\r\n\r\n'])
    expect(res.status).toBe(405)
    expect(Object.fromEntries(own(res))).toMatchObject({ allow: 'POST', 'cache-control': 'no-store' })
  })

  it('counts fast-path requests in the request metrics by endpoint and outcome', async () => {
    const before = await (await fetch(`${t.url}/metrics`)).text()
    const count = (text: string, series: string) => Number(text.split('\n').find((l) => l.startsWith(series + ' '))?.split(' ')[1] ?? 0)
    const series = 'devicegate_http_requests_total{endpoint="/introspect",outcome="invalid_client"}'
    await raw(port, [post('/introspect', 'token=x', { Authorization: basic('rs', 'wrong') })])
    await raw(port, [post('/introspect/', 'token=x', { Authorization: basic('rs', 'wrong') })])
    const after = await (await fetch(`${t.url}/metrics`)).text()
    expect(count(after, series) - count(before, series)).toBe(2)
  })

  it('writes one access line per request, with unique request ids across both paths, and valid JSON for a hostile path', async () => {
    lines.length = 0
    await raw(port, [post('/token', 'grant_type=nope')]) // fast path
    await raw(port, [post('/to"ken\\x', 'grant_type=nope')]) // fastify: 404
    await raw(port, [post('/token', 'grant_type=nope', { 'X-Forwarded-For': '"1.2.3.4' })])
    await new Promise((r) => setTimeout(r, 50))
    const access = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request')
    expect(access.map((l) => [l.method, l.path, l.status])).toEqual([
      ['POST', '/token', 400],
      ['POST', '/to"ken\\x', 404],
      ['POST', '/token', 400],
    ])
    for (const line of access) {
      expect(Object.keys(line)).toEqual(['level', 'time', 'pid', 'hostname', 'reqId', 'method', 'path', 'status', 'ms', 'clientIp', 'msg'])
      expect(line).toMatchObject({ level: 30, clientIp: '127.0.0.1', reqId: expect.stringMatching(/^req-[0-9a-z]+$/) })
      expect(typeof line.ms).toBe('number')
    }
    expect(new Set(access.map((l) => l.reqId)).size).toBe(3)
  })
})

describe('access-log line', () => {
  /** What pino itself writes for the line, and what createAccessLog writes. */
  function both(fields: { reqId: string; method: string; path: string; status: number; ms: number; clientIp: string }): [string, string] {
    const out: string[] = []
    const sink = new Writable({ write: (chunk, _e, done) => (out.push(String(chunk)), done()) })
    const logger = pino({ level: 'info' }, sink)
    logger.info(fields, 'request')
    createAccessLog(logger as unknown as FastifyBaseLogger)(fields.reqId, fields.method, fields.path, fields.status, fields.ms, fields.clientIp)
    return out.map((l) => l.replace(/"time":\d+/, '"time":0')) as [string, string]
  }

  it("is byte for byte pino's line, and valid JSON, for paths with quotes, backslashes, control and non-ASCII characters", () => {
    for (const path of ['/token', '/to"ken', '/a\\b', '/x\u0001\ny', `/${'é'.repeat(120)}"`, '/\u00ff\u007f']) {
      const [pinoLine, ours] = both({ reqId: 'req-1a', method: 'POST', path, status: 400, ms: 1.3, clientIp: '::1' })
      expect(ours).toBe(pinoLine)
      expect(JSON.parse(ours).path).toBe(path)
    }
  })

  it('writes nothing when the logger is above info', () => {
    const out: string[] = []
    const logger = pino({ level: 'warn' }, new Writable({ write: (chunk, _e, done) => (out.push(String(chunk)), done()) }))
    createAccessLog(logger as unknown as FastifyBaseLogger)('req-1', 'POST', '/token', 200, 1, '::1')
    expect(out).toEqual([])
  })
})

describe('fast path: which requests it takes', () => {
  let server: Server
  let port: number
  let closing = false
  const taken: string[] = []
  const endpoint: FormEndpoint = {
    path: '/token',
    dpopNonce: undefined,
    takesDpopProof: false,
    handle: async (request) => {
      if (request.body?.fail === 'yes') throw new OAuthError('slow_down', 'poll no more than once every 10 seconds')
      return { got: request.body }
    },
  }
  beforeAll(async () => {
    const fast = createFastRoutes({
      endpoints: [endpoint],
      ignoreTrailingSlash: true,
      resolveClientIp: (peer) => peer ?? '',
      nextRequestId: () => 'req-1',
      isClosing: () => closing,
      logger: pino({ level: 'silent' }) as unknown as FastifyBaseLogger,
      answered: (r) => taken.push(`${r.url} ${r.status} ${r.oauthError ?? ''}`),
    })
    server = createServer((req, res) => {
      if (!fast(req, res)) res.writeHead(299).end('fastify')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    port = (server.address() as { port: number }).port
  })
  afterAll(async () => new Promise<void>((r) => server.close(() => r())))

  const send = (chunks: string[]) => raw(port, chunks)

  it('takes a form POST to the exact path (or with the trailing slash) and answers it', async () => {
    taken.length = 0
    const res = await send([post('/token', 'a=1&a=2&b=%20')])
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body)).toEqual({ got: { a: ['1', '2'], b: ' ' } })
    expect((await send([post('/token/', 'fail=yes', {}, 'Application/X-WWW-Form-Urlencoded; charset=utf-8')])).status).toBe(400)
    await new Promise((r) => setTimeout(r, 20))
    expect(taken).toEqual(['/token 200 ', '/token/ 400 slow_down'])
  })

  it('leaves everything unusual to fastify, reading nothing of it', async () => {
    const passed = [
      post('/token?x=1', 'a=1'),
      post('/token', 'a=1', {}, 'application/json'),
      post('/token', 'a=1', {}, null),
      post('/token', 'a=1', {}, 'application/x-www-form-urlencoded; charset=latin1'),
      post('/token', 'a=1', { 'Content-Encoding': 'identity' }),
      post('/token', 'a=1', { Expect: '100-continue' }),
      post('/TOKEN', 'a=1'),
      post('//token', 'a=1'),
      post('/%74oken', 'a=1'),
      post('/token', 'a=1').replace('POST', 'PUT'),
      'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n',
      'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n',
      `POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${BODY_LIMIT_BYTES + 1}\r\nConnection: close\r\n\r\n`,
    ]
    for (const request of passed) expect([request, (await send([request])).status]).toEqual([request, 299])
  })

  it('leaves requests to fastify while the server drains, so they get its 503', async () => {
    closing = true
    try {
      expect((await send([post('/token', 'a=1')])).status).toBe(299)
    } finally {
      closing = false
    }
  })
})

describe('fast path: draining for shutdown', () => {
  it('answers a token request arriving while the server closes with 503 temporarily_unavailable, Retry-After and Connection: close', async () => {
    const t = await startTestServer({ config: await fixtureConfigFile({ listen: { shutdown_deadline_seconds: 1 } }) })
    const port = Number(new URL(t.url).port)
    // Headers still arriving when shutdown begins: the connection is busy, so it is not closed as idle.
    const late = raw(port, ['POST /token HTTP/1.1\r\n', 'Host: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\ngrant_type=nop'], 600)
    await new Promise((r) => setTimeout(r, 300))
    await t.close()
    const refused = await late
    expect(refused.status).toBe(503)
    expect(Object.fromEntries(own(refused).map(([n, v]) => [n.toLowerCase(), v]))).toMatchObject({ 'retry-after': '5', 'cache-control': 'no-store' })
    expect(refused.headers.filter(([n]) => n.toLowerCase() === 'connection').map(([, v]) => v)).toContain('close')
    expect(JSON.parse(refused.body)).toEqual({ error: 'temporarily_unavailable', error_description: 'the server is shutting down' })
  })
})

describe('draining for shutdown: requests in flight', () => {
  /**
   * Sends `head`, then `rest` after `gapMs`, on a kept-alive connection the client never closes.
   * @returns the response's `connection` header and how long after the response the server closed the connection (ms).
   */
  function inFlight(port: number, head: string, rest: string, gapMs: number): Promise<{ connection: string | undefined; closedAfterMs: number }> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1')
      let text = ''
      let answeredAt = 0
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1')
        if (answeredAt === 0 && text.includes('\r\n\r\n')) answeredAt = Date.now()
      })
      socket.on('error', reject)
      socket.on('close', () => {
        const connection = /\r\nconnection: *([^\r]*)/i.exec(text)?.[1]
        resolve({ connection, closedAfterMs: Date.now() - answeredAt })
      })
      socket.write(head)
      setTimeout(() => socket.write(rest), gapMs)
    })
  }

  it('ends the kept-alive connection with the answer to a request in flight when draining began (fast path and fastify), instead of waiting out the deadline', async () => {
    const t = await startTestServer({ config: await fixtureConfigFile({ listen: { shutdown_deadline_seconds: 5 } }) })
    const port = Number(new URL(t.url).port)
    const body = 'grant_type=nop'
    // Taken by the fast path (form POST to /token), and by fastify (a JSON body to /token).
    const fast = inFlight(port, `POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\ngrant`, body.slice(5), 600)
    const viaFastify = inFlight(port, `POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{`, '}', 600)
    await new Promise((r) => setTimeout(r, 300))
    const started = Date.now()
    await t.close()
    const closedInMs = Date.now() - started
    for (const answer of [await fast, await viaFastify]) {
      expect(answer.connection).toBe('close')
      expect(answer.closedAfterMs).toBeLessThan(1000)
    }
    expect(closedInMs).toBeLessThan(3000)
  })
})

describe('OAuthError.toJSONText (the error body both paths send)', () => {
  it('is JSON.stringify(toJSON()) byte for byte, for descriptions with quotes, backslashes, controls and non-ASCII, and with extension members', () => {
    const errors = [
      new OAuthError('authorization_pending', 'the user has not yet approved the request'),
      new OAuthError('slow_down', 'poll no more than once every 10 seconds'),
      new OAuthError('invalid_request'),
      new OAuthError('unsupported_grant_type', `"grant_type" "a\\"b\\\\c\nd\u00e9\u2028\ud800" is not supported`),
      new OAuthError('invalid_client', 'client authentication failed', { headers: { 'WWW-Authenticate': 'Basic' } }),
      new OAuthError('invalid_request', 'refused', { members: { devicegate_reason: 'storage_not_accepted', list: ['a', 'b"'] } }),
    ]
    for (const err of errors) expect(err.toJSONText()).toBe(JSON.stringify(err.toJSON()))
  })
})
