/**
 * Denials and detectors (issue 16 §6), over HTTP with the fake geo database of the policy fixture:
 * an approval the policy forbids is denied when the review is shown (the device's next poll gets
 * `access_denied`, RFC 8628 §3.5, without anyone pressing Deny); `approval_network_mismatch` is
 * raised for such refused approvals too; a client whose policy refuses refreshes from a new
 * country or network is refused AT that refresh with `invalid_grant` and a reason (RFC 6749 §5.2),
 * its family kept, instead of being revoked after the tokens were issued.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Approver, NET, startDeviceFlow, startPolicyServer, TEST_POLICY_YAML, type PolicyTestServer } from './support/policy-fixture.js'
import { postForm } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: PolicyTestServer | undefined
afterEach(async () => {
  await t?.close()
  t = undefined
})

async function poll(server: PolicyTestServer, clientId: string, deviceCode: string) {
  server.clock.advance(10)
  return postForm(`${server.url}/token`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId }, { 'x-forwarded-for': NET.home })
}
async function auditEvents(server: PolicyTestServer, type: string) {
  await server.server.governance.audit?.flush()
  const all = await server.server.store.listAuditEvents({ afterSeq: 0, limit: 100_000 })
  return all.filter((e) => e.type === type).map((e) => ({ ...e, d: JSON.parse(e.details) as Record<string, any> }))
}

describe('an approval the policy forbids is denied at once', () => {
  it('the device gets access_denied at its next poll, though nobody pressed Deny; the page offers no buttons', async () => {
    t = await startPolicyServer()
    // High-tier app, approver in another country: the baseline proximity rule denies.
    const flow = await startDeviceFlow(t.url, 'deploy-cli', 'deploy', NET.home)
    const page = new Approver(t.url, NET.abroad)
    await page.signIn('alice')
    const review = await page.review(flow.json.user_code)
    expect(review.status).toBe(200)
    expect(review.body).toContain('id="policy_denied"')
    expect(review.body).toContain('It has been denied')
    expect(review.body).not.toContain('value="approve"')
    expect(review.body).not.toContain('value="deny"')
    const res = await poll(t, 'deploy-cli', flow.json.device_code)
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('access_denied')
    const [denied] = await auditEvents(t, 'device_code.denied')
    expect(denied).toMatchObject({ subject: 'alice', ip: NET.abroad, d: { deniedByPolicy: true, requestIp: NET.home } })
    expect(denied!.d.reasonCodes).toContain('proximity_mismatch')
    // Approving afterwards (a stale tab, a hand-made POST) shows the refusal again and changes nothing.
    const again = await page.post('/device', { user_code: flow.json.user_code, decision: 'approve' })
    expect(again.status).toBe(403)
    expect(again.body).toContain('proximity_mismatch')
  })

  it('raises approval_network_mismatch for the refused approval too', async () => {
    t = await startPolicyServer()
    const flow = await startDeviceFlow(t.url, 'deploy-cli', 'deploy', NET.home)
    const page = new Approver(t.url, NET.abroad)
    await page.signIn('alice')
    await page.review(flow.json.user_code)
    const anomalies = await t.server.store.listAnomalies({ sinceTime: 0, kind: 'approval_network_mismatch', limit: 10 })
    expect(anomalies).toHaveLength(1)
    expect(anomalies[0]).toMatchObject({ subject: 'alice', ip: NET.abroad })
    expect(JSON.parse(anomalies[0]!.details)).toMatchObject({ approvedFrom: '203.0.113.0/24', requestedFrom: '198.51.100.0/24' })
  })
})

describe('refresh_from_new_location: refused at the refresh, not revoked after', () => {
  const policy = TEST_POLICY_YAML.replace(
    'clients:\n',
    'clients:\n  cli: { refresh_from_new_location: { on: [country, asn] } }\n',
  )

  async function login(server: PolicyTestServer) {
    const flow = await startDeviceFlow(server.url, 'cli', 'read offline_access', NET.home)
    const page = new Approver(server.url, NET.homePhone)
    await page.signIn('alice')
    expect((await page.decide(flow.json.user_code, 'approve'))).toBe(200)
    const tok = await poll(server, 'cli', flow.json.device_code)
    expect(tok.status).toBe(200)
    return tok.json as { refresh_token: string; access_token: string }
  }
  const refresh = (server: PolicyTestServer, token: string, ip: string) =>
    postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: token, client_id: 'cli' }, { 'x-forwarded-for': ip })

  it('answers invalid_grant with the reason from another country, keeps the family, and refreshes again from home', async () => {
    t = await startPolicyServer(policy)
    const tok = await login(t)
    const abroad = await refresh(t, tok.refresh_token, NET.abroad)
    expect(abroad.status).toBe(400)
    expect(abroad.headers.get('cache-control')).toBe('no-store')
    expect(abroad.json.error).toBe('invalid_grant')
    expect(abroad.json.error_description).toContain('refresh_from_new_location')
    // Nothing was issued, so nothing needs revoking; the token was not used up.
    const [decided] = (await auditEvents(t, 'policy.decided')).filter((e) => e.d.phase === 'refresh')
    expect(decided).toMatchObject({ ip: NET.abroad, d: { decision: 'deny' } })
    expect(decided!.d.reasons.map((r: { code: string }) => r.code)).toContain('refresh_from_new_location')
    expect(await auditEvents(t, 'token.refreshed')).toHaveLength(0)
    // Same country and network (another address of the home /24): allowed.
    const home = await refresh(t, tok.refresh_token, NET.homePhone)
    expect(home.status).toBe(200)
  })

  it('changes nothing for a client without the setting', async () => {
    t = await startPolicyServer()
    const tok = await login(t)
    expect((await refresh(t, tok.refresh_token, NET.abroad)).status).toBe(200)
  })
})
