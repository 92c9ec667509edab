/**
 * A repeated `Authorization` field at the endpoints that authenticate clients (token, device
 * authorization, introspection, revocation, the revocation feed) is refused with 400
 * `invalid_request`, whatever the order of its lines: RFC 6749 §2.3 allows one authentication
 * method per request and `Authorization` is not a list field (RFC 9110 §5.3). node's
 * `headers.authorization` keeps only the first line, so without reading the raw lines the request
 * would be judged on whichever credential came first. The fast path in front of fastify and
 * fastify's routes answer alike.
 */
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REVOCATION_FEED_PATH } from '../src/protocol/revocation-feed.js'
import { basic, FIXTURE, startTestServer, type TestServer } from './support/server.js'

/** A response as received: status, headers (names lower case, node's own left out), body. */
interface Wire {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Sends one request with every `Authorization` line of `authorizations` (as separate field lines,
 * in order) on a fresh connection, and reads the response until the server closes it (`Connection: close`).
 */
function send(port: number, method: string, path: string, authorizations: string[], body = '', contentType = 'application/x-www-form-urlencoded', extraLines: string[] = []): Promise<Wire> {
  const lines = [
    `${method} ${path} HTTP/1.1`,
    'Host: devicegate.test',
    'Connection: close',
    ...authorizations.map((a) => `Authorization: ${a}`),
    ...extraLines,
    ...(method === 'POST' ? [`Content-Type: ${contentType}`, `Content-Length: ${Buffer.byteLength(body)}`] : []),
  ]
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const end = text.indexOf('\r\n\r\n')
      if (end < 0) return reject(new Error(`no response: ${JSON.stringify(text)}`))
      const [statusLine = '', ...fields] = text.slice(0, end).split('\r\n')
      const headers: Record<string, string> = {}
      for (const f of fields) {
        const name = f.slice(0, f.indexOf(':')).toLowerCase()
        if (!['date', 'connection', 'keep-alive'].includes(name)) headers[name] = f.slice(f.indexOf(':') + 1).trim()
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4) })
    })
    // Not end(): a half-closed connection is dropped before a slower answer (argon2) is written.
    socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`)
  })
}

/** The fast path takes the form's usual media type; fastify alone parses it with another charset. */
const PATHS = {
  'fast path': 'application/x-www-form-urlencoded',
  fastify: 'application/x-www-form-urlencoded; charset=latin1',
} as const

const REFUSED = { error: 'invalid_request', error_description: 'the Authorization header must be sent once' }

describe('a repeated Authorization field at the client-authenticating endpoints (RFC 6749 §2.3, RFC 9110 §5.3)', () => {
  let t: TestServer
  let port: number
  beforeAll(async () => {
    t = await startTestServer()
    port = Number(new URL(t.url).port)
  })
  afterAll(async () => t?.close())

  const conf = basic('conf', FIXTURE.confSecret)
  const clientB = basic('client-b', FIXTURE.clientBSecret)
  const rs = basic('rs', FIXTURE.rsSecret)
  /** Each endpoint with a body and a credential it accepts, and the answer one line of it gets. */
  const endpoints: [string, string, string, number][] = [
    ['/token', 'grant_type=refresh_token&refresh_token=nope', conf, 400], // authenticated, then invalid_grant
    ['/device_authorization', 'scope=read', conf, 200],
    ['/introspect', 'token=nope', rs, 200],
    ['/revoke', 'token=nope', conf, 200],
  ]

  for (const [path, body, good, okStatus] of endpoints) {
    it(`${path}: two Authorization lines, in either order, are 400 invalid_request with no-store, through the fast path and fastify alike`, async () => {
      const pairs = [
        [good, clientB],
        [clientB, good],
        [good, 'Bearer some-access-token'],
        ['Bearer some-access-token', good],
        [good, good],
      ]
      for (const pair of pairs) {
        const answers: Wire[] = []
        for (const [via, contentType] of Object.entries(PATHS)) {
          const res = await send(port, 'POST', path, pair, body, contentType)
          expect({ via, pair, status: res.status, json: JSON.parse(res.body) }).toEqual({ via, pair, status: 400, json: REFUSED })
          expect(res.headers).toMatchObject({ 'cache-control': 'no-store', pragma: 'no-cache', 'content-type': 'application/json; charset=utf-8' })
          answers.push(res)
        }
        expect(answers[0]).toEqual(answers[1])
      }
    })

    it(`${path}: one Authorization line still authenticates the client, through the fast path and fastify alike`, async () => {
      const answers: Wire[] = []
      for (const contentType of Object.values(PATHS)) {
        const res = await send(port, 'POST', path, [good], body, contentType)
        expect(res.status).toBe(okStatus)
        if (path === '/token') expect(JSON.parse(res.body).error).toBe('invalid_grant')
        answers.push({ ...res, body: path === '/device_authorization' ? '' : res.body })
      }
      expect(answers[0]).toEqual(answers[1])
    })
  }

  for (const [path, body] of [['/token', 'grant_type=client_credentials&scope=read'], ['/device_authorization', 'scope=read']] as const) {
    it(`${path}: a repeated Authorization field is refused before a DPoP proof is judged (RFC 6749 §5.2 invalid_request first), through the fast path and fastify alike`, async () => {
      for (const dpop of ['DPoP: not-a-proof', 'DPoP: a.b.c', 'DPoP: a.b.c\r\nDPoP: d.e.f']) {
        const answers: Wire[] = []
        for (const [via, contentType] of Object.entries(PATHS)) {
          const res = await send(port, 'POST', path, [conf, clientB], body, contentType, dpop.split('\r\n'))
          expect({ via, dpop, status: res.status, json: JSON.parse(res.body) }).toEqual({ via, dpop, status: 400, json: REFUSED })
          answers.push(res)
        }
        expect(answers[0]).toEqual(answers[1])
      }
    })

    it(`${path}: two DPoP field lines are 400 invalid_dpop_proof by RFC 9449 §4.3 check 1 (read from the raw lines, whichever is empty), through the fast path and fastify alike`, async () => {
      for (const lines of [['DPoP: a.b.c', 'DPoP: d.e.f'], ['DPoP: a.b.c', 'DPoP: '], ['DPoP: ', 'dpop: a.b.c']]) {
        const answers: Wire[] = []
        for (const [via, contentType] of Object.entries(PATHS)) {
          const res = await send(port, 'POST', path, [conf], body, contentType, lines)
          expect({ via, lines, status: res.status, json: JSON.parse(res.body) }).toEqual({
            via,
            lines,
            status: 400,
            json: { error: 'invalid_dpop_proof', error_description: 'exactly one DPoP header is allowed' },
          })
          answers.push(res)
        }
        expect(answers[0]).toEqual(answers[1])
      }
    })
  }

  it('the revocation feed: two Authorization lines are 400 invalid_request, one line still authenticates', async () => {
    for (const pair of [[rs, conf], [conf, rs], [rs, rs]]) {
      const res = await send(port, 'GET', REVOCATION_FEED_PATH, pair)
      expect({ pair, status: res.status, json: JSON.parse(res.body) }).toEqual({ pair, status: 400, json: REFUSED })
      expect(res.headers['cache-control']).toBe('no-store')
    }
    expect((await send(port, 'GET', REVOCATION_FEED_PATH, [rs])).status).toBe(200)
  })
})
