/**
 * Governance events recorded exactly once and in order through the synchronous/asynchronous
 * listener paths (GovernanceEvents.record): a code polled too fast well past the threshold
 * raises one `slow_down_ignored` anomaly (alert action, polls keep getting slow_down, RFC 8628
 * §3.5), and approvals and denials are audited once each, in the order made.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveAs, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

describe('governance events recorded once, in order', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await fixtureConfigFile({ governance: { anomalies: { slow_down_ignored: { action: 'alert', threshold: 2 } } } } as never) })
  })
  afterAll(() => t?.close())

  async function audit() {
    await t.server.governance.audit!.flush()
    return t.server.store.listAuditEvents({ afterSeq: 0, limit: 100_000 })
  }

  it('raises slow_down_ignored once for a code polled too fast past the threshold, sequentially and concurrently (RFC 8628 §3.5)', async () => {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli' })
    const poll = () => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, client_id: 'cli', device_code: auth.json.device_code })
    expect((await poll()).json.error).toBe('authorization_pending')
    for (let i = 0; i < 4; i++) expect((await poll()).json.error).toBe('slow_down')
    const burst = await Promise.all(Array.from({ length: 6 }, poll))
    expect(burst.every((r) => r.json.error === 'slow_down')).toBe(true)
    const raised = (await audit()).filter((e) => e.type === 'anomaly.raised' && JSON.parse(e.details).kind === 'slow_down_ignored')
    expect(raised).toHaveLength(1)
    expect(JSON.parse(raised[0]!.details)).toMatchObject({ slowDowns: 2, action: 'alert' })
    expect(await t.server.store.listAnomalies({ sinceTime: 0, kind: 'slow_down_ignored', limit: 10 })).toHaveLength(1)
  })

  it('audits each approval and denial once, in the order made', async () => {
    const codes = await Promise.all(Array.from({ length: 4 }, () => postForm(`${t.url}/device_authorization`, { client_id: 'cli' })))
    const decisions = ['approve', 'deny', 'approve', 'deny'] as const
    for (let i = 0; i < codes.length; i++) await approveAs(t.url, codes[i]!.json.user_code, decisions[i])
    const events = (await audit()).filter((e) => e.type === 'device_code.approved' || e.type === 'device_code.denied')
    expect(events.map((e) => e.type)).toEqual(['device_code.approved', 'device_code.denied', 'device_code.approved', 'device_code.denied'])
    const seqs = events.map((e) => e.seq)
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs)
  })
})
