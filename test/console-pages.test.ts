import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newPerson } from '../src/identity/people.js'
import { startConsoleServer, type ConsoleTestServer } from './support/console.js'

let t: ConsoleTestServer
let aliceGrant: string
let deployGrant: string
beforeAll(async () => {
  t = await startConsoleServer()
  aliceGrant = await t.seedGrant({ requestIp: '198.51.100.7' })
  deployGrant = await t.seedGrant({ client: 'deploy-cli', user: 'bob', requestIp: '192.0.2.44' })
})
afterAll(async () => {
  await t?.close()
})

async function audit(type: string) {
  await t.server.governance.audit?.flush()
  return (await t.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === type)
}

describe('console overview', () => {
  it('shows live counts and four server-rendered SVG charts with a table alternative, without script', async () => {
    await fetch(`${t.url}/device_authorization`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'client_id=cli&scope=read' })
    const c = await t.signIn('vera')
    const res = await c.get('/console')
    expect(res.status).toBe(200)
    expect(res.body).toMatch(/<span class="n">1<\/span>pending device codes/)
    expect(res.body).toMatch(/<span class="n">2<\/span>active grants/)
    expect(res.body).toContain('tier=low">1</a>')
    expect(res.body.match(/<svg class="chart"[^>]*role="img"/g)).toHaveLength(4)
    expect(res.body).toContain('Approvals per hour over the last 7 UTC days, today included, shown as solid bars: 2 in total')
    expect(res.body).toContain('<caption>Per day</caption>')
    expect(res.body).not.toContain('<script')
  })
})

describe('console grants', () => {
  it('filters by risk tier, person, network and status', async () => {
    const c = await t.signIn('vera')
    const high = await c.get('/console/grants?tier=low')
    expect(high.body).toContain(deployGrant.slice(-10))
    expect(high.body).not.toContain(aliceGrant.slice(-10))
    const net = await c.get('/console/grants?network=198.51.100.')
    expect(net.body).toContain(aliceGrant.slice(-10))
    expect(net.body).not.toContain(deployGrant.slice(-10))
    const approverNet = await c.get('/console/grants?network=203.0.113.9')
    expect(approverNet.body).toContain(aliceGrant.slice(-10))
    const bob = await c.get('/console/grants?person=bob&status=active')
    expect(bob.body).toContain(deployGrant.slice(-10))
    expect((await c.get('/console/grants?status=revoked')).body).toContain('No grants match.')
  })

  it('answers a filter it cannot use with a 400 page, not a 5xx', async () => {
    const c = await t.signIn('vera')
    for (const q of ['status=nope', 'tier=ultra', 'country=Germany', 'dormant_days=-3', 'network=%3Cscript%3E', 'after=garbage'])
      expect((await c.get(`/console/grants?${q}`)).status, q).toBe(400)
  })

  it('answers what the server refuses before any console route (Content-Encoding: 415, an HTTP/1.1 request without Host: 400, an unmet Expect: 417) with that status as a page, not a 500', async () => {
    const port = Number(new URL(t.url).port)
    const send = (text: string) =>
      new Promise<string>((resolve, reject) => {
        let out = ''
        const socket = connect(port, '127.0.0.1', () => socket.write(text))
        socket.on('data', (d: Buffer) => (out += d.toString('latin1')))
        socket.on('error', reject)
        socket.on('close', () => resolve(out))
      })
    for (const [text, status] of [
      ['GET /console HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n', 415],
      ['GET /console/sign-in HTTP/1.1\r\nConnection: close\r\n\r\n', 400],
      ['GET /console/sign-in HTTP/1.1\r\nHost: x\r\nExpect: fly\r\nConnection: close\r\n\r\n', 417],
    ] as const) {
      const res = await send(text)
      expect(Number(res.split(' ')[1]), text).toBe(status)
      expect(res, text).toMatch(/content-type: text\/html/i)
      expect(res, text).toContain('<h1>Request not accepted</h1>')
    }
  })

  it('pages with a keyset cursor (the storage query the list uses)', async () => {
    const q = t.server.store
    const now = t.clock.nowSeconds()
    const first = await q.searchGrants({ now }, { limit: 1 })
    const second = await q.searchGrants({ now }, { limit: 1, after: { time: first[0]!.createdAt, id: first[0]!.id } })
    expect(first).toHaveLength(1)
    expect(second).toHaveLength(1)
    expect(second[0]!.id).not.toBe(first[0]!.id)
  })

  it('shows a grant’s lineage: request (address, user agent), review (who, from where, policy), tokens, last use', async () => {
    const c = await t.signIn('vera')
    const res = await c.get(`/console/grants/${aliceGrant}`)
    expect(res.status).toBe(200)
    expect(res.body).toContain('<code>198.51.100.7</code>')
    expect(res.body).toContain('seed-agent/1.0')
    expect(res.body).toMatch(/<dt>By<\/dt><dd>alice<\/dd>/)
    expect(res.body).toContain('<code>203.0.113.9</code>')
    expect(res.body).toMatch(/Policy decision<\/dt><dd><span class="badge allow">allow<\/span>/)
    expect(res.body).toContain('Access tokens (1)')
    expect(res.body).toContain('Refresh tokens (1;')
    expect(res.body).not.toContain('Revoke this grant') // a viewer gets no revoke form
    expect((await c.get('/console/grants/nope')).status).toBe(404)
  })
})

describe('console anomalies', () => {
  it('lists, and lets an operator acknowledge once with a note (audited); a viewer cannot', async () => {
    await t.server.governance.anomalies.raise({ kind: 'approval_network_mismatch', subject: 'alice', clientId: 'cli', grantId: aliceGrant, ip: '198.51.100.7', details: { note: 'test' } })
    const viewer = await t.signIn('vera')
    const list = await viewer.get('/console/anomalies?state=open')
    expect(list.body).toContain('approval_network_mismatch')
    const id = /href="\/console\/anomalies\/([^"]+)"/.exec(list.body)![1]!
    expect((await viewer.post(`/console/anomalies/${id}/acknowledge`, { note: 'mine' })).status).toBe(403)
    const op = await t.signIn('otto')
    const page = await op.get(`/console/anomalies/${id}`)
    expect(page.body).toContain('Preview revoking every grant of alice')
    expect(page.body).toContain('/console/revoke?kind=pattern&amp;request_ip=198.51.100.7&amp;client_id=cli')
    expect((await op.post(`/console/anomalies/${id}/acknowledge`, { note: '' })).status).toBe(400)
    const ack = await op.post(`/console/anomalies/${id}/acknowledge`, { note: 'VPN exit, checked with alice' })
    expect(ack.status).toBe(200)
    expect(ack.body).toContain('VPN exit, checked with alice')
    expect((await op.post(`/console/anomalies/${id}/acknowledge`, { note: 'again' })).status).toBe(409)
    const events = await audit('anomaly.acknowledged')
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ actor: 'otto', subject: 'alice' })
    expect((await viewer.get('/console/anomalies?state=open')).body).not.toContain(`/console/anomalies/${id}"`)
    expect((await viewer.get('/console/anomalies?kind=bogus')).status).toBe(400)
  })
})

describe('console bulk revocation', () => {
  it('previews with a count and revokes only when the typed count matches', async () => {
    const g1 = await t.seedGrant({ user: 'alice', requestIp: '100.64.1.1' })
    const g2 = await t.seedGrant({ user: 'alice', requestIp: '100.64.1.2' })
    const op = await t.signIn('otto')
    const preview = await op.get('/console/revoke?kind=pattern&request_ip=100.64.1.0/24')
    expect(preview.status).toBe(200)
    expect(preview.body).toMatch(/<strong>2<\/strong> grant\(s\) would be revoked/)
    expect(preview.body).toContain('Type 2 to confirm')
    const wrong = await op.post('/console/revoke', { kind: 'pattern', request_ip: '100.64.1.0/24', confirm_count: '3', reason: 'phish' })
    expect(wrong.status).toBe(400)
    expect((await t.server.store.findGrant(g1))!.revokedAt).toBeNull()
    const ok = await op.post('/console/revoke', { kind: 'pattern', request_ip: '100.64.1.0/24', confirm_count: '2', reason: 'phishing campaign 42' })
    expect(ok.status).toBe(200)
    expect(ok.body).toContain('Revoked 2 grant(s)')
    expect((await t.server.store.findGrant(g1))!.revokedAt).not.toBeNull()
    expect((await t.server.store.findGrant(g2))!.revokedAt).not.toBeNull()
    const ev = (await audit('token.revoked')).at(-1)!
    expect(ev.actor).toBe('otto')
    expect(JSON.parse(ev.details)).toMatchObject({ reason: 'phishing campaign 42', target: { kind: 'pattern', requestIp: '100.64.1.0/24' } })
    // the lineage page now says why
    const lineage = await op.get(`/console/grants/${g1}`)
    expect(lineage.body).toContain('phishing campaign 42')
  })

  it('shows a viewer the preview but no confirm form, and refuses a bad pattern with 400', async () => {
    const viewer = await t.signIn('vera')
    const res = await viewer.get('/console/revoke?kind=user&username=bob')
    expect(res.body).toContain('Your role can preview but not revoke.')
    expect((await viewer.get('/console/revoke?kind=pattern&request_ip=not-an-ip')).status).toBe(400)
    expect((await viewer.get('/console/revoke?kind=pattern')).status).toBe(400)
    expect((await viewer.post('/console/revoke', { kind: 'user', username: 'bob', confirm_count: '1' })).status).toBe(403)
  })
})

describe('console policy, audit, people and devices', () => {
  it('shows the policy in force and explains a simulated request', async () => {
    const c = await t.signIn('vera')
    const res = await c.get('/console/policy')
    expect(res.body).toContain('none: the built-in baseline')
    const explained = await c.get('/console/policy?client=cli&user=alice&request_ip=198.51.100.7&approve_ip=203.0.113.9')
    expect(explained.status).toBe(200)
    expect(explained.body).toMatch(/Decision: <span class="badge (allow|deny|step_up)">/)
    expect((await c.get('/console/policy?client=cli&user=alice&request_ip=x&approve_ip=1.1.1.1')).status).toBe(400)
    expect((await c.post('/console/policy/reload', {})).status).toBe(403)
    const admin = await t.signIn('ada')
    expect((await admin.post('/console/policy/reload', {})).status).toBe(200)
    expect((await audit('policy.reloaded')).at(-1)).toMatchObject({ actor: 'ada' })
  })

  it('browses and filters audit events, verifies the chain and exports JSON Lines', async () => {
    const c = await t.signIn('vera')
    const res = await c.get('/console/audit?type=device_code.approved')
    expect(res.body).toContain('<code>device_code.approved</code>')
    expect(res.body).not.toContain('<code>token.issued</code>')
    const verified = await c.post('/console/audit/verify', {})
    expect(verified.body).toContain('The chain is intact')
    const exp = await c.get('/console/audit/export?type=device_code.approved')
    expect(exp.status).toBe(200)
    expect(exp.headers.get('content-type')).toContain('application/jsonl')
    expect(exp.headers.get('content-disposition')).toMatch(/attachment; filename="devicegate-audit-.*\.jsonl"/)
    const lines = exp.body.trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.length).toBeGreaterThanOrEqual(2)
    expect(lines.every((l) => l.type === 'device_code.approved' && typeof l.hash === 'string')).toBe(true)
    expect((await c.get('/console/audit?since=yesterday')).status).toBe(400)
  })

  it('lets an admin disable a person (grants revoked, audited) and not an operator', async () => {
    const g = await t.seedGrant({ user: 'bob', requestIp: '192.0.2.50' })
    const op = await t.signIn('otto')
    expect((await op.post('/console/people/bob/disable', {})).status).toBe(403)
    const admin = await t.signIn('ada')
    const people = await admin.get('/console/people')
    expect(people.body).toContain('identity-admins')
    const res = await admin.post('/console/people/bob/disable', {})
    expect(res.status).toBe(200)
    expect((await t.server.store.findGrant(g))!.revokedAt).not.toBeNull()
    expect((await audit('admin.action')).filter((e) => e.actor === 'ada' && e.subject === 'bob')).toHaveLength(1)
    expect((await admin.post('/console/people/bob/enable', {})).status).toBe(200)
    expect((await admin.post('/console/people/nobody/disable', {})).status).toBe(404)
    expect((await admin.post('/console/people/ada/disable', {})).status).toBe(409)
  })

  it('shows a person\'s stored status and offers the action that changes it, whoever disabled them (console, CLI, admin API)', async () => {
    const admin = await t.signIn('ada')
    const bobRow = async () => (await admin.get('/console/people')).body.match(/<tr><td>[^<]*\(<code>bob<\/code>\).*?<\/tr>/)?.[0] ?? ''
    expect(await bobRow()).toContain('<span class="badge active">active</span>')
    expect((await admin.post('/console/people/bob/disable', {})).status).toBe(200)
    // It showed "enabled" and a Disable button here: the page read the pre-people overrides table.
    expect(await bobRow()).toContain('<span class="badge disabled">disabled</span>')
    expect(await bobRow()).toContain('/console/people/bob/enable')
    await t.server.identity.people.setStatus('bob', 'active', 'test')
    expect(await bobRow()).toContain('<span class="badge active">active</span>')
    await t.server.identity.people.setStatus('bob', 'disabled', 'test')
    expect(await bobRow()).toContain('<span class="badge disabled">disabled</span>')
    expect((await admin.post('/console/people/bob/enable', {})).status).toBe(200)
    expect(await bobRow()).toContain('/console/people/bob/disable')
  })

  it('registers and retires a trusted device (admin)', async () => {
    const admin = await t.signIn('ada')
    const jkt = 'A'.repeat(43)
    expect((await admin.post('/console/devices', { jkt: 'short', label: 'x' })).status).toBe(400)
    const reg = await admin.post('/console/devices', { jkt, label: 'build-agent-07' })
    expect(reg.status).toBe(200)
    expect(reg.body).toContain('build-agent-07')
    expect((await admin.post('/console/devices', { jkt, label: 'again' })).status).toBe(409)
    expect((await admin.post(`/console/devices/${jkt}/retire`, {})).status).toBe(200)
  })
})

describe('My devices (every approver)', () => {
  it('shows an approver the grants they approved and lets them revoke one, never another person’s', async () => {
    const mine = await t.seedGrant({ user: 'alice', requestIp: '198.51.100.99' })
    const alice = await t.signIn('alice')
    const page = await alice.get('/console/my-devices')
    expect(page.status).toBe(200)
    expect(page.body).toContain('Test CLI')
    expect(page.body).toContain('198.51.100.99')
    expect(page.body).not.toContain(deployGrant)
    const bob = await t.signIn('bob')
    expect((await bob.post(`/console/my-devices/${mine}/revoke`, {})).status).toBe(404)
    expect((await t.server.store.findGrant(mine))!.revokedAt).toBeNull()
    const res = await alice.post(`/console/my-devices/${mine}/revoke`, {})
    expect(res.status).toBe(200)
    expect((await t.server.store.findGrant(mine))!.revokedAt).not.toBeNull()
    expect((await audit('token.revoked')).filter((e) => e.grantId === mine)[0]).toMatchObject({ actor: 'alice' })
  })
})

describe('console people: everyone in the people store, not only the configuration', () => {
  /** The People section of the page (the Clients table follows it). */
  const peopleTable = (body: string) => body.split('<h2 id="clients_h">')[0]!
  const PERSON_ID = '0b6f2b9e-1c1a-4a53-9d55-2f6a3c1e0a01'
  it('lists people provisioned by SCIM and created by upstream sign-in with status, source, groups (SCIM memberships included) and risk; an admin disables one', async () => {
    const store = t.server.store
    const now = t.clock.nowSeconds()
    await store.insertPerson(newPerson(PERSON_ID, now, { userName: 'sam.scim@example.com', displayName: 'Sam Scim', email: 'sam.scim@example.com', source: 'scim', risk: 40 }))
    await store.insertGroup({ id: 'grp-1', displayName: 'payments-oncall', externalId: null, members: [PERSON_ID], version: 1, createdAt: now, updatedAt: now })
    await store.insertPerson(newPerson(undefined, now, { userName: 'uma.upstream', displayName: 'Uma Upstream', source: 'provider', groups: ['sre'], upstreamIssuer: 'https://idp.example', upstreamSub: 'u-1' }))
    await store.insertPerson(newPerson(undefined, now, { userName: 'gone.scim', source: 'scim', status: 'deleted' }))
    await t.server.identity.directory.refresh()

    const viewer = await t.signIn('vera')
    const res = await viewer.get('/console/people')
    expect(res.status).toBe(200)
    const row = (name: string) => res.body.split('<tr>').find((r) => r.includes(`<code>${name}</code>`))
    expect(row('sam.scim@example.com')).toMatch(/Sam Scim.*badge active.*payments-oncall.*>40<.*SCIM/s)
    expect(row('uma.upstream')).toMatch(/Uma Upstream.*badge active.*sre.*upstream sign-in/s)
    expect(row('gone.scim')).toMatch(/badge deleted.*SCIM/s)
    expect(row('alice')).toMatch(/badge active.*staff.*configuration/s)

    const admin = await t.signIn('ada')
    const disabled = await admin.post(`/console/people/${PERSON_ID}/disable`, {})
    expect(disabled.status).toBe(200)
    expect((await store.findPerson(PERSON_ID))!.status).toBe('disabled')
    expect(disabled.body.split('<tr>').find((r) => r.includes('<code>sam.scim@example.com</code>'))).toMatch(/badge disabled.*Enable sam\.scim@example\.com/s)
    expect((await admin.post(`/console/people/${PERSON_ID}/enable`, {})).status).toBe(200)
  })

  it('searches by name, e-mail or group, filters by status and source, and refuses a filter it cannot use (400)', async () => {
    const c = await t.signIn('vera')
    const names = (body: string) => [...peopleTable(body).matchAll(/<tr><td>[^<]*\(<code>([^<]+)<\/code>\)/g)].map((m) => m[1])
    expect(names((await c.get('/console/people?q=SAM')).body)).toEqual(['sam.scim@example.com'])
    expect(names((await c.get('/console/people?q=payments-on')).body)).toEqual(['sam.scim@example.com'])
    expect(names((await c.get('/console/people?source=provider')).body)).toEqual(['uma.upstream'])
    expect(names((await c.get('/console/people?status=deleted')).body)).toEqual(['gone.scim'])
    expect(names((await c.get('/console/people?q=staff&source=config')).body)).toEqual(['alice', 'bob'])
    expect((await c.get('/console/people?q=nobody-at-all')).body).toContain('No people match.')
    for (const q of ['status=gone', 'source=ldap', 'after=garbage']) expect((await c.get(`/console/people?${q}`)).status, q).toBe(400)
  })

  it('pages 50 at a time with a keyset cursor, every person exactly once', async () => {
    const now = t.clock.nowSeconds()
    for (let i = 0; i < 70; i++) await t.server.store.insertPerson(newPerson(undefined, now + 1, { userName: `bulk${String(i).padStart(3, '0')}`, source: 'scim' }))
    await t.server.identity.directory.refresh()
    const c = await t.signIn('vera')
    const seen: string[] = []
    let path: string | undefined = '/console/people?source=scim'
    let pages = 0
    while (path !== undefined) {
      const res = await c.get(path)
      expect(res.status).toBe(200)
      expect(res.body).toContain('<caption>72 people, oldest first</caption>')
      seen.push(...[...peopleTable(res.body).matchAll(/\(<code>([^<]+)<\/code>\)/g)].map((m) => m[1]!))
      const next = /<a href="([^"]+)" rel="next">/.exec(res.body)?.[1]
      path = next?.replaceAll('&amp;', '&')
      pages++
    }
    expect(pages).toBe(2)
    expect(seen).toHaveLength(72)
    expect(new Set(seen).size).toBe(72)
    expect(seen.slice(0, 2)).toEqual(['sam.scim@example.com', 'gone.scim'])
  })
})
