/**
 * Governance: every anomaly detector — the trigger, the `anomaly.raised` event, and the action
 * taken — plus orphaned tokens (disable a user or client; a configuration change at start-up).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ConfigFile } from '../src/config/schema.js'
import type { AuditEventRecord } from '../src/storage/store.js'
import { dpopKey, makeProof } from './support/dpop.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, PageSession, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

async function governedConfig(anomalies: Record<string, unknown>): Promise<ConfigFile> {
  return fixtureConfigFile({ trusted_proxies: ['127.0.0.1'], governance: { anomalies } } as never)
}

function helpers(get: () => TestServer) {
  const t = () => get()
  return {
    async login(user = 'alice', ip = '203.0.113.10') {
      const headers = { 'x-forwarded-for': ip }
      const auth = await postForm(`${t().url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' }, headers)
      await approveAs(t().url, auth.json.user_code, 'approve', user)
      const tok = await postForm(`${t().url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' }, headers)
      expect(tok.status).toBe(200)
      return tok.json as { access_token: string; refresh_token: string }
    },
    introspect: async (token: string) => (await postForm(`${t().url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json,
    refresh: (token: string, ip = '203.0.113.10') =>
      postForm(`${t().url}/token`, { grant_type: 'refresh_token', refresh_token: token, client_id: 'cli' }, { 'x-forwarded-for': ip }),
    /** `anomaly.raised` audit events of one kind. */
    async raised(kind: string): Promise<(AuditEventRecord & { d: any })[]> {
      await t().server.governance.audit!.flush()
      const events = await t().server.store.listAuditEvents({ afterSeq: 0, limit: 100_000 })
      return events.filter((e) => e.type === 'anomaly.raised').map((e) => ({ ...e, d: JSON.parse(e.details) })).filter((e) => e.d.kind === kind)
    },
    async stored(kind: string) {
      return t().server.store.listAnomalies({ sinceTime: 0, kind, limit: 1000 })
    },
  }
}

describe('anomaly detectors', () => {
  let t: TestServer
  const h = helpers(() => t)
  beforeAll(async () => {
    t = await startTestServer({
      config: await governedConfig({
        refresh_token_reuse: { action: 'revoke_user' },
        token_used_from_new_ip_range: { action: 'revoke_grant' },
        dpop_key_mismatch: { action: 'revoke_grant' },
        slow_down_ignored: { action: 'revoke_grant', threshold: 2 },
        user_code_guessing: { action: 'alert', threshold: 3 },
        device_authorization_burst: { action: 'revoke_grant', per_ip: 3, per_client: 1000 },
        approval_network_mismatch: { action: 'alert' },
        dormant_grant: { action: 'revoke_grant', after_seconds: 3600 },
      }),
    })
  })
  afterAll(async () => t?.close())

  it('refresh_token_reuse: a rotated refresh token presented again → event, and (revoke_user) every family of the user revoked', async () => {
    const victim = await h.login('mallory', '203.0.113.20')
    const other = await h.login('mallory', '203.0.113.20')
    const first = await h.refresh(victim.refresh_token, '203.0.113.20')
    expect(first.status).toBe(200)
    expect((await h.refresh(victim.refresh_token, '203.0.113.20')).json.error).toBe('invalid_grant')
    const [event] = await h.raised('refresh_token_reuse')
    expect(event).toMatchObject({ subject: 'mallory', clientId: 'cli', d: { action: 'revoke_user' } })
    expect(event!.d.revokedGrants).toBeGreaterThanOrEqual(1)
    expect((await h.introspect(other.access_token)).active).toBe(false)
    expect((await h.stored('refresh_token_reuse'))[0]).toMatchObject({ subject: 'mallory', action: 'revoke_user' })
  })

  it('token_used_from_new_ip_range: a refresh from another /24 than the device authorization → event, family revoked', async () => {
    const tok = await h.login('alice', '203.0.113.10')
    const same = await h.refresh(tok.refresh_token, '203.0.113.99') // same /24: nothing
    expect(same.status).toBe(200)
    expect(await h.raised('token_used_from_new_ip_range')).toHaveLength(0)
    expect((await h.refresh(same.json.refresh_token, '198.51.100.7')).status).toBe(200)
    const [event] = await h.raised('token_used_from_new_ip_range')
    expect(event).toMatchObject({ subject: 'alice', ip: '198.51.100.7', d: { issuedFrom: '203.0.113.0/24', usedFrom: '198.51.100.0/24', action: 'revoke_grant', revokedGrants: 1 } })
    expect(event!.grantId).toBeTruthy()
    const [row] = await t.server.store.listGrantSummaries({ ids: [event!.grantId!] }, { limit: 1 })
    expect(row!.revokedAt).not.toBeNull()
  })

  it('dpop_key_mismatch: a bound refresh token with another key → event, family revoked', async () => {
    const key = await dpopKey()
    const thief = await dpopKey()
    const proof = (k: typeof key, path: string) => makeProof(k, { htu: `${t.url}${path}`, now: t.clock.nowSeconds() })
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' }, { dpop: await proof(key, '/device_authorization'), 'x-forwarded-for': '203.0.113.30' })
    expect(auth.status).toBe(200)
    await approveAs(t.url, auth.json.user_code)
    const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' }, { dpop: await proof(key, '/token'), 'x-forwarded-for': '203.0.113.30' })
    expect(tok.status).toBe(200)
    expect(tok.json.token_type).toBe('DPoP')
    const stolen = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tok.json.refresh_token, client_id: 'cli' }, { dpop: await proof(thief, '/token'), 'x-forwarded-for': '203.0.113.30' })
    expect(stolen.json.error).toBe('invalid_grant')
    const [event] = await h.raised('dpop_key_mismatch')
    expect(event).toMatchObject({ d: { action: 'revoke_grant', revokedGrants: 1, boundJkt: key.jkt, presentedJkt: thief.jkt } })
    expect((await h.introspect(tok.json.access_token)).active).toBe(false)
  })

  it('dpop_key_mismatch: a bound device code polled with another key → audited, event, device authorization denied (issue 16 item 4)', async () => {
    const key = await dpopKey()
    const thief = await dpopKey()
    const headers = { 'x-forwarded-for': '203.0.113.31' }
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read', dpop_jkt: key.jkt }, headers)
    expect(auth.status).toBe(200)
    const poll = async (k: typeof key) =>
      postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' }, { ...headers, dpop: await makeProof(k, { htu: `${t.url}/token`, now: t.clock.nowSeconds() }) })
    const stolen = await poll(thief)
    expect(stolen.status).toBe(400)
    expect(stolen.json.error).toBe('invalid_grant')
    await t.server.governance.audit!.flush()
    const rejected = (await t.server.store.listAuditEvents({ afterSeq: 0, limit: 100_000 }))
      .filter((e) => e.type === 'dpop_proof.rejected')
      .map((e) => JSON.parse(e.details))
    expect(rejected).toContainEqual(expect.objectContaining({ reason: 'key_mismatch', tokenType: 'device_code', boundJkt: key.jkt, presentedJkt: thief.jkt }))
    const events = (await h.raised('dpop_key_mismatch')).filter((e) => e.d.tokenType === 'device_code')
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ clientId: 'cli', ip: '203.0.113.31', d: { action: 'revoke_grant', deniedDeviceAuthorizations: 1, boundJkt: key.jkt, presentedJkt: thief.jkt } })
    // The configured action denied the code: the rightful device learns it at its next poll.
    t.clock.advance(6)
    expect((await poll(key)).json.error).toBe('access_denied')
  })

  it('slow_down_ignored: a device code polled too fast twice → event, device authorization denied', async () => {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' }, { 'x-forwarded-for': '192.0.2.200' })
    const poll = () => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' })
    expect((await poll()).json.error).toBe('authorization_pending')
    expect((await poll()).json.error).toBe('slow_down')
    expect(await h.raised('slow_down_ignored')).toHaveLength(0)
    expect((await poll()).json.error).toBe('slow_down')
    const [event] = await h.raised('slow_down_ignored')
    expect(event).toMatchObject({ clientId: 'cli', d: { slowDowns: 2, action: 'revoke_grant', deniedDeviceAuthorizations: 1 } })
    t.clock.advance(60)
    expect((await poll()).json.error).toBe('access_denied')
  })

  it('user_code_guessing: wrong codes from one IP reach the threshold → event (alert)', async () => {
    const page = new PageSession(t.url)
    await page.get('/device')
    for (let i = 0; i < 3; i++) await page.post('/device', { user_code: 'BBBB-BBBB' })
    const [event] = await h.raised('user_code_guessing')
    expect(event).toMatchObject({ ip: '127.0.0.1', d: { action: 'alert', failures: 3 } })
    expect((await h.stored('user_code_guessing')).length).toBeGreaterThanOrEqual(1)
  })

  it('device_authorization_burst: more than per_ip requests from one IP in a window → event, that request denied', async () => {
    const codes = []
    for (let i = 0; i < 4; i++) codes.push((await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' }, { 'x-forwarded-for': '192.0.2.77' })).json)
    const event = (await h.raised('device_authorization_burst')).find((e) => e.ip === '192.0.2.77')
    expect(event).toMatchObject({ ip: '192.0.2.77', d: { source: 'ip', count: 4, limit: 3, action: 'revoke_grant', deniedDeviceAuthorizations: 1 } })
    const last = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: codes[3].device_code, client_id: 'cli' })
    expect(last.json.error).toBe('access_denied')
    const first = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: codes[0].device_code, client_id: 'cli' })
    expect(first.json.error).toBe('authorization_pending')
  })

  it('approval_network_mismatch: approved from another network than the request → event (alert: nothing revoked)', async () => {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' }, { 'x-forwarded-for': '198.51.100.66' })
    await approveAs(t.url, auth.json.user_code) // the approver's page requests come from 127.0.0.1
    const events = await h.raised('approval_network_mismatch')
    const event = events.find((e) => e.d.requestedFrom === '198.51.100.0/24')
    expect(event).toMatchObject({ subject: 'alice', ip: '127.0.0.1', d: { approvedFrom: '127.0.0.0/24', action: 'alert' } })
    const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' })
    expect(tok.status).toBe(200)
  })

  it('dormant_grant: a family unused for after_seconds → event on the sweep, family revoked', async () => {
    const tok = await h.login('alice')
    t.clock.advance(3601)
    const raised = await t.server.governance.anomalies.sweepDormant()
    expect(raised).toBeGreaterThanOrEqual(1)
    expect((await h.introspect(tok.refresh_token)).active).toBe(false)
    const events = await h.raised('dormant_grant')
    expect(events.at(-1)).toMatchObject({ d: { action: 'revoke_grant', revokedGrants: 1 } })
    expect(await t.server.governance.anomalies.sweepDormant()).toBe(0)
  })
})

describe('orphaned_token', () => {
  let t: TestServer
  const h = helpers(() => t)
  beforeAll(async () => {
    t = await startTestServer({ config: await governedConfig({}) })
  })
  afterAll(async () => t?.close())

  it('disabling a user revokes their families at once (introspection inactive, refresh fails), blocks sign-in, and is audited', async () => {
    const tok = await h.login('alice')
    const mal = await h.login('mallory')
    expect((await h.introspect(tok.access_token)).active).toBe(true)
    const revoked = await t.server.governance.principals.change('user', 'alice', 'disabled', 'admin:test')
    expect(revoked).toBeGreaterThanOrEqual(1)
    expect(await h.introspect(tok.access_token)).toEqual({ active: false })
    expect(await h.introspect(tok.refresh_token)).toEqual({ active: false })
    expect((await h.refresh(tok.refresh_token)).json.error).toBe('invalid_grant')
    expect((await h.introspect(mal.access_token)).active).toBe(true)
    const page = new PageSession(t.url)
    await page.get('/device')
    expect((await page.post('/device/sign-in', { username: 'alice', password: FIXTURE.password })).status).toBe(401)
    const [event] = await h.raised('orphaned_token')
    expect(event).toMatchObject({ subject: 'alice', actor: 'admin:test', d: { principal: 'user', reason: 'disabled', action: 'revoke_grant', revokedGrants: revoked } })
    const admin = (await t.server.store.listAuditEvents({ afterSeq: 0, limit: 10_000 })).filter((e) => e.type === 'admin.action')
    expect(JSON.parse(admin.at(-1)!.details)).toMatchObject({ action: 'user.disabled', revokedGrants: revoked })
    await t.server.governance.principals.change('user', 'alice', 'enabled', 'admin:test')
    expect((await page.post('/device/sign-in', { username: 'alice', password: FIXTURE.password })).status).toBe(303)
  })

  it('disabling a client revokes its families and makes it fail authentication', async () => {
    const cc = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect((await h.introspect(cc.json.access_token)).active).toBe(true)
    expect(await t.server.governance.principals.change('client', 'conf', 'disabled', 'admin:test')).toBeGreaterThanOrEqual(1)
    expect((await h.introspect(cc.json.access_token)).active).toBe(false)
    const again = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect(again.json.error).toBe('invalid_client')
    expect(await t.server.governance.principals.change('client', 'nope', 'disabled', 'admin:test')).toBeUndefined()
    await t.server.governance.principals.change('client', 'conf', 'enabled', 'admin:test')
  })

  it('revokes at start-up the families of a user removed from (or disabled in) the configuration', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devicegate-orphan-'))
    const storageUrl = `sqlite:${join(dir, 'shared.db')}`
    try {
      const first = await startTestServer({ storageUrl, config: await governedConfig({}) })
      const tok = await helpers(() => first).login('mallory')
      await first.close()
      const file = await governedConfig({})
      const second = await startTestServer({ storageUrl, config: { ...file, users: file.users.filter((u) => u.username !== 'mallory') } })
      try {
        const introspected = (await postForm(`${second.url}/introspect`, { token: tok.refresh_token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json
        expect(introspected).toEqual({ active: false })
        const [event] = await helpers(() => second).raised('orphaned_token')
        expect(event).toMatchObject({ subject: 'mallory', actor: 'system', d: { reason: 'removed_from_config' } })
      } finally {
        await second.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('orphaned_token detector off', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await governedConfig({ orphaned_token: { enabled: false } }) })
  })
  afterAll(async () => t?.close())

  // Nothing denies the approved code when the approver is disabled; redemption still must not
  // issue tokens on their authority, and says why (RFC 8628 §3.5 access_denied).
  it('refuses to redeem a code approved by a user disabled since, with its own description', async () => {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    await approveAs(t.url, auth.json.user_code, 'approve', 'mallory')
    await t.server.governance.principals.change('user', 'mallory', 'disabled', 'admin:test')
    const res = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' })
    expect(res.status).toBe(400)
    expect(res.json).toEqual({ error: 'access_denied', error_description: 'the approving user is no longer allowed' })
  })
})
