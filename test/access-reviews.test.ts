/**
 * Access reviews: an access-review campaign of device-issued grants, through the admin API with a
 * frozen clock: the round opens, owners decide (never their own grants) with a justification, a
 * revoke goes through central revocation, the reminder hook fires once, the deadline applies the
 * default action (revoke for the admin tier) exactly once, evidence exports as JSON and CSV, the
 * recurring campaign opens its next round, and the compliance report sees the completed review.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ReviewItemView } from '../src/reviews/campaigns.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, TestClock, type TestServer } from './support/server.js'
import { defaultPracticesPeriod } from '../src/governance/client-practices.js'

const DAY = 86_400
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: TestServer
let dir: string
let adminToken: string
const clock = new TestClock()

let adminTokenAt = 0

/** Calls the admin API with a live admin token (a new one once the moved clock expired the last). */
async function api(path: string, init: { method?: string; body?: unknown } = {}) {
  if (clock.nowSeconds() - adminTokenAt > 300) {
    adminToken = (await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'admin' }, { authorization: basic('admin', FIXTURE.adminSecret) })).json.access_token
    adminTokenAt = clock.nowSeconds()
  }
  const res = await fetch(`${t.url}/admin/api${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${adminToken}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  })
  const text = await res.text()
  let json: any
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, json, text, headers: res.headers }
}

/** A device-flow login of `user` at `clientId`; returns the tokens. */
async function login(clientId: string, user: 'alice' | 'mallory') {
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: clientId, scope: 'read offline_access' })
  await approveAs(t.url, auth.json.user_code, 'approve', user)
  clock.advance(5)
  const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: clientId })
  expect(tok.status).toBe(200)
  return tok.json as { access_token: string; refresh_token: string }
}

const active = async (token: string) => (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active as boolean

async function auditOf(type: string) {
  await t.server.governance.audit?.flush()
  return (await t.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === type).map((e) => ({ ...e, d: JSON.parse(e.details) as Record<string, any> }))
}

describe('access-review campaign of device-issued grants (frozen clock)', () => {
  const tokens: Record<string, { access_token: string; refresh_token: string }> = {}
  let items: ReviewItemView[] = []
  const item = (clientId: string, subject: string) => items.find((i) => i.clientId === clientId && i.subject === subject)!
  let openedAt = 0

  beforeAll(async () => {
    clock.freeze()
    dir = mkdtempSync(join(tmpdir(), 'devicegate-reviews-'))
    const policy = join(dir, 'policy.yaml')
    // No baseline: the admin-tier app is approved with one click, so the test is about the review.
    writeFileSync(policy, 'version: 1\ninclude_baseline: false\nclients:\n  ops-cli: { confirm_code: false }\n')
    const file = await fixtureConfigFile()
    const device = ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']
    t = await startTestServer({
      clock,
      config: await fixtureConfigFile({
        policy: { file: policy, watch: false },
        clients: [
          ...file.clients.map((c) => (c.client_id === 'cli' ? { ...c, owners: ['alice', 'bob'], refresh_token_ttl_seconds: 200 * DAY } : c)),
          { client_id: 'ops-cli', name: 'Ops CLI', risk_tier: 'admin', grant_types: device, scopes: ['read', 'offline_access'], owners: ['bob'], refresh_token_ttl_seconds: 200 * DAY },
          { client_id: 'admin', name: 'Admin', type: 'confidential', client_secret_hash: await hash(FIXTURE.adminSecret), grant_types: ['client_credentials'], scopes: ['admin'] },
        ],
        users: [...file.users, { username: 'bob', display_name: 'Bob', password_hash: await hash('bob password 0123') }],
        reviews: { campaigns: [{ id: 'quarterly', name: 'Quarterly CLI review', reviewers: 'owners', scope: { clients: ['cli', 'ops-cli'] }, duration_days: 14, every_days: 90 }] },
      }),
    })
    tokens.aliceCli = await login('cli', 'alice')
    tokens.malloryCli = await login('cli', 'mallory')
    tokens.aliceOps = await login('ops-cli', 'alice')
  })
  afterAll(async () => {
    await t?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('opens round 1 with one item per live device-flow grant, reviewers = owners minus the person', async () => {
    openedAt = clock.nowSeconds()
    const tick = await api('/reviews/tick', { method: 'POST', body: {} })
    expect(tick.status).toBe(200)
    expect(tick.json.opened).toEqual(['quarterly.1'])
    const round = await api('/reviews/rounds/quarterly.1')
    expect(round.status).toBe(200)
    items = round.json.items
    expect(items).toHaveLength(3)
    expect(round.json.round).toMatchObject({ campaignId: 'quarterly', number: 1, openedAt, deadlineAt: openedAt + 14 * DAY, closedAt: null })
    expect(item('cli', 'alice').reviewers).toEqual(['bob'])
    expect(item('cli', 'mallory').reviewers).toEqual(['alice', 'bob'])
    expect(item('ops-cli', 'alice')).toMatchObject({ reviewers: ['bob'], defaultAction: 'revoke' })
    expect(item('cli', 'mallory').defaultAction).toBe('keep')
    expect(item('cli', 'alice').facts).toMatchObject({ person: 'alice', app: { id: 'cli', tier: 'standard' }, scope: 'read offline_access', ageDays: 0, policyDecision: { decision: 'allow' } })
    expect((await auditOf('review.round_opened'))[0]?.d).toMatchObject({ roundId: 'quarterly.1', items: 3 })
    // A second tick (or another instance) opens nothing more.
    expect((await api('/reviews/tick', { method: 'POST', body: {} })).json.opened).toEqual([])
  })

  it('shows each reviewer their inbox, never with their own grants', async () => {
    const alice = await api('/reviews/inbox?reviewer=alice')
    expect(alice.json.items.map((i: ReviewItemView) => `${i.clientId}/${i.subject}`)).toEqual(['cli/mallory'])
    const bob = await api('/reviews/inbox?reviewer=bob')
    expect(bob.json.items).toHaveLength(3)
  })

  it('refuses a reviewer deciding their own grant, a non-reviewer, and a decision without justification', async () => {
    const own = await api(`/reviews/items/${item('cli', 'alice').id}/decision`, { method: 'POST', body: { reviewer: 'alice', decision: 'keep', justification: 'mine' } })
    expect(own.status).toBe(403)
    expect(own.json).toMatchObject({ error: 'invalid_request', error_description: 'a reviewer never reviews their own grants' })
    const stranger = await api(`/reviews/items/${item('cli', 'mallory').id}/decision`, { method: 'POST', body: { reviewer: 'mallory', decision: 'keep', justification: 'x' } })
    expect(stranger.status).toBe(403)
    const silent = await api(`/reviews/items/${item('cli', 'mallory').id}/decision`, { method: 'POST', body: { reviewer: 'alice', decision: 'keep', justification: '  ' } })
    expect(silent.status).toBe(400)
    const odd = await api(`/reviews/items/${item('cli', 'mallory').id}/decision`, { method: 'POST', body: { reviewer: 'alice', decision: 'maybe', justification: 'x' } })
    expect(odd.status).toBe(400)
  })

  it('keeps with a justification, and a second decision on the same item is 409', async () => {
    clock.advance(DAY)
    const kept = await api(`/reviews/items/${item('cli', 'mallory').id}/decision`, { method: 'POST', body: { reviewer: 'alice', decision: 'keep', justification: '=still on the release team' } })
    expect(kept.status).toBe(200)
    expect(kept.json).toMatchObject({ decision: 'keep', decidedBy: 'alice', decidedVia: 'reviewer', decidedAt: openedAt + DAY })
    const again = await api(`/reviews/items/${item('cli', 'mallory').id}/decision`, { method: 'POST', body: { reviewer: 'bob', decision: 'revoke', justification: 'no' } })
    expect(again.status).toBe(409)
    expect(await active(tokens.malloryCli!.refresh_token)).toBe(true)
  })

  it('revokes through central revocation, audited and linked from the item', async () => {
    const revoked = await api(`/reviews/items/${item('cli', 'alice').id}/decision`, { method: 'POST', body: { reviewer: 'bob', decision: 'revoke', justification: 'left the team' } })
    expect(revoked.status).toBe(200)
    expect(revoked.json).toMatchObject({ decision: 'revoke', decidedBy: 'bob', revokedAt: openedAt + DAY })
    expect(await active(tokens.aliceCli!.access_token)).toBe(false)
    expect(await active(tokens.aliceCli!.refresh_token)).toBe(false)
    expect((await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.aliceCli!.refresh_token, client_id: 'cli' })).json.error).toBe('invalid_grant')
    const revocations = (await auditOf('token.revoked')).filter((e) => e.grantId === item('cli', 'alice').grantId)
    expect(revocations).toHaveLength(1)
    expect(revocations[0]!.d.reason).toContain(item('cli', 'alice').id)
    expect(revocations[0]!.actor).toBe('review:quarterly')
    expect((await auditOf('review.item_decided')).map((e) => e.d.decision)).toEqual(['keep', 'revoke'])
  })

  it('emits the reminder hook once, a day before the deadline', async () => {
    clock.advance(12 * DAY)
    expect((await api('/reviews/tick', { method: 'POST', body: {} })).json.reminded).toEqual(['quarterly.1'])
    expect((await api('/reviews/tick', { method: 'POST', body: {} })).json.reminded).toEqual([])
    const [reminder] = await auditOf('review.reminder_due')
    expect(reminder?.d).toMatchObject({ roundId: 'quarterly.1', undecided: 1, reviewers: ['bob'] })
  })

  it('at the deadline, revokes the undecided admin-tier item exactly once and closes the round', async () => {
    expect(await active(tokens.aliceOps!.refresh_token)).toBe(true)
    clock.advance(DAY)
    const first = await api('/reviews/tick', { method: 'POST', body: {} })
    expect(first.json).toMatchObject({ closed: ['quarterly.1'], defaulted: 1, revoked: 1, opened: [] })
    const second = await api('/reviews/tick', { method: 'POST', body: {} })
    expect(second.json).toMatchObject({ closed: [], defaulted: 0, revoked: 0 })
    expect(await active(tokens.aliceOps!.refresh_token)).toBe(false)
    expect(await active(tokens.malloryCli!.refresh_token)).toBe(true)
    expect((await auditOf('token.revoked')).filter((e) => e.grantId === item('ops-cli', 'alice').grantId)).toHaveLength(1)
    const round = await api('/reviews/rounds/quarterly.1')
    expect(round.json.round).toMatchObject({ closedAt: openedAt + 14 * DAY, closeReason: 'deadline' })
    expect(round.json.summary).toEqual({ items: 3, decided: 2, kept: 1, revoked: 2 })
    expect(round.json.items.find((i: ReviewItemView) => i.clientId === 'ops-cli')).toMatchObject({ decision: 'revoke', decidedVia: 'deadline', decidedBy: 'system:deadline', revokedAt: openedAt + 14 * DAY })
    // Deciding after the round closed is refused.
    const late = await api(`/reviews/items/${item('ops-cli', 'alice').id}/decision`, { method: 'POST', body: { reviewer: 'bob', decision: 'keep', justification: 'late' } })
    expect(late.status).toBe(409)
  })

  it('exports the evidence as CSV (formula cells neutralised)', async () => {
    const csv = await api('/reviews/rounds/quarterly.1?format=csv')
    expect(csv.status).toBe(200)
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8')
    const lines = csv.text.trim().split('\n')
    expect(lines[0]).toBe(
      'campaign_id,round_id,item_id,grant_id,client_id,person,scope,age_days,last_used_at,last_used_ip,policy_decision,reviewers,default_action,decision,decided_by,decided_at,decided_via,justification,revoked_at',
    )
    expect(lines).toHaveLength(4)
    expect(csv.text).toContain("'=still on the release team")
    expect(csv.text).toContain('left the team')
  })

  it('the compliance report counts the completed review (PR.AA-05, GV.OV-01 pass)', async () => {
    const report = await api('/reports/compliance')
    expect(report.status).toBe(200)
    const c = (id: string) => report.json.controls.find((x: { id: string }) => x.id === id)
    expect(c('PR.AA-05').verdict).toBe('pass')
    expect(c('GV.OV-01').verdict).toBe('warn') // one item was left to the default action
    const html = await api('/reports/compliance?format=html')
    expect(html.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(html.text).toContain('<section id="PR.AA-05">')
  })

  it('opens round 2 of the recurring campaign 90 days after round 1 opened, with the grants still live', async () => {
    clock.advance(75 * DAY)
    expect((await api('/reviews/tick', { method: 'POST', body: {} })).json.opened).toEqual([])
    clock.advance(DAY)
    const tick = await api('/reviews/tick', { method: 'POST', body: {} })
    expect(tick.json.opened).toEqual(['quarterly.2'])
    const round = await api('/reviews/rounds/quarterly.2')
    expect(round.json.round).toMatchObject({ number: 2, openedAt: openedAt + 90 * DAY })
    expect(round.json.items.map((i: ReviewItemView) => `${i.clientId}/${i.subject}`)).toEqual(['cli/mallory'])
    const campaigns = await api('/reviews/campaigns')
    expect(campaigns.json.items[0]).toMatchObject({ id: 'quarterly', source: 'config', everySeconds: 90 * DAY })
    expect(campaigns.json.items[0].rounds.map((r: { id: string }) => r.id)).toEqual(['quarterly.2', 'quarterly.1'])
  })

  it('reports per-client practices: approvals, same-device share and declared storage', async () => {
    const res = await api(`/clients/practices?since=${openedAt - DAY}`)
    expect(res.status).toBe(200)
    const cli = res.json.clients.find((c: { clientId: string }) => c.clientId === 'cli')
    // Both sides were this test process (same address, no platform in "node"): cannot tell.
    expect(cli).toMatchObject({ approvals: 2, sameDevice: 0, sameDeviceUnknown: 2, sameDeviceShare: 0, storage: { unknown: 2, keyring: 0 } })
    expect((await api('/clients/practices?since=tomorrow')).status).toBe(400)
  })

  it('answers 400 invalid_request to a query parameter given twice (since=1&since=2 was read as the date "1,2", in 2001), as the rest of the admin API does, never a report of another period', async () => {
    for (const [path, name] of [
      ['/clients/practices?since=1&since=2', 'since'],
      ['/clients/practices?until=1&until=2', 'until'],
      ['/reports/compliance?since=1&since=2', 'since'],
      ['/reports/compliance?format=json&format=json', 'format'],
      ['/reviews/rounds/quarterly.1?format=csv&format=csv', 'format'],
      ['/reviews/inbox?reviewer=alice&reviewer=bob', 'reviewer'],
    ] as const) {
      const res = await api(path)
      expect(res.status, path).toBe(400)
      expect(res.json, path).toEqual({ error: 'invalid_request', error_description: `'${name}' must be given once` })
    }
  })

  it('takes the times of the practices and compliance reports as the rest of the admin API does: epoch seconds or RFC 3339 with offset, never a form Date.parse guesses at', async () => {
    for (const value of ['March 1, 2026', '2026-03-01', '2026-02-30T00:00:00Z', '1,2', '2026-03-01T00:00:00', '-5', '1e9']) {
      for (const path of ['/clients/practices?since=', '/reports/compliance?until=']) {
        const res = await api(`${path}${encodeURIComponent(value)}`)
        expect(res.status, `${path}${value}`).toBe(400)
        expect(res.json.error, `${path}${value}`).toBe('invalid_request')
      }
    }
    const ok = await api(`/clients/practices?since=${encodeURIComponent('2026-03-01T00:00:00+01:00')}&until=1775000000`)
    expect(ok.status).toBe(200)
    expect({ since: ok.json.since, until: ok.json.until }).toEqual({ since: Date.UTC(2026, 1, 28, 23) / 1000, until: 1775000000 })
  })

  it('judges practices over the last 90 days when no period is asked for (the console\'s period too)', async () => {
    const res = await api('/clients/practices')
    expect(res.status).toBe(200)
    expect(res.json.until - res.json.since).toBe(90 * DAY)
    expect(defaultPracticesPeriod(res.json.until)).toEqual({ since: res.json.since, until: res.json.until })
  })

  it('creates a campaign through the admin API, refusing duplicates and bad input', async () => {
    const created = await api('/reviews/campaigns', { method: 'POST', body: { id: 'ops-adhoc', reviewers: 'group', reviewer_group: 'sec', scope: { tiers: ['admin'] } } })
    expect(created.status).toBe(201)
    expect(created.json).toMatchObject({ id: 'ops-adhoc', source: 'api', reviewers: 'group', reviewerGroup: 'sec' })
    expect((await api('/reviews/campaigns', { method: 'POST', body: { id: 'ops-adhoc', reviewers: 'owners' } })).status).toBe(409)
    expect((await api('/reviews/campaigns', { method: 'POST', body: { id: 'quarterly', reviewers: 'owners' } })).status).toBe(409)
    const invalid = await api('/reviews/campaigns', { method: 'POST', body: { id: 'x', reviewers: 'group' } })
    expect(invalid.status).toBe(400)
    expect(invalid.json.error_description).toContain('reviewer_group')
  })
})

describe('admin API description', () => {
  it('lists the reviews and report routes in /admin/api/openapi.json', async () => {
    const s = await startTestServer()
    try {
      const doc = (await (await fetch(`${s.url}/admin/api/openapi.json`)).json()) as { paths: Record<string, unknown> }
      for (const path of ['/reports/compliance', '/clients/practices', '/reviews/campaigns', '/reviews/rounds/{id}', '/reviews/items/{id}/decision', '/grants']) expect(doc.paths).toHaveProperty([path])
    } finally {
      await s.close()
    }
  })
})
