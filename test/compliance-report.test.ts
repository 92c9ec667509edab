/**
 * the compliance report judges live evidence. On the development configuration it
 * names real failures (apps without owners, refresh lifetimes over the limit, no access review);
 * after the documented changes those controls pass. Evidence cites audit sequence numbers and the
 * chain head.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devConfigFile, parseConfig, resolveConfig } from '../src/config/load.js'
import type { ConfigFile } from '../src/config/schema.js'
import { BUILT_IN_POLICY, compilePolicyText } from '../src/policy/compile.js'
import type { ComplianceReport } from '../src/reviews/compliance.js'
import { createComplianceReport, renderComplianceHtml } from '../src/reviews/report.js'
import { newPerson } from '../src/identity/people.js'
import { openStore, type Store } from '../src/storage/index.js'
import { bundle } from './support/store-fixtures.js'
import { PageSession, postForm, startTestServer, TestClock, type TestServer } from './support/server.js'

const DEV = devConfigFile({ password: 'dev-password-0123456789', clientSecret: 'dev-client-secret-0123456789abcdef' })

function control(r: ComplianceReport, id: string) {
  const c = r.controls.find((x) => x.id === id)
  if (!c) throw new Error(`no control ${id}`)
  return c
}

/** The development configuration with `edit` applied to its file form. */
function devFile(edit: (f: Record<string, any>) => void = () => {}): ConfigFile {
  const f = structuredClone(DEV.file) as Record<string, any>
  f.log_level = 'silent'
  edit(f)
  return parseConfig(f)
}

describe('compliance report on the development configuration', () => {
  let t: TestServer
  let report: ComplianceReport
  beforeAll(async () => {
    Object.assign(process.env, DEV.env)
    t = await startTestServer({ config: devFile() })
    // One approved device flow, so the evidence has audit records to cite.
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'demo-cli', scope: 'read offline_access' })
    const page = new PageSession(t.url)
    await page.signIn('demo', DEV.env.DEVICEGATE_DEV_DEMO_PASSWORD!)
    expect(await page.decide(auth.json.user_code, 'approve')).toBe(200)
    t.clock.advance(10)
    expect((await postForm(`${t.url}/token`, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: auth.json.device_code, client_id: 'demo-cli' })).status).toBe(200)
    await t.server.governance.audit?.flush()
    report = await createComplianceReport({ config: t.server.config, policy: t.server.policy.current(), store: t.server.store, clock: t.clock })
  })
  afterAll(async () => {
    await t?.close()
  })

  it('fails NHI7: the demo CLI keeps refresh tokens 30 days, over the 14-day standard limit, and names the fix', () => {
    const c = control(report, 'NHI7')
    expect(c.verdict).toBe('fail')
    expect(c.findings[0]).toBe('demo-cli: refresh lifetime 30 days exceeds the standard limit of 14 days')
    expect(c.fixes[0]).toContain('clients[client_id=demo-cli].refresh_token_ttl_seconds: 1209600')
  })

  it('fails NHI1 and PR.AA-01: the demo CLI has no owners to offboard or review it', () => {
    for (const id of ['NHI1', 'PR.AA-01']) {
      const c = control(report, id)
      expect(c.verdict).toBe('fail')
      expect(c.findings.join(' ')).toContain('demo-cli')
      expect(c.fixes.join(' ')).toContain('clients[client_id=demo-cli].owners')
    }
  })

  it('fails PR.AA-05 and GV.OV-01: no access review has completed', () => {
    expect(control(report, 'PR.AA-05')).toMatchObject({ verdict: 'fail', findings: ['no access review of device-issued grants has completed'] })
    expect(control(report, 'GV.OV-01').verdict).toBe('fail')
    expect(control(report, 'PR.AA-05').fixes[0]).toContain('reviews.campaigns')
  })

  it('cites audit sequence numbers at or below the chain head', async () => {
    const head = await t.server.store.readAuditHead()
    expect(report.chainHead).toEqual(head)
    const approvals = control(report, 'PR.AA-02').evidence.find((e) => e.label === 'approvals in the period')!
    expect(approvals.value).toBe(1)
    expect(approvals.seqs).toHaveLength(1)
    const [seq] = approvals.seqs!
    const [record] = await t.server.store.listAuditEvents({ afterSeq: seq! - 1, limit: 1 })
    expect(record?.type).toBe('device_code.approved')
    expect(seq!).toBeLessThanOrEqual(head.seq)
  })

  it('passes the controls devicegate covers by default (audit log, containment, 800-63B storage)', () => {
    for (const id of ['PR.PS-04', 'RS.MI-01', 'RS.MI-02', '800-63B §3.1.1.2', '800-63B §3.2.2', 'DE.AE-03']) expect(control(report, id).verdict).toBe('pass')
  })

  it('renders a printable HTML page with the chain head and every control', () => {
    const html = renderComplianceHtml(report)
    expect(html).toMatch(/^<!doctype html>/)
    expect(html).toContain(`seq <strong>${report.chainHead.seq}</strong>`)
    expect(html).toContain('<section id="NHI7">')
    expect(html).toContain('@media print')
    expect(html).not.toContain('<script')
    expect(html.match(/<section /g)).toHaveLength(report.controls.length)
  })
})

describe('after the documented changes', () => {
  let dir: string
  let store: Store
  const clock = new TestClock()
  beforeAll(async () => {
    Object.assign(process.env, DEV.env)
    dir = mkdtempSync(join(tmpdir(), 'devicegate-compliance-'))
    store = await openStore(`sqlite:${join(dir, 'db.sqlite')}`)
  })
  afterAll(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  async function reportFor(file: ConfigFile, policy = BUILT_IN_POLICY) {
    const config = await resolveConfig(file, { dataDir: dir })
    return createComplianceReport({ config, policy, store, clock })
  }

  it('owners and a 14-day refresh lifetime make NHI1, PR.AA-01 and NHI7 pass', async () => {
    const r = await reportFor(
      devFile((f) => {
        const cli = f.clients.find((c: { client_id: string }) => c.client_id === 'demo-cli')
        cli.owners = ['demo']
        cli.refresh_token_ttl_seconds = 1_209_600
      }),
    )
    expect(control(r, 'NHI1').verdict).toBe('pass')
    expect(control(r, 'PR.AA-01').verdict).toBe('pass')
    expect(control(r, 'NHI7').verdict).toBe('pass')
  })

  it('an admin-tier app without MFA fails PR.AA-03 and AAL2; the baseline rule makes them pass', async () => {
    const file = devFile((f) => {
      f.clients.push({ client_id: 'admin-cli', name: 'Admin CLI', risk_tier: 'admin', scopes: ['read'], owners: ['demo'], refresh_token_ttl_seconds: 28_800, dpop: { required: true } })
    })
    const noBaseline = compilePolicyText('version: 1\ninclude_baseline: false\n', 'no-baseline.yaml')
    const before = await reportFor(file, noBaseline)
    expect(control(before, 'PR.AA-03').verdict).toBe('fail')
    expect(control(before, 'PR.AA-03').findings[0]).toBe('admin-tier apps approvable without MFA: admin-cli')
    expect(control(before, '800-63B §2.2 (AAL2)').verdict).toBe('fail')
    const after = await reportFor(file, BUILT_IN_POLICY)
    expect(control(after, 'PR.AA-03').findings).not.toContain('admin-tier apps approvable without MFA: admin-cli')
    expect(control(after, '800-63B §2.2 (AAL2)').verdict).not.toBe('fail')
  })

  it('a high-tier app without DPoP or a storage rule fails NHI2; a storage rule fixes it', async () => {
    const file = devFile((f) => {
      f.clients.push({ client_id: 'deploy', name: 'Deploy', risk_tier: 'high', scopes: ['read'], owners: ['demo'], refresh_token_ttl_seconds: 86_400 })
    })
    const before = await reportFor(file)
    expect(control(before, 'NHI2').verdict).toBe('fail')
    expect(control(before, 'NHI2').fixes[0]).toContain('storage: { not_in: [keyring, memory] }')
    const withRule = compilePolicyText(
      'version: 1\nrules:\n  - name: deploy-storage\n    when: { clients: [deploy], storage: { not_in: [keyring, memory] } }\n    effect: deny\n    reason: storage_not_accepted\n',
      'storage.yaml',
    )
    expect(control(await reportFor(file, withRule), 'NHI2').verdict).not.toBe('fail')
  })

  it('NHI1 and PR.AA-01 count people from the people store (SCIM, upstream sign-in), not the configuration only; a live family of a deleted SCIM person fails NHI1', async () => {
    const file = devFile((f) => {
      const cli = f.clients.find((c: { client_id: string }) => c.client_id === 'demo-cli')
      cli.owners = ['demo']
      cli.refresh_token_ttl_seconds = 1_209_600
    })
    const now = clock.nowSeconds()
    const person = (userName: string, source: 'scim' | 'provider', status: 'active' | 'disabled' | 'deleted') =>
      newPerson(undefined, now, { userName, source, status, ...(source === 'provider' ? { upstreamIssuer: 'https://idp.example', upstreamSub: userName } : {}) })
    const leaver = person('leaver', 'scim', 'deleted')
    for (const p of [person('sam', 'scim', 'active'), person('sue', 'scim', 'disabled'), leaver, person('uma', 'provider', 'active'), person('ulf', 'provider', 'deleted')]) await store.insertPerson(p)
    const evidence = (r: ComplianceReport, id: string) => Object.fromEntries(control(r, id).evidence.map((e) => [e.label, e.value]))

    const clean = await reportFor(file)
    // The configured demo user is not stored in this database: counted as the server will seed it.
    expect(evidence(clean, 'NHI1')).toMatchObject({
      'people active / disabled / deleted': '3 / 1 / 2',
      'people from configuration active / disabled / deleted': '1 / 0 / 0',
      'people from SCIM active / disabled / deleted': '1 / 1 / 1',
      'people from upstream sign-in active / disabled / deleted': '1 / 0 / 1',
      'live families of disabled, deleted or unknown people': 0,
    })
    expect(evidence(clean, 'PR.AA-01')['people active / disabled / deleted']).toBe('3 / 1 / 2')
    expect(evidence(clean, 'PR.AA-03')['people with a TOTP second factor']).toBe('0 of 4')
    expect(control(clean, 'NHI1').verdict).toBe('pass')

    // Offboarding missed a family: the SCIM person was deleted but their grant is live.
    await store.issueTokens(bundle({ subject: leaver.id, clientId: 'demo-cli', grantExpiresAt: null }))
    const missed = await reportFor(file)
    expect(control(missed, 'NHI1').verdict).toBe('fail')
    expect(control(missed, 'NHI1').findings).toContain('1 live families belong to disabled, deleted or unknown people')
    expect(control(missed, 'NHI1').fixes).toContain('restart the server (start-up orphan check) or `devicegate revoke --user <id>`')
  })
})
