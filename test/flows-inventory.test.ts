/**
 * The inventory shows where the approval came from (address, country, network)
 * beside the request's, and lists the device flows that were denied by the person or refused by
 * policy (and pending or expired ones) as well as those that issued tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listFlows, listInventory } from '../src/governance/inventory.js'
import type { GeoLookup } from '../src/policy/geo.js'
import { fixtureConfigFile, PageSession, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const GEO: Record<string, { country: string; asn: number; asOrg: string }> = {
  '127.0.0.1': { country: 'NL', asn: 64500, asOrg: 'Office Net' },
  '203.0.113.9': { country: 'NL', asn: 64500, asOrg: 'Office Net' },
}
const geo: GeoLookup = { lookup: (ip) => GEO[ip] ?? { country: null, asn: null, asOrg: null } }

let t: TestServer
beforeAll(async () => {
  const base = await fixtureConfigFile()
  const deploy = { client_id: 'deploy', name: 'Deploy CLI', type: 'public', grant_types: [DEVICE_GRANT, 'refresh_token'], scopes: ['read'], risk_tier: 'high' }
  t = await startTestServer({ geo, config: await fixtureConfigFile({ clients: [...base.clients, deploy], trusted_proxies: ['127.0.0.1'] }) })
})
afterAll(async () => t?.close())

/** A device authorization requested from `from` (through the trusted proxy's X-Forwarded-For). */
async function requestFlow(clientId: string, from: string) {
  const res = await postForm(`${t.url}/device_authorization`, { client_id: clientId, scope: 'read' }, { 'x-forwarded-for': from })
  expect(res.status).toBe(200)
  return res.json as { device_code: string; user_code: string }
}
async function decide(userCode: string, decision: 'approve' | 'deny') {
  const page = new PageSession(t.url)
  await page.signIn('alice', 'correct horse battery staple')
  await page.decide(userCode, decision)
}

describe('inventory of device flows', () => {
  it('shows the approval address and location beside the request on an issued family', async () => {
    const flow = await requestFlow('cli', '203.0.113.9')
    await decide(flow.user_code, 'approve')
    const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: flow.device_code, client_id: 'cli' })
    expect(tok.status).toBe(200)
    const { items } = await listInventory(t.server.store, t.clock, { subject: 'alice', clientId: 'cli' })
    expect(items[0]!.device_authorization).toMatchObject({
      request_ip: '203.0.113.9',
      request_location: { country: 'NL', asn: 64500, as_org: 'Office Net' },
      approval: { ip: '127.0.0.1', country: 'NL', asn: 64500, as_org: 'Office Net' },
    })
    const flows = await listFlows(t.server.store, t.clock, { status: 'redeemed', clientId: 'cli' })
    expect(flows.items[0]).toMatchObject({ status: 'redeemed', subject: 'alice', grant_id: items[0]!.grant_id, request: { ip: '203.0.113.9', country: 'NL' }, approval: { ip: '127.0.0.1' } })
  })

  it('lists a flow refused by policy (high-risk app, approver on another network) with its reasons', async () => {
    const flow = await requestFlow('deploy', '198.51.100.7')
    await decide(flow.user_code, 'approve')
    const refused = await listFlows(t.server.store, t.clock, { status: 'refused' })
    expect(refused.items).toHaveLength(1)
    expect(refused.items[0]).toMatchObject({ status: 'refused', client_id: 'deploy', subject: 'alice', policy_decision: 'deny', grant_id: null, request: { ip: '198.51.100.7', country: null }, approval: { ip: '127.0.0.1', country: 'NL' } })
    expect(refused.items[0]!.reasons.length).toBeGreaterThan(0)
    expect((await listFlows(t.server.store, t.clock, { status: 'denied' })).items.map((f) => f.client_id)).not.toContain('deploy')
  })

  it('lists a flow the person denied, and pending ones until they expire', async () => {
    const denied = await requestFlow('cli', '203.0.113.9')
    await decide(denied.user_code, 'deny')
    const d = await listFlows(t.server.store, t.clock, { status: 'denied' })
    expect(d.items.map((f) => f.status)).toEqual(['denied'])
    expect(d.items[0]!.approval).toMatchObject({ ip: '127.0.0.1' })

    await requestFlow('opaque-cli', '203.0.113.9')
    expect((await listFlows(t.server.store, t.clock, { status: 'pending' })).items.map((f) => f.client_id)).toEqual(['opaque-cli'])
    t.clock.advance(700)
    expect((await listFlows(t.server.store, t.clock, { status: 'pending' })).items).toHaveLength(0)
    expect((await listFlows(t.server.store, t.clock, { status: 'expired' })).items.map((f) => f.client_id)).toEqual(['opaque-cli'])
    const all = await listFlows(t.server.store, t.clock, { limit: 2 })
    expect(all.items).toHaveLength(2)
    expect(all.next_cursor).toEqual(expect.any(String))
    const rest = await listFlows(t.server.store, t.clock, { limit: 10, cursor: all.next_cursor! })
    expect(rest.items).toHaveLength(2)
  })
})
