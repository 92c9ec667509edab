/**
 * Same-device use: the `device_flow_same_device` anomaly (RFC 10027, BCP 247: a cross-device flow
 * used where the browser runs on the requesting machine) and its metric.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ConfigFile } from '../src/config/schema.js'
import { fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

const LINUX_FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
const IPHONE_SAFARI = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const SDK_LINUX = 'devicegate-client/0.1 (linux; x64) node/20.11.0'

let t: TestServer
beforeEach(async () => {
  const config = (await fixtureConfigFile({ governance: { anomalies: { device_flow_same_device: { threshold: 3, window_seconds: 86_400 } } } } as never)) as ConfigFile
  t = await startTestServer({ config })
})
afterEach(async () => {
  await t.close()
})

/** An approval as the verification service reports it (approver: event.ip and its User-Agent). */
async function approval(n: number, approverIp: string, approverUserAgent: string, clientId = 'cli') {
  await t.server.governance.events.record({
    type: 'device_code.approved',
    actor: 'alice',
    clientId,
    subject: 'alice',
    ip: approverIp,
    details: { deviceGrantId: `dg${n}`, scope: 'read', requestIp: '198.51.100.10', requestUserAgent: SDK_LINUX, approverUserAgent },
  })
}

async function raised() {
  await t.server.governance.audit?.flush()
  const events = await t.server.store.listAuditEvents({ limit: 1000 })
  return events.filter((e) => e.type === 'anomaly.raised').map((e) => JSON.parse(e.details) as Record<string, unknown>)
}

describe('device_flow_same_device anomaly (RFC 10027 cross-device guidance)', () => {
  it('fires once on the third same-device approval of a client in the window, with the advice', async () => {
    await approval(1, '198.51.100.10', LINUX_FIREFOX)
    await approval(2, '198.51.100.10', LINUX_FIREFOX)
    expect(await raised()).toEqual([])
    await approval(3, '198.51.100.10', LINUX_FIREFOX)
    await approval(4, '198.51.100.10', LINUX_FIREFOX)
    const anomalies = (await raised()).filter((d) => d.kind === 'device_flow_same_device')
    expect(anomalies).toHaveLength(1)
    expect(anomalies[0]).toMatchObject({ kind: 'device_flow_same_device', action: 'alert', sameDeviceApprovals: 3 })
    expect(String(anomalies[0]!.advice)).toContain('PKCE')
    const stored = await t.server.store.listAnomalies({ sinceTime: 0, kind: 'device_flow_same_device', limit: 10 })
    expect(stored).toHaveLength(1)
    expect(stored[0]!.clientId).toBe('cli')
  })

  it('does not fire for a phone approving for a laptop behind the same address', async () => {
    for (let i = 0; i < 5; i++) await approval(i, '198.51.100.10', IPHONE_SAFARI)
    expect((await raised()).filter((d) => d.kind === 'device_flow_same_device')).toEqual([])
  })

  it('does not fire for approvals from another machine on another address', async () => {
    for (let i = 0; i < 5; i++) await approval(i, '198.51.100.77', LINUX_FIREFOX)
    expect((await raised()).filter((d) => d.kind === 'device_flow_same_device')).toEqual([])
  })

  it('counts same-device approvals per client in devicegate_same_device_approvals_total', async () => {
    await approval(1, '198.51.100.10', LINUX_FIREFOX, 'cli')
    await approval(2, '198.51.100.10', IPHONE_SAFARI, 'cli')
    await t.server.governance.events.record({
      type: 'device_code.approved',
      clientId: 'cli',
      ip: '198.51.100.10',
      details: { deviceGrantId: 'x', requestIp: '198.51.100.10', sameDevice: true },
    })
    const metrics = await (await fetch(`${t.url}/metrics`)).text()
    expect(metrics).toMatch(/devicegate_same_device_approvals_total\{client_id="cli"\} 2\n/)
  })
})
