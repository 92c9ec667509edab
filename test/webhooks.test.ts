/**
 * Signed webhooks (Standard Webhooks 1.0) through the outbox: revocations, anomalies and admin
 * actions arrive signed (verified here with the `standardwebhooks` reference library); retries
 * with backoff; an endpoint failing longer than `pause_after_seconds` is paused with an audit
 * event; the admin API lists deliveries, resumes the endpoint and retries a delivery; the secret
 * never reaches the logs.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { Writable } from 'node:stream'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../src/server.js'
import { signWebhook } from '../src/signals/webhooks.js'
import { postForm, startTestServer, type TestServer } from './support/server.js'
import { clientToken, deviceLogin, json, signalsConfig } from './support/signals.js'

const SECRET = `whsec_${randomBytes(32).toString('base64')}`
let t: TestServer
let hook: Server
let hookUrl = ''
const received: { id: string; type: string; data: any; raw: string }[] = []
const refused: string[] = []
let failing = false
let logs = ''

beforeAll(async () => {
  const verifier = new Webhook(SECRET)
  hook = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (failing) {
        res.writeHead(500).end()
        return
      }
      const raw = Buffer.concat(chunks).toString('utf8')
      try {
        const payload = verifier.verify(raw, req.headers as Record<string, string>) as { type: string; data: unknown }
        received.push({ id: String(req.headers['webhook-id']), type: payload.type, data: payload.data, raw })
        res.writeHead(204).end()
      } catch (err) {
        refused.push((err as Error).message)
        res.writeHead(400).end()
      }
    })
  })
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()))
  hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`
  process.env.DG_TEST_WEBHOOK_SECRET = SECRET
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs += String(chunk)
      done()
    },
  })
  t = await startTestServer({
    config: await signalsConfig({ webhooks: [{ id: 'siem', url: hookUrl, secret_env: 'DG_TEST_WEBHOOK_SECRET', pause_after_seconds: 60 }] }),
    logger: createLogger('debug', sink),
  })
})
afterAll(async () => {
  await t?.close()
  await new Promise((r) => hook?.close(r))
  delete process.env.DG_TEST_WEBHOOK_SECRET
})

async function waitFor(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('Standard Webhooks signing', () => {
  it('signs v1 HMAC-SHA256 over id.timestamp.body with the base64 key of whsec_ (reference vector)', () => {
    // The example of the Standard Webhooks specification.
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
    const body = '{"test": 2432232314}'
    expect(signWebhook(secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, body)).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=')
  })
})

describe('webhooks through the outbox', () => {
  it('delivers grant revocations, anomalies and admin actions, each verified by the reference library', async () => {
    const tokens = await deviceLogin(t.url)
    await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })
    await waitFor(() => received.some((r) => r.type === 'grant.revoked'), 'grant.revoked')
    const revoked = received.find((r) => r.type === 'grant.revoked')!
    expect(revoked.id).toMatch(/^msg_/)
    expect(revoked.data).toMatchObject({ clientId: 'cli', subject: 'alice', scope: 'read offline_access' })

    // Reusing a rotated refresh token raises an anomaly (and revokes the family).
    const again = await deviceLogin(t.url)
    const refreshed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', client_id: 'cli', refresh_token: again.refresh_token })
    expect(refreshed.status).toBe(200)
    await postForm(`${t.url}/token`, { grant_type: 'refresh_token', client_id: 'cli', refresh_token: again.refresh_token })
    await waitFor(() => received.some((r) => r.type === 'anomaly.raised'), 'anomaly.raised')
    expect(received.find((r) => r.type === 'anomaly.raised')!.data).toMatchObject({ kind: 'refresh_token_reuse', subject: 'alice' })

    const admin = await clientToken(t.url, 'admin-client')
    await deviceLogin(t.url)
    const res = await json(`${t.url}/admin/api/revocations`, 'POST', admin, { kind: 'user', username: 'alice' })
    expect(res.status).toBe(200)
    await waitFor(() => received.some((r) => r.type === 'admin.action'), 'admin.action')
    expect(received.find((r) => r.type === 'admin.action')!.data).toMatchObject({ actor: 'admin:admin-client', auditType: 'token.revoked', details: { via: 'central' } })
    expect(refused).toEqual([])
  })

  it('pauses an endpoint failing longer than pause_after_seconds (audit webhook.paused); the admin API shows it, resumes and retries', async () => {
    failing = true
    const count = received.length
    const tokens = await deviceLogin(t.url)
    await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })
    const admin = await clientToken(t.url, 'admin-client')
    const endpoint = async () => (await json(`${t.url}/admin/api/webhooks`, 'GET', admin)).body.items[0]
    const started = Date.now()
    for (;;) {
      const e = await endpoint()
      if (e.failing_since !== null) break
      if (Date.now() - started > 5000) throw new Error('endpoint never failed')
      await new Promise((r) => setTimeout(r, 20))
    }
    t.clock.advance(61)
    for (;;) {
      const e = await endpoint()
      if (e.status === 'paused') break
      if (Date.now() - started > 10_000) throw new Error('endpoint never paused')
      await new Promise((r) => setTimeout(r, 20))
    }
    // The audit log writes in batches after the change it records: wait for the record.
    const pausedEvent = async () => (await t.server.store.listAuditEvents({ limit: 10_000 })).find((e) => e.type === 'webhook.paused')
    await waitFor(async () => (await pausedEvent()) !== undefined, 'webhook.paused audited')
    expect(await pausedEvent()).toMatchObject({ actor: 'system' })
    const deliveries = await json(`${t.url}/admin/api/webhooks/siem/deliveries?status=pending`, 'GET', admin)
    expect(deliveries.status).toBe(200)
    expect(deliveries.body.endpoint).toMatchObject({ id: 'siem', status: 'paused' })
    const pending = deliveries.body.items[0]
    expect(pending).toMatchObject({ status: 'pending', last_error: 'HTTP 500' })
    expect(pending.attempts).toBeGreaterThanOrEqual(2)

    failing = false
    const resumed = await json(`${t.url}/admin/api/webhooks/siem/resume`, 'POST', admin)
    expect(resumed.body).toMatchObject({ status: 'enabled' })
    await waitFor(() => received.some((r) => r.id === pending.webhook_id), 'delivery after resume')
    expect(received.length).toBeGreaterThan(count)

    const retry = await json(`${t.url}/admin/api/webhooks/siem/deliveries/${pending.seq}/retry`, 'POST', admin)
    expect(retry.status).toBe(202)
    await waitFor(() => received.filter((r) => r.id === pending.webhook_id).length === 2, 'retried delivery')
    expect((await json(`${t.url}/admin/api/webhooks/siem/deliveries/999999/retry`, 'POST', admin)).status).toBe(404)
    // A malformed delivery id is 400 invalid_request, like the admin API's other path parameters.
    for (const bad of ['abc', '1.5', '-1', '1e3', '99999999999999999999']) {
      const res = await json(`${t.url}/admin/api/webhooks/siem/deliveries/${bad}/retry`, 'POST', admin)
      expect(res.status, bad).toBe(400)
      expect(res.body, bad).toEqual({ error: 'invalid_request', error_description: "'seq' must be a delivery sequence number (decimal digits)" })
    }
    // "limit" is decimal digits, as the admin API's other numbers: no exponent, hex, sign or blank.
    for (const bad of ['1e2', '0x10', ' 5', '+5', '5.0', '', '0', '1001']) {
      const res = await json(`${t.url}/admin/api/webhooks/siem/deliveries?limit=${encodeURIComponent(bad)}`, 'GET', admin)
      expect(res.status, bad).toBe(400)
      expect(res.body, bad).toEqual({ error: 'invalid_request', error_description: "'limit' must be an integer between 1 and 1000" })
    }
    expect((await json(`${t.url}/admin/api/webhooks/siem/deliveries?limit=1000`, 'GET', admin)).status).toBe(200)
    expect((await json(`${t.url}/admin/api/webhooks/nope/deliveries`, 'GET', admin)).status).toBe(404)
    expect((await json(`${t.url}/admin/api/webhooks`, 'GET', undefined)).status).toBe(401)
  })

  it('never writes the secret to the logs', () => {
    expect(logs.length).toBeGreaterThan(0)
    expect(logs).not.toContain(SECRET)
    expect(logs).not.toContain(SECRET.slice('whsec_'.length))
  })
})
