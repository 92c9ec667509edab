/**
 * Governance: Prometheus metrics at /metrics — requests by endpoint and OAuth outcome, pending
 * device codes, approvals, denials, tokens, revocations, anomalies, latency.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveAs, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: TestServer
beforeAll(async () => {
  t = await startTestServer()
})
afterAll(async () => t?.close())

async function scrape(): Promise<string> {
  const res = await fetch(`${t.url}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return res.text()
}
/** The value of one sample line, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('/metrics', () => {
  it('counts requests by endpoint and OAuth outcome, decisions, tokens, revocations and anomalies', async () => {
    const a = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
    const b = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    const poll = (code: string) => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: code, client_id: 'cli' })
    await poll(a.json.device_code)
    await poll(a.json.device_code) // slow_down
    let text = await scrape()
    expect(sample(text, 'devicegate_pending_device_codes')).toBe(3)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/device_authorization",outcome="ok"}')).toBe(3)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/token",outcome="authorization_pending"}')).toBe(1)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/token",outcome="slow_down"}')).toBe(1)
    expect(sample(text, 'devicegate_http_request_duration_seconds_count{endpoint="/token"}')).toBe(2)

    await approveAs(t.url, a.json.user_code)
    await approveAs(t.url, b.json.user_code, 'deny')
    t.clock.advance(20)
    const tokens = await poll(a.json.device_code)
    expect(tokens.status).toBe(200)
    await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token, client_id: 'cli' })
    await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token, client_id: 'cli' })
    await postForm(`${t.url}/revoke`, { token: tokens.json.access_token, client_id: 'cli' })
    await postForm(`${t.url}/nowhere`, {})
    text = await scrape()
    expect(sample(text, 'devicegate_pending_device_codes')).toBe(1)
    expect(sample(text, 'devicegate_approvals_total')).toBe(1)
    expect(sample(text, 'devicegate_denials_total')).toBe(1)
    expect(sample(text, `devicegate_tokens_issued_total{grant_type="${DEVICE_GRANT}"}`)).toBe(1)
    expect(sample(text, 'devicegate_tokens_refreshed_total')).toBe(1)
    expect(sample(text, 'devicegate_refresh_token_reuse_total')).toBe(1)
    expect(sample(text, 'devicegate_anomalies_total{kind="refresh_token_reuse"}')).toBe(1)
    expect(sample(text, 'devicegate_revocations_total{via="rfc7009"}')).toBe(1)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/token",outcome="invalid_grant"}')).toBe(1)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="unmatched",outcome="invalid_request"}')).toBeUndefined()
    expect(text).toMatch(/devicegate_http_requests_total\{endpoint="unmatched",outcome="http_404"\} 1/)
  })

  it('counts a protected resource\'s bare challenge to a request without credentials as no_credentials, not invalid_token (RFC 6750 §3.1)', async () => {
    // The route answers it itself (/userinfo) or a hook refuses it before the body is read (the admin API).
    for (const headers of [{}, { authorization: 'Basic Y2xpOng=' }] as Record<string, string>[]) {
      const res = await fetch(`${t.url}/userinfo`, { headers })
      expect(res.status).toBe(401)
      expect(await res.text()).toBe('{}')
    }
    const admin = await fetch(`${t.url}/admin/api/grants`)
    expect(admin.status).toBe(401)
    expect(await admin.text()).toBe('{}')
    // A token that is checked and refused is still invalid_token.
    const unknown = await fetch(`${t.url}/userinfo`, { headers: { authorization: 'Bearer not-a-token' } })
    expect(unknown.status).toBe(401)
    const text = await scrape()
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/userinfo",outcome="no_credentials"}')).toBe(2)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/userinfo",outcome="invalid_token"}')).toBe(1)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/admin/api/grants",outcome="no_credentials"}')).toBe(1)
    expect(sample(text, 'devicegate_http_requests_total{endpoint="/admin/api/grants",outcome="invalid_token"}')).toBeUndefined()
  })
})
