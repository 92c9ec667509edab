/**
 * One error path and the documented timeouts (issue 16 items 8 and 9).
 *
 * Framework-level refusals — bad URL encoding, over-long path parameters, malformed requests,
 * oversized headers, unknown paths, the request timeout, shutdown — answer like every other error:
 * RFC 6749 §5.2 JSON with `Cache-Control: no-store` on the OAuth endpoints, an HTML page on the
 * verification pages. Slow headers and slow bodies are cut at the request timeout (30 s by
 * default, `listen.request_timeout_seconds`), and closing the server never waits on a client
 * longer than `listen.shutdown_deadline_seconds`.
 */
import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
  /** Milliseconds from the first byte sent to the connection's end. */
  ms: number
}

/** Parses what a raw socket received (one response; the server closes the connection). */
function parse(text: string, ms: number): RawResponse {
  const [head = '', ...rest] = text.split('\r\n\r\n')
  const [statusLine = '', ...lines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const i = line.indexOf(':')
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n'), ms }
}

/**
 * Sends `chunks` over a raw connection, one every `everyMs`, and returns the response once the
 * server closes the connection (or after `giveUpMs`).
 */
function rawRequest(port: number, chunks: string[], opts: { everyMs?: number; giveUpMs?: number } = {}): Promise<RawResponse> {
  return new Promise((resolve) => {
    const started = Date.now()
    let out = ''
    let timer: NodeJS.Timeout | undefined
    const socket: Socket = connect(port, '127.0.0.1', () => {
      let i = 0
      const next = () => {
        if (i < chunks.length && socket.writable) socket.write(chunks[i++]!)
        if (i < chunks.length) timer = setTimeout(next, opts.everyMs ?? 0)
      }
      next()
    })
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(parse(out, Date.now() - started))
    })
    setTimeout(() => socket.destroy(), opts.giveUpMs ?? 10_000).unref()
  })
}
const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: devicegate.test\r\nConnection: close\r\n\r\n`

function expectOAuthJson(res: RawResponse, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers['content-type']).toMatch(/^application\/json/)
  expect(res.headers['cache-control']).toBe('no-store')
  expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request', error_description: expect.any(String) })
}

function expectHtmlPage(res: RawResponse, status: number) {
  expect(res.status).toBe(status)
  expect(res.headers['content-type']).toMatch(/^text\/html/)
  expect(res.headers['cache-control']).toBe('no-store')
  expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'")
  expect(res.headers['x-frame-options']).toBe('DENY')
  expect(res.body).toContain('<h1>')
  expect(res.body).toContain('href="/device"')
}

describe('one error path for framework-level errors (issue 16 item 8, RFC 6749 §5.2)', () => {
  let t: TestServer
  let port: number
  beforeAll(async () => {
    t = await startTestServer()
    port = Number(new URL(t.url).port)
  })
  afterAll(async () => t?.close())

  it('answers bad URL encoding on an OAuth endpoint with invalid_request JSON and no-store', async () => {
    for (const path of ['/tok%ZZen', '/token%', '/device_authorization%E0%A4%A']) expectOAuthJson(await rawRequest(port, [get(path)]), 400)
  })

  it('answers an over-long path parameter with 414 invalid_request JSON and no-store', async () => {
    expectOAuthJson(await rawRequest(port, [get(`/admin/api/grants/${'a'.repeat(500)}`)]), 414)
  })

  it('answers a malformed request line and oversized headers with invalid_request JSON and no-store', async () => {
    expectOAuthJson(await rawRequest(port, ['NOT AN HTTP REQUEST\r\n\r\n']), 400)
    expectOAuthJson(await rawRequest(port, [`GET /token HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]), 431)
  })

  it('answers an HTTP/1.1 request without Host with 400 invalid_request JSON and no-store (RFC 9112 §3.2), on the fast path too, and an HTML page on the verification pages', async () => {
    // node answered these itself: a 400 with no body, no Cache-Control, no Content-Type.
    const noHost = (line: string, extra = '') => `${line} HTTP/1.1\r\nConnection: close\r\n${extra}\r\n`
    for (const req of [
      noHost('POST /token', 'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n'),
      noHost('GET /jwks'),
      noHost('GET /admin/api/grants'),
    ]) {
      const res = await rawRequest(port, [req])
      expectOAuthJson(res, 400)
      expect(JSON.parse(res.body).error_description).toBe('the Host header is required')
    }
    expectHtmlPage(await rawRequest(port, [noHost('GET /device')]), 400)
    // HTTP/1.0 has no Host requirement.
    expect((await rawRequest(port, ['GET /jwks HTTP/1.0\r\n\r\n'])).status).toBe(200)
  })

  it('answers a request with more than one Host field line with 400 invalid_request JSON and no-store (RFC 9112 §3.2), on the fast path too, and an HTML page on the verification pages', async () => {
    // node kept the first line and dropped the others, so the request was answered as if for one host.
    const twoHosts = (line: string, extra = '') => `${line} HTTP/1.1\r\nHost: devicegate.test\r\nhost: other.test\r\nConnection: close\r\n${extra}\r\n`
    for (const req of [
      twoHosts('POST /token', 'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n'),
      twoHosts('GET /jwks'),
      `GET /jwks HTTP/1.0\r\nHost: devicegate.test\r\nHost: other.test\r\n\r\n`,
    ]) {
      const res = await rawRequest(port, [req])
      expectOAuthJson(res, 400)
      expect(JSON.parse(res.body).error_description).toBe('the Host header must be sent once')
    }
    expectHtmlPage(await rawRequest(port, [twoHosts('GET /device')]), 400)
    // One Host line is fine.
    expect((await rawRequest(port, [get('/jwks')])).status).toBe(200)
  })

  it('answers an Expect other than 100-continue with 417 invalid_request JSON and no-store (RFC 9110 §10.1.1), and an HTML page on the verification pages', async () => {
    const expecting = (line: string, extra = '') => `${line} HTTP/1.1\r\nHost: devicegate.test\r\nExpect: fly\r\nConnection: close\r\n${extra}\r\n`
    for (const req of [expecting('POST /token', 'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n'), expecting('GET /jwks')]) {
      const res = await rawRequest(port, [req])
      expectOAuthJson(res, 417)
      expect(JSON.parse(res.body).error_description).toBe("the expectation in 'Expect' cannot be met")
    }
    expectHtmlPage(await rawRequest(port, [expecting('GET /device')]), 417)
  })

  it('answers another method on a path with parameters (/admin/api/grants/:id) with 405 and Allow, not 404 (RFC 9110 §15.5.6)', async () => {
    // The router compares route definitions: a concrete path such as /admin/api/grants/abc was "unknown".
    for (const [method, path, allow] of [
      ['DELETE', '/admin/api/grants/abc', 'GET, HEAD'],
      ['PUT', '/admin/api/devices/abc', 'GET, HEAD'],
      ['POST', '/admin/api/grants/abc/', 'GET, HEAD'],
    ] as const) {
      const res = await rawRequest(port, [`${method} ${path} HTTP/1.1\r\nHost: devicegate.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`])
      expectOAuthJson(res, 405)
      expect(res.headers.allow, `${method} ${path}`).toBe(allow)
    }
    // A path no route's pattern matches is still 404.
    expectOAuthJson(await rawRequest(port, [get('/admin/api/grants/abc/def')]), 404)
  })

  it('answers another method in absolute form (GET http://host/token, RFC 9112 §3.2.2) as in origin form: 405 with Allow, not 404', async () => {
    for (const [method, target, allow] of [
      ['GET', '/token', 'POST'],
      ['GET', `http://127.0.0.1:${port}/token`, 'POST'],
      ['DELETE', `http://127.0.0.1:${port}/admin/api/grants/abc?x=1`, 'GET, HEAD'],
    ] as const) {
      const res = await rawRequest(port, [`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`])
      expectOAuthJson(res, 405)
      expect(res.headers.allow, target).toBe(allow)
    }
    expectOAuthJson(await rawRequest(port, [`GET http://127.0.0.1:${port}/nowhere HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`]), 404)
  })

  it('answers framework errors on the verification pages with an HTML page', async () => {
    expectHtmlPage(await rawRequest(port, [get('/device/%E0%A4%A')]), 400)
    expectHtmlPage(await rawRequest(port, [get('/device/no-such-page')]), 404)
    const tooLarge = `POST /device HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n${'a'.repeat(70_000)}`
    expectHtmlPage(await rawRequest(port, [tooLarge]), 413)
  })

  it('answers an OAuth error a route throws with the headers the error handler gives (authorization_pending, RFC 8628 §3.5; RFC 6749 §5.2)', async () => {
    const post = (path: string, body: string, extra = '') =>
      `POST ${path} HTTP/1.1\r\nHost: devicegate.test\r\nContent-Type: application/x-www-form-urlencoded\r\n${extra}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
    const authz = await rawRequest(port, [post('/device_authorization', 'client_id=cli&scope=read')])
    const deviceCode = JSON.parse(authz.body).device_code as string
    // Answered by the token route itself.
    const pending = await rawRequest(port, [post('/token', `grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=cli&device_code=${deviceCode}`)])
    expect(pending.status).toBe(400)
    expect(JSON.parse(pending.body)).toEqual({ error: 'authorization_pending', error_description: 'the user has not yet approved the request' })
    // Thrown by a hook before the route: answered by the error handler.
    const refused = await rawRequest(port, [post('/token', 'grant_type=x', 'Content-Encoding: gzip\r\n')])
    expect(refused.status).toBe(415)
    const comparable = (h: Record<string, string>) => {
      const { date: _date, 'content-length': _length, ...rest } = h
      return rest
    }
    expect(comparable(pending.headers)).toEqual(comparable(refused.headers))
    expect(comparable(pending.headers)).toEqual({
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      pragma: 'no-cache',
      'x-content-type-options': 'nosniff',
      connection: 'close',
    })
    expect(Number(pending.headers['content-length'])).toBe(Buffer.byteLength(pending.body))
  })

  it('keeps JSON with no-store for unknown paths and wrong methods outside the pages', async () => {
    expectOAuthJson(await rawRequest(port, [get('/no-such-endpoint')]), 404)
    const wrongMethod = await rawRequest(port, [get('/token')])
    expectOAuthJson(wrongMethod, 405)
    expect(wrongMethod.headers.allow).toBe('POST')
  })
})

describe('request timeout for slow headers and slow bodies (issue 16 item 9)', () => {
  it('applies the documented 30 s to headers and to the whole request by default', async () => {
    const t = await startTestServer()
    try {
      expect(t.server.app.server.headersTimeout).toBe(30_000)
      expect(t.server.app.server.requestTimeout).toBe(30_000)
    } finally {
      await t.close()
    }
  })

  describe('with listen.request_timeout_seconds: 2', () => {
    let t: TestServer
    let port: number
    beforeAll(async () => {
      t = await startTestServer({ config: await fixtureConfigFile({ listen: { request_timeout_seconds: 2 } }) })
      port = Number(new URL(t.url).port)
    })
    afterAll(async () => t?.close())

    it('cuts off headers sent too slowly with 408 invalid_request JSON at the timeout, not 60 s later', async () => {
      const chunks = ['POST /token HTTP/1.1\r\n', ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: a\r\n`)]
      const res = await rawRequest(port, chunks, { everyMs: 250 })
      expectOAuthJson(res, 408)
      // Timeout (2 s) plus at most one connection check (1 s), with room for a loaded machine.
      expect(res.ms).toBeGreaterThanOrEqual(1_900)
      expect(res.ms).toBeLessThan(5_000)
    })

    it('cuts off a body sent too slowly with 408 invalid_request JSON at the timeout, not 90 s later', async () => {
      const head = 'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n'
      const res = await rawRequest(port, [head, ...Array.from({ length: 40 }, () => 'a')], { everyMs: 250 })
      expectOAuthJson(res, 408)
      expect(res.ms).toBeGreaterThanOrEqual(1_900)
      expect(res.ms).toBeLessThan(5_000)
    })
  })
})

describe('shutdown deadline (issue 16 item 9)', () => {
  it('closes within listen.shutdown_deadline_seconds while an upload is in flight, and refuses new requests with 503 meanwhile', async () => {
    const t = await startTestServer({ config: await fixtureConfigFile({ listen: { shutdown_deadline_seconds: 1 } }) })
    const port = Number(new URL(t.url).port)
    const head = 'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n'
    const upload = rawRequest(port, [head, ...Array.from({ length: 200 }, () => 'a'.repeat(10))], { everyMs: 100, giveUpMs: 20_000 })
    // A second request whose headers are still arriving when shutdown begins.
    const late = rawRequest(port, ['GET /healthz HTTP/1.1\r\n', 'Host: x\r\n\r\n'], { everyMs: 600 })
    await new Promise((r) => setTimeout(r, 300))
    const started = Date.now()
    await t.close()
    const took = Date.now() - started
    const refused = await late
    expect(refused.status).toBe(503)
    expect(refused.headers['cache-control']).toBe('no-store')
    expect(refused.headers['retry-after']).toBe('5')
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'temporarily_unavailable' })
    expect(took).toBeGreaterThanOrEqual(900)
    expect(took).toBeLessThan(4_000)
    const cut = await upload
    expect(cut.ms).toBeLessThan(5_000)
  })
})
