/**
 * RFC 9449 §8 (authorization server) and §9 (resource server, "in the same way" as §8.2): with
 * `dpop.require_nonce`, every answer at a path that takes a DPoP proof — `/token`,
 * `/device_authorization`, `/userinfo` — carries the current `DPoP-Nonce`, also the answers the
 * HTTP layer gives before or instead of the route: 405 for another method, 413 for a body over
 * the limit, 415 for a compressed body. Paths that take no proof (`/revoke`) carry none. (A
 * request node's HTTP parser refuses — malformed framing — is answered on the socket before any
 * path is known, and the connection closed: it carries no nonce.)
 */
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

const NONCE = /^[A-Za-z0-9_-]{43}$/

/** A response as received: status and headers (names lower case). */
interface Wire {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Sends `head` (request line and header fields, without the blank line) and `body` on a fresh
 * connection, and reads the answer until the server closes it or `Content-Length` is read.
 */
function send(port: number, head: string[], body = ''): Promise<Wire> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const parse = (): Wire | undefined => {
      const text = Buffer.concat(chunks).toString('utf8')
      const end = text.indexOf('\r\n\r\n')
      if (end < 0) return undefined
      const [statusLine = '', ...fields] = text.slice(0, end).split('\r\n')
      const headers: Record<string, string> = {}
      for (const f of fields) headers[f.slice(0, f.indexOf(':')).toLowerCase()] = f.slice(f.indexOf(':') + 1).trim()
      const rest = text.slice(end + 4)
      if (headers['content-length'] !== undefined && Buffer.byteLength(rest) < Number(headers['content-length'])) return undefined
      return { status: Number(statusLine.split(' ')[1]), headers, body: rest }
    }
    socket.on('data', (d: Buffer) => {
      chunks.push(d)
      const wire = parse()
      if (wire !== undefined) {
        socket.destroy()
        resolve(wire)
      }
    })
    socket.on('error', reject)
    socket.on('close', () => {
      const wire = parse()
      if (wire === undefined) reject(new Error('no complete response'))
      else resolve(wire)
    })
    socket.write(`${head.join('\r\n')}\r\n\r\n`)
    if (body !== '') socket.write(body)
  })
}

const form = (method: string, path: string, body: string, extra: string[] = []) => [
  `${method} ${path} HTTP/1.1`,
  'Host: devicegate.test',
  'Content-Type: application/x-www-form-urlencoded',
  `Content-Length: ${Buffer.byteLength(body)}`,
  ...extra,
]

describe('RFC 9449 §8, §9: DPoP-Nonce on the answers the HTTP layer gives at the DPoP-taking paths (dpop.require_nonce)', () => {
  let t: TestServer
  let port: number
  beforeAll(async () => {
    t = await startTestServer({ config: await fixtureConfigFile({ dpop: { require_nonce: true } }) })
    port = Number(new URL(t.url).port)
  })
  afterAll(async () => t?.close())

  for (const path of ['/token', '/device_authorization', '/userinfo'])
    it(`${path}: 405, 413 and 415 each carry the current DPoP-Nonce, in the OAuth error shape with no-store`, async () => {
      const big = `client_id=cli&x=${'a'.repeat(70 * 1024)}`
      const answers: Array<[string, Wire, number]> = [
        ['another method (RFC 9110 §15.5.6)', await send(port, [`${path === '/userinfo' ? 'PUT' : 'GET'} ${path} HTTP/1.1`, 'Host: devicegate.test', 'Content-Length: 0']), 405],
        ['another method, trailing slash', await send(port, [`DELETE ${path}/ HTTP/1.1`, 'Host: devicegate.test', 'Content-Length: 0']), 405],
        ['a body over the limit', await send(port, form('POST', path, big), big), 413],
        ['a compressed body (RFC 9110 §8.4)', await send(port, form('POST', path, 'client_id=cli', ['Content-Encoding: gzip']), 'client_id=cli'), 415],
      ]
      for (const [what, res, status] of answers) {
        expect({ what, status: res.status, nonce: NONCE.test(res.headers['dpop-nonce'] ?? ''), cacheControl: res.headers['cache-control'] }).toEqual({ what, status, nonce: true, cacheControl: 'no-store' })
        expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request' })
      }
    })

  // README (dpop.require_nonce): the nonce is "sent on every answer of /token, /device_authorization
  // and the DPoP-taking resources: /userinfo, Shared Signals, global revocation, signals admin API;
  // also on 405, 413 and 415 there".
  it('the Shared Signals, global revocation and signals admin paths: 405 (also on a path with parameters) and 415 carry the current DPoP-Nonce; the public SSF configuration none', async () => {
    const answers: Array<[string, Wire, number]> = [
      ['GET /ssf/verify', await send(port, ['GET /ssf/verify HTTP/1.1', 'Host: devicegate.test', 'Content-Length: 0']), 405],
      ['GET /ssf/poll/:streamId', await send(port, ['GET /ssf/poll/abc HTTP/1.1', 'Host: devicegate.test', 'Content-Length: 0']), 405],
      ['GET /global-token-revocation', await send(port, ['GET /global-token-revocation HTTP/1.1', 'Host: devicegate.test', 'Content-Length: 0']), 405],
      ['GET /admin/api/webhooks/:id/resume', await send(port, ['GET /admin/api/webhooks/abc/resume HTTP/1.1', 'Host: devicegate.test', 'Content-Length: 0']), 405],
      ['POST /ssf/stream, compressed', await send(port, ['POST /ssf/stream HTTP/1.1', 'Host: devicegate.test', 'Content-Type: application/json', 'Content-Encoding: gzip', 'Content-Length: 2'], '{}'), 415],
      ['POST /global-token-revocation, compressed', await send(port, ['POST /global-token-revocation HTTP/1.1', 'Host: devicegate.test', 'Content-Type: application/json', 'Content-Encoding: gzip', 'Content-Length: 2'], '{}'), 415],
    ]
    for (const [what, res, status] of answers) expect({ what, status: res.status, nonce: NONCE.test(res.headers['dpop-nonce'] ?? '') }).toEqual({ what, status, nonce: true })
    const configuration = await send(port, ['POST /.well-known/ssf-configuration HTTP/1.1', 'Host: devicegate.test', 'Content-Length: 0'])
    expect({ status: configuration.status, nonce: configuration.headers['dpop-nonce'] }).toEqual({ status: 405, nonce: undefined })
  })

  it('a path that takes no DPoP proof (/revoke) gets no DPoP-Nonce on its 405 or 413', async () => {
    const big = `token=${'a'.repeat(70 * 1024)}`
    for (const res of [await send(port, ['GET /revoke HTTP/1.1', 'Host: devicegate.test', 'Content-Length: 0']), await send(port, form('POST', '/revoke', big), big)]) {
      expect(res.status === 405 || res.status === 413).toBe(true)
      expect(res.headers['dpop-nonce']).toBeUndefined()
    }
  })
})

describe('without dpop.require_nonce the same answers carry no DPoP-Nonce', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer()
  })
  afterAll(async () => t?.close())

  it('/token: 405 and 413 have no DPoP-Nonce', async () => {
    const port = Number(new URL(t.url).port)
    const big = `x=${'a'.repeat(70 * 1024)}`
    for (const res of [await send(port, ['GET /token HTTP/1.1', 'Host: devicegate.test', 'Content-Length: 0']), await send(port, form('POST', '/token', big), big)]) {
      expect(res.status === 405 || res.status === 413).toBe(true)
      expect(res.headers['dpop-nonce']).toBeUndefined()
    }
  })
})
