/**
 * Storage contract: the governance console's read models (src/storage/console-views.ts), on every
 * adapter (test/support/store-contract.ts).
 */
import { beforeAll, expect, it } from 'vitest'
import { chainHash } from '../../src/governance/audit.js'
import type { Store } from '../../src/storage/store.js'
import { bundle, deviceGrant, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('console views', (contract) => {
  let store: Store
  const grants: string[] = []

  beforeAll(async () => {
    store = contract.store
    // approved and redeemed from 198.51.100.7 → a live family; denied by a person; refused by policy
    for (const [i, ip] of ['198.51.100.7', '198.51.100.8', '192.0.2.1'].entries()) {
      const d = deviceGrant({ requestIp: ip, createdAt: NOW + i })
      await store.createDeviceGrant(d)
      await store.decideDeviceGrant(d.id, 'approved', 'alice', NOW + 10)
      if (i === 0) await store.saveDeviceGrantDecision(d.id, 'allow', JSON.stringify({ facts: { request: { ip, country: 'NL' }, approver: { ip: '203.0.113.9', country: 'NL' } } }), NOW + 10)
      const b = bundle({ clientId: i === 2 ? 'deploy' : 'cli' })
      b.grant = { ...b.grant, deviceGrantId: d.id, createdAt: NOW + i }
      expect(await store.redeemDeviceGrant(d.id, NOW + 11, b)).toBe(true)
      grants.push(b.grant.id)
    }
    const denied = deviceGrant()
    await store.createDeviceGrant(denied)
    await store.decideDeviceGrant(denied.id, 'denied', 'bob', NOW + 20)
    const refused = deviceGrant()
    await store.createDeviceGrant(refused)
    await store.saveDeviceGrantDecision(refused.id, 'deny', JSON.stringify({ facts: { request: { ip: '1.2.3.4', country: 'DE' } } }), NOW + 30)
    await store.decideDeviceGrant(refused.id, 'denied', 'carol', NOW + 30)
    for (const n of [1, 2])
      await store.insertAnomaly({ id: `an${n}`, kind: 'dormant_grant', time: NOW + n, dedupeKey: null, clientId: 'cli', subject: 'alice', grantId: grants[0]!, ip: null, action: 'alert', details: '{}' })
    await store.appendAuditEvents(
      [1, 2, 3].map((n) => ({ time: NOW + n, type: n === 2 ? 'token.revoked' : 'token.issued', actor: 'x', clientId: 'cli', subject: 'alice', ip: null, grantId: grants[0]!, details: '{}' })),
      chainHash,
    )
  })
  it('counts approvals, denials by people, refusals by policy and anomalies per hour', async () => {
    const h = await store.countHourly(NOW - 3600, NOW + 7200)
    const hour = Math.floor((NOW + 10) / 3600)
    expect(h.approvals.get(hour)).toBe(3)
    expect(h.denials.get(Math.floor((NOW + 20) / 3600))).toBe(1)
    expect(h.refusals.get(Math.floor((NOW + 30) / 3600))).toBe(1)
    expect([...h.anomalies.values()].reduce((a, b) => a + b, 0)).toBe(2)
  })

  it('counts live grants per client', async () => {
    const m = await store.countActiveGrantsByClient(NOW + 100)
    expect(m.get('cli')).toBe(2)
    expect(m.get('deploy')).toBe(1)
  })

  it('searches grants by network prefix, client list and status, newest first with a keyset cursor', async () => {
    const now = NOW + 100
    expect((await store.searchGrants({ now, network: '198.51.100.' }, { limit: 10 })).map((g) => g.id)).toEqual([grants[1], grants[0]])
    expect((await store.searchGrants({ now, network: '198_51' }, { limit: 10 })).length).toBe(0) // LIKE wildcards are escaped
    expect((await store.searchGrants({ now, clientIds: ['deploy'] }, { limit: 10 })).map((g) => g.id)).toEqual([grants[2]])
    expect(await store.searchGrants({ now, clientIds: [] }, { limit: 10 })).toEqual([])
    expect((await store.searchGrants({ now, country: 'NL' }, { limit: 10 })).map((g) => g.id)).toEqual([grants[0]])
    expect((await store.searchGrants({ now, network: '203.0.113.9' }, { limit: 10 })).map((g) => g.id)).toEqual([grants[0]])
    expect((await store.searchGrants({ now, country: 'DE' }, { limit: 10 })).length).toBe(0)
    expect((await store.searchGrants({ now, status: 'revoked' }, { limit: 10 })).length).toBe(0)
    expect((await store.searchGrants({ now, unusedSince: NOW + 2 }, { limit: 10 })).length).toBe(2)
    const first = await store.searchGrants({ now }, { limit: 2 })
    const rest = await store.searchGrants({ now }, { limit: 2, after: { time: first[1]!.createdAt, id: first[1]!.id } })
    expect([...first, ...rest].map((g) => g.id)).toEqual([grants[2], grants[1], grants[0]])
    expect(first[0]!.requestIp).toBe('192.0.2.1')
    expect(first[0]!.approvedAt).toBe(NOW + 10)
  })

  it('acknowledges an anomaly once; open counts and filters follow', async () => {
    expect(await store.countOpenAnomalies()).toBe(2)
    expect(await store.acknowledgeAnomaly('an1', 'otto', 'checked', NOW + 50)).toBe(true)
    expect(await store.acknowledgeAnomaly('an1', 'ada', 'again', NOW + 51)).toBe(false)
    expect(await store.countOpenAnomalies()).toBe(1)
    expect((await store.searchAnomalies({ state: 'open' }, { limit: 10 })).map((a) => a.id)).toEqual(['an2'])
    expect(await store.findAnomaly('an1')).toMatchObject({ acknowledgedBy: 'otto', note: 'checked', acknowledgedAt: NOW + 50 })
    const page1 = await store.searchAnomalies({}, { limit: 1 })
    expect((await store.searchAnomalies({}, { limit: 1, after: { time: page1[0]!.time, id: page1[0]!.id } })).map((a) => a.id)).toEqual(['an1'])
  })

  it('browses audit events newest first by seq, filtered, and per grant', async () => {
    const all = await store.searchAudit({}, { limit: 10 })
    expect(all.map((e) => e.seq)).toEqual([3, 2, 1])
    expect((await store.searchAudit({ type: 'token.revoked' }, { limit: 10 })).map((e) => e.seq)).toEqual([2])
    expect((await store.searchAudit({}, { limit: 10, beforeSeq: 3 })).map((e) => e.seq)).toEqual([2, 1])
    expect((await store.listAuditOfGrant(grants[0]!)).length).toBe(3)
    expect(await store.findLastCheckpoint()).toBeUndefined()
  })
})
