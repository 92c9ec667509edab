/**
 * `/metrics` can require a bearer token (RFC 6750 §2.1, 401 with a Bearer
 * challenge otherwise) and can be served on a listener of its own, leaving the main listener
 * without it.
 */
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadMetricsToken } from '../src/governance/metrics.js'
import { fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

const TOKEN = randomBytes(24).toString('base64url')
process.env.DEVICEGATE_TEST_METRICS_TOKEN = TOKEN

describe('/metrics behind a bearer token', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await fixtureConfigFile({ governance: { metrics: { bearer_token_env: 'DEVICEGATE_TEST_METRICS_TOKEN' } } }) })
  })
  afterAll(async () => t?.close())

  it('answers 401 with a Bearer challenge without a token, and with error="invalid_token" for a wrong one', async () => {
    const none = await fetch(`${t.url}/metrics`)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-metrics"')
    // RFC 6750 §3.1: no error code "or other error information" without credentials.
    expect(await none.text()).toBe('{}')
    const wrong = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}x` } })
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="devicegate-metrics", error="invalid_token"')
    expect(await wrong.text()).not.toContain('devicegate_http_requests_total')
  })

  it('answers 400 invalid_request to a repeated Authorization field, even when a line carries the token (RFC 6750 §3.1, RFC 9110 §5.3)', async () => {
    for (const pair of [[`Bearer ${TOKEN}`, 'Bearer other'], ['Bearer other', `Bearer ${TOKEN}`]]) {
      const res = await new Promise<{ status: number; challenge: string | undefined; body: string }>((resolve, reject) => {
        const req = request(`${t.url}/metrics`, (r) => {
          let body = ''
          r.on('data', (d: Buffer) => (body += d.toString('utf8')))
          r.on('end', () => resolve({ status: r.statusCode!, challenge: r.headers['www-authenticate'], body }))
        })
        req.on('error', reject)
        req.setHeader('Authorization', pair) // two field lines
        req.end()
      })
      expect({ pair, status: res.status, challenge: res.challenge }).toEqual({ pair, status: 400, challenge: 'Bearer realm="devicegate-metrics", error="invalid_request"' })
      expect(JSON.parse(res.body)).toEqual({ error: 'invalid_request', error_description: 'the Authorization header must be sent once' })
    }
  })

  it('answers a Bearer header without a well-formed token (Bearer, Bearer a b) with 400 invalid_request, as a malformed request (RFC 6750 §3.1); another scheme stays the bare 401', async () => {
    for (const authorization of ['Bearer', 'bearer', 'Bearer a b', `Bearer ${TOKEN} x`]) {
      const res = await fetch(`${t.url}/metrics`, { headers: { authorization } })
      expect({ authorization, status: res.status, challenge: res.headers.get('www-authenticate'), cacheControl: res.headers.get('cache-control'), body: await res.json() }).toEqual({
        authorization,
        status: 400,
        challenge: 'Bearer realm="devicegate-metrics", error="invalid_request"',
        cacheControl: 'no-store',
        body: { error: 'invalid_request', error_description: "the Authorization header must be 'Bearer <token>'" },
      })
    }
    for (const authorization of ['Basic YTpi', `DPoP ${TOKEN}`, 'Bearerx abc']) {
      const res = await fetch(`${t.url}/metrics`, { headers: { authorization } })
      expect({ authorization, status: res.status, challenge: res.headers.get('www-authenticate'), body: await res.text() }).toEqual({ authorization, status: 401, challenge: 'Bearer realm="devicegate-metrics"', body: '{}' })
    }
  })

  it('serves the metrics with the token', async () => {
    const res = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('devicegate_http_requests_total')
  })

  it('counts its refusals by outcome as the other protected resources: no_credentials, invalid_token, invalid_request — not http_<status>', async () => {
    await fetch(`${t.url}/metrics`)
    await fetch(`${t.url}/metrics`, { headers: { authorization: 'Basic YTpi' } })
    await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}x` } })
    await fetch(`${t.url}/metrics`, { headers: { authorization: 'Bearer a b' } })
    const text = await (await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text()
    const count = (outcome: string) => Number(new RegExp(`devicegate_http_requests_total\\{endpoint="/metrics",outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1] ?? 0)
    expect(count('no_credentials')).toBeGreaterThanOrEqual(2)
    expect(count('invalid_token')).toBeGreaterThanOrEqual(1)
    expect(count('invalid_request')).toBeGreaterThanOrEqual(1)
    expect(text).not.toMatch(/endpoint="\/metrics",outcome="http_40[01]"/)
  })
})

describe('/metrics on a listener of its own', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await fixtureConfigFile({ governance: { metrics: { listen: { host: '127.0.0.1', port: 0 } } } }) })
  })
  afterAll(async () => t?.close())

  it('serves /metrics there and 404 on the main listener', async () => {
    const url = t.server.governance.metricsUrl!
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(url).not.toBe(t.url)
    await fetch(`${t.url}/token`, { method: 'POST' })
    const own = await fetch(`${url}/metrics`)
    expect(own.status).toBe(200)
    expect(await own.text()).toMatch(/devicegate_http_requests_total\{endpoint="\/token"/)
    expect((await fetch(`${t.url}/metrics`)).status).toBe(404)
  })
})

describe('loading the metrics token', () => {
  it('refuses a variable that is unset or shorter than 32 characters', async () => {
    await expect(loadMetricsToken({ bearerTokenEnv: 'X' }, {})).rejects.toThrow(
      'governance.metrics.bearer_token_env: environment variable X must hold at least 32 characters',
    )
    await expect(loadMetricsToken({ bearerTokenEnv: 'X' }, { X: 'short' })).rejects.toThrow(/at least 32/)
    expect(await loadMetricsToken({}, {})).toBeUndefined()
  })
})
