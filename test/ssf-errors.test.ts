/**
 * Shared Signals stream management errors are one shape (SSF 1.0 §8.1, the RFC 8935 §2.3
 * `{ err, description }` body), including what the app-wide backstops used to answer in the OAuth
 * shape `{ error, error_description }`: a value PostgreSQL refuses (U+0000 in a stream id, SQLSTATE
 * 22021) and a body over the size limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freshPgSchema } from './support/pg-schema.js'
import { startTestServer, type TestServer } from './support/server.js'
import { clientToken, json, signalsConfig } from './support/signals.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('SSF error tests on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)')

const STORES = [
  { name: 'SQLite', url: async () => ({ url: undefined as string | undefined, drop: async () => {} }) },
  ...(PG_URL ? [{ name: 'PostgreSQL', url: () => freshPgSchema(PG_URL, 'dg_ssf_errors') }] : []),
]

for (const store of STORES)
  describe(`${store.name}: SSF 1.0 §8.1 stream management errors are { err, description }`, () => {
    let t: TestServer
    let token: string
    let schema: { url: string | undefined; drop(): Promise<void> } | undefined

    beforeAll(async () => {
      schema = await store.url()
      t = await startTestServer({ config: await signalsConfig(), ...(schema.url ? { storageUrl: schema.url } : {}) })
      token = await clientToken(t.url, 'receiver')
    })
    afterAll(async () => {
      await t?.close()
      await schema?.drop()
    })

    const expectSsfError = (res: { status: number; body: any; headers: Headers }, status: number, what: string) => {
      expect(res.status, what).toBe(status)
      expect(res.headers.get('content-type'), what).toContain('application/json')
      expect(res.headers.get('cache-control'), what).toBe('no-store')
      expect(res.body, what).toEqual({ err: expect.any(String), description: expect.any(String) })
    }

    it('answers a U+0000 stream id in the query or path (refused by PostgreSQL, 22021) as any unknown stream: 404 not_found, never { error }', async () => {
      for (const [url, method] of [
        [`${t.url}/ssf/stream?stream_id=a%00b`, 'GET'],
        [`${t.url}/ssf/stream?stream_id=a%00b`, 'DELETE'],
        [`${t.url}/ssf/status?stream_id=a%00b`, 'GET'],
        [`${t.url}/ssf/poll/a%00b`, 'POST'],
      ] as const) {
        const res = await json(url, method, token, method === 'POST' ? {} : undefined)
        expectSsfError(res, 404, `${method} ${url}`)
        expect(res.body.err).toBe('not_found')
      }
      // The request's fault, not the server's, in the request metrics.
      expect(await (await fetch(`${t.url}/metrics`)).text()).not.toMatch(/devicegate_http_requests_total\{endpoint="\/ssf[^"]*",outcome="server_error"\}/)
    })

    it('answers a U+0000 stream id in a body with 400 invalid_request', async () => {
      for (const [path, body] of [
        ['/ssf/status', { stream_id: 'a\u0000b', status: 'paused' }],
        ['/ssf/subjects/add', { stream_id: 'a\u0000b', subject: { format: 'email', email: 'a@example.com' } }],
        ['/ssf/verify', { stream_id: 'a\u0000b' }],
      ] as const) {
        const res = await json(`${t.url}${path}`, 'POST', token, body)
        expectSsfError(res, 400, path)
        expect(res.body.err).toBe('invalid_request')
      }
    })

    it('answers what the server refuses before any route (a compressed body: 415) in the same { err, description } shape', async () => {
      const refused = await fetch(`${t.url}/ssf/stream`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: '{}' })
      expectSsfError({ status: refused.status, body: await refused.json(), headers: refused.headers }, 415, 'content-encoding: gzip')
      // A token problem stays an RFC 6750 error with its challenge.
      const res = await json(`${t.url}/ssf/stream`, 'GET', 'not-a-live-token')
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
    })

    it('answers a body over the limit with 413 { err: "invalid_request" }', async () => {
      const res = await json(`${t.url}/ssf/stream`, 'POST', token, JSON.stringify({ description: 'x'.repeat(300 * 1024) }))
      expectSsfError(res, 413, 'oversized body')
      expect(res.body.err).toBe('invalid_request')
    })
  })
