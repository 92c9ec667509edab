/**
 * The compliance report: NIST CSF 2.0, OWASP Non-Human Identities Top 10 (2025)
 * and the NIST SP 800-63B-4 points that apply to the approver's authentication, each judged from
 * live {@link Evidence} as `pass`, `warn` or `fail`, with the concrete change that fixes each
 * failure. Pure: `gatherEvidence` does the reading.
 *
 * Thresholds come from `reviews.compliance` in the configuration (documented defaults); where the
 * frameworks leave the number open, the defaults are the stricter common practice and say so.
 */
import type { ReviewsConfig } from '../config/reviews.js'
import { SAME_DEVICE_ADVICE } from '../policy/same-device.js'
import type { AuditCount, Evidence, PeopleEvidence, StatusCounts } from './evidence.js'

export type Verdict = 'pass' | 'warn' | 'fail'

/** One piece of evidence shown next to a control. */
export interface EvidenceItem {
  label: string
  value: string | number | boolean
  /** Where it comes from: `config`, `policy`, `audit`, `inventory`, `keys`, `reviews`, `people` (the people store). */
  source: 'config' | 'policy' | 'audit' | 'inventory' | 'keys' | 'reviews' | 'people'
  /** Audit sequence numbers behind an audit-derived value (check with `devicegate audit verify`). */
  seqs?: number[]
}

/** One control in the report. */
export interface ControlResult {
  /** e.g. `PR.AA-01`, `NHI7`, `800-63B §3.2.2`. */
  id: string
  framework: 'NIST CSF 2.0' | 'OWASP NHI Top 10 2025' | 'NIST SP 800-63B-4'
  title: string
  /** What devicegate does for this control. */
  implementation: string
  evidence: EvidenceItem[]
  verdict: Verdict
  /** Why the verdict is not `pass`. */
  findings: string[]
  /** For each finding, the change that fixes it (config key, policy rule or command). */
  fixes: string[]
}

/** The whole report (JSON form; the HTML is rendered from it). */
export interface ComplianceReport {
  title: string
  generatedAt: number
  issuer: string
  period: { since: number; until: number }
  policy: { id: string; source: string }
  /** Check the cited sequence numbers against this head with `devicegate audit verify`. */
  chainHead: { seq: number; hash: string }
  summary: Record<Verdict, number>
  controls: ControlResult[]
}

const DAY = 86_400
const pct = (x: number) => `${Math.round(x * 1000) / 10}%`
const days = (s: number) => `${Math.round((s / DAY) * 10) / 10} days`

function count(c: AuditCount | undefined): { value: number; seqs: number[] } {
  return { value: c?.count ?? 0, seqs: c?.seqs ?? [] }
}

function auditItem(label: string, c: AuditCount | undefined): EvidenceItem {
  const { value, seqs } = count(c)
  return { label, value, source: 'audit', seqs }
}

function judge(findings: { fail: string[]; warn: string[] }): Verdict {
  return findings.fail.length > 0 ? 'fail' : findings.warn.length > 0 ? 'warn' : 'pass'
}

/** `active / disabled / deleted` of a count of people. */
const statusLine = (c: StatusCounts) => `${c.active} / ${c.disabled} / ${c.deleted}`

/** One evidence line per source that has people (configuration, upstream sign-in, SCIM). */
function peopleBySource(p: PeopleEvidence): EvidenceItem[] {
  const label = { config: 'configuration', provider: 'upstream sign-in', scim: 'SCIM' } as const
  return (['config', 'provider', 'scim'] as const)
    .filter((s) => p.bySource[s].active + p.bySource[s].disabled + p.bySource[s].deleted > 0)
    .map((s) => ({ label: `people from ${label[s]} active / disabled / deleted`, value: statusLine(p.bySource[s]), source: 'people' }))
}

type Draft = Omit<ControlResult, 'verdict' | 'findings' | 'fixes'> & { fail: [string, string][]; warn: [string, string][] }

function finish(d: Draft): ControlResult {
  const { fail, warn, ...rest } = d
  return {
    ...rest,
    verdict: judge({ fail: fail.map((f) => f[0]), warn: warn.map((w) => w[0]) }),
    findings: [...fail, ...warn].map((f) => f[0]),
    fixes: [...fail, ...warn].map((f) => f[1]),
  }
}

/**
 * Judges every control from the evidence.
 * @param limits `reviews.compliance` from the configuration.
 */
export function buildComplianceReport(e: Evidence, limits: ReviewsConfig['compliance'], governance: { auditEnabled: boolean; metricsEnabled: boolean; adminEnabled: boolean; detectors: Record<string, { enabled: boolean; action: string }>; maxFailedEntries: number; sessionTtlSeconds: number }): ComplianceReport {
  const deviceClients = e.clients.filter((c) => c.client.grantTypes.includes('urn:ietf:params:oauth:grant-type:device_code'))
  const ownerless = deviceClients.filter((c) => (c.client.owners?.length ?? 0) === 0).map((c) => c.client.id)
  const adminNoMfa = deviceClients.filter((c) => c.tier === 'admin' && !c.mfaRequired).map((c) => c.client.id)
  const highNoMfa = deviceClients.filter((c) => c.tier === 'high' && !c.mfaRequired).map((c) => c.client.id)
  const anyMfa = deviceClients.some((c) => c.mfaRequired)
  const overRefresh = deviceClients.filter((c) => c.refreshLifetimeSeconds > limits.maxRefreshLifetimeSeconds[c.tier])
  const highUnbound = deviceClients.filter((c) => (c.tier === 'high' || c.tier === 'admin') && !c.dpopRequired).map((c) => c.client.id)
  const highWeakStorage = deviceClients.filter((c) => (c.tier === 'high' || c.tier === 'admin') && !c.weakStorageRefused && !c.dpopRequired).map((c) => c.client.id)
  const dpopShare = e.inventory.liveDeviceFlow === 0 ? 1 : e.inventory.dpopBound / e.inventory.liveDeviceFlow
  const sameDeviceHeavy = e.practices.clients.filter((c) => c.approvals > 0 && c.sameDeviceShare > limits.maxSameDeviceShare)
  const disabledDetectors = Object.entries(governance.detectors).filter(([, d]) => !d.enabled).map(([k]) => k)
  const reviewAgeDays = e.reviews?.lastRound ? (e.now - e.reviews.lastRound.completedAt) / DAY : Infinity
  const overprivileged = deviceClients.filter((c) => c.client.defaultScopes.length > 1 && c.client.defaultScopes.length === c.client.scopes.length)
  const weakDeclared = e.storageTotals ? e.storageTotals.plaintext : 0
  const declaredTotal = e.storageTotals ? Object.values(e.storageTotals).reduce((a, b) => a + b, 0) : 0
  const ownersFix = (ids: string[]) => `add owners to ${ids.map((id) => `clients[client_id=${id}].owners`).join(', ')} (usernames responsible for the app)`
  const reviewFix =
    'define a recurring campaign under reviews.campaigns (e.g. { id: quarterly, reviewers: owners, every_days: 90 }) and have the reviewers decide its items; or POST /admin/api/reviews/campaigns'
  const controls: Draft[] = []

  // --- NIST CSF 2.0 ---------------------------------------------------------------------------
  controls.push({
    id: 'PR.AA-01',
    framework: 'NIST CSF 2.0',
    title: 'Identities and credentials for authorized users, services and hardware are managed',
    implementation:
      'Clients and approvers come from the configuration (SCIM where set up); every device-issued token family is in the inventory; disabling or deleting a user or client revokes its families (orphaned_token).',
    evidence: [
      { label: 'device-flow clients', value: deviceClients.length, source: 'config' },
      { label: 'clients without owners', value: ownerless.join(', ') || 'none', source: 'config' },
      { label: 'people active / disabled / deleted', value: statusLine(e.users), source: 'people' },
      ...peopleBySource(e.users),
      { label: 'live token families', value: e.inventory.live, source: 'inventory' },
      { label: 'live families of disabled or removed clients', value: e.inventory.ofDisabledClients, source: 'inventory' },
    ],
    fail: ownerless.length > 0 ? [[`device-flow clients without owners: ${ownerless.join(', ')}`, ownersFix(ownerless)]] : [],
    warn: governance.detectors.orphaned_token?.enabled === false ? [['the orphaned_token detector is disabled: deprovisioning still revokes, but records no anomaly as evidence', 'set governance.anomalies.orphaned_token.enabled: true']] : [],
  })
  controls.push({
    id: 'PR.AA-02',
    framework: 'NIST CSF 2.0',
    title: 'Identities are proofed and bound to credentials based on the context of interactions',
    implementation:
      'Every approval is made by a signed-in person on the verification page and recorded with both sides’ addresses; device codes and tokens can be bound to the client’s DPoP key (RFC 9449); same-device approvals are detected (RFC 10027).',
    evidence: [
      auditItem('approvals in the period', e.audit['device_code.approved']),
      { label: 'clients requiring DPoP-bound tokens', value: deviceClients.filter((c) => c.dpopRequired).length, source: 'policy' },
      ...e.practices.clients.map((c) => ({ label: `same-device share of ${c.clientId}`, value: `${pct(c.sameDeviceShare)} of ${c.approvals}`, source: 'audit' as const, seqs: c.sameDeviceSeqs })),
    ],
    fail: [],
    warn: sameDeviceHeavy.map((c): [string, string] => [
      `${c.clientId}: ${pct(c.sameDeviceShare)} of approvals were same-device (limit ${pct(limits.maxSameDeviceShare)})`,
      `${SAME_DEVICE_ADVICE} Meanwhile add a policy rule { when: { clients: [${c.clientId}], same_device: true }, effect: warn }`,
    ]),
  })
  controls.push({
    id: 'PR.AA-03',
    framework: 'NIST CSF 2.0',
    title: 'Users, services and hardware are authenticated',
    implementation:
      'Approvers sign in (argon2id passwords, TOTP second factor); the policy steps up to MFA per risk tier (baseline.admin-mfa); confidential clients authenticate with hashed secrets.',
    evidence: [
      { label: 'admin-tier clients approved without MFA', value: adminNoMfa.join(', ') || 'none', source: 'policy' },
      { label: 'high-tier clients approved without MFA', value: highNoMfa.join(', ') || 'none', source: 'policy' },
      { label: 'people with a TOTP second factor', value: `${e.users.withTotp} of ${e.users.total}`, source: 'people' },
      { label: 'baseline rules included', value: e.includeBaseline, source: 'policy' },
      auditItem('failed sign-ins in the period', e.audit['session.sign_in_failed']),
    ],
    fail: adminNoMfa.length > 0 ? [[`admin-tier apps approvable without MFA: ${adminNoMfa.join(', ')}`, 'keep include_baseline: true in the policy (baseline.admin-mfa), or add { when: { tiers: [admin] }, effect: step_up }']] : [],
    warn: [
      ...(highNoMfa.length > 0 ? [[`high-tier apps approvable without MFA: ${highNoMfa.join(', ')}`, `add a policy rule { when: { clients: [${highNoMfa.join(', ')}] }, effect: step_up }`] as [string, string]] : []),
      ...(!anyMfa ? [['no app requires MFA for approval', 'add a step_up rule for the apps that matter (policy rules[].effect: step_up) and enrol TOTP (devicegate users enroll-totp)'] as [string, string]] : []),
    ],
  })
  controls.push({
    id: 'PR.AA-04',
    framework: 'NIST CSF 2.0',
    title: 'Identity assertions are protected, conveyed and verified',
    implementation: 'Access tokens are signed JWTs (RFC 9068) or opaque handles checked by introspection; signing keys rotate with `devicegate keys rotate` and stay published until their tokens expire.',
    evidence: [
      { label: 'active signing key', value: e.signingKey ? `${e.signingKey.kid} (${e.signingKey.alg})` : 'none yet', source: 'keys' },
      { label: 'signing key age', value: e.signingKey ? `${e.signingKey.ageDays} days` : 'n/a', source: 'keys' },
      { label: 'limit', value: `${limits.maxSigningKeyAgeDays} days`, source: 'config' },
    ],
    fail: e.signingKey && e.signingKey.ageDays > limits.maxSigningKeyAgeDays ? [[`the signing key is ${e.signingKey.ageDays} days old`, 'run `devicegate keys rotate`']] : [],
    warn: [],
  })
  controls.push({
    id: 'PR.AA-05',
    framework: 'NIST CSF 2.0',
    title: 'Access permissions, entitlements and authorizations are defined, managed, enforced and reviewed (least privilege)',
    implementation: 'Scopes per client and policy constraints narrow what a grant carries; access-review campaigns of device-issued grants keep or revoke each one with a justification.',
    evidence: [
      { label: 'campaigns defined', value: e.reviews?.campaigns ?? 0, source: 'reviews' },
      {
        label: 'last completed round',
        value: e.reviews?.lastRound ? `${e.reviews.lastRound.campaignId}/${e.reviews.lastRound.roundId}, ${Math.floor(reviewAgeDays)} days ago` : 'none',
        source: 'reviews',
      },
      { label: 'limit', value: `${limits.maxDaysSinceReview} days`, source: 'config' },
    ],
    fail: reviewAgeDays > limits.maxDaysSinceReview ? [[e.reviews?.lastRound ? `the last review completed ${Math.floor(reviewAgeDays)} days ago` : 'no access review of device-issued grants has completed', reviewFix]] : [],
    warn: [],
  })
  controls.push({
    id: 'PR.AA-06',
    framework: 'NIST CSF 2.0',
    title: 'Physical access to assets is managed, monitored and enforced commensurate with risk',
    implementation: 'Proximity rules compare the requesting device’s and the approver’s networks (baseline.proximity-deny for high and admin apps), so an approval must come from near the device.',
    evidence: [
      { label: 'baseline proximity rules', value: e.includeBaseline, source: 'policy' },
      auditItem('policy denials in the period', e.policyDenials),
    ],
    fail: [],
    warn: e.includeBaseline ? [] : [['the baseline proximity rules are switched off', 'set include_baseline: true in the policy, or add proximity_mismatch rules']],
  })
  controls.push({
    id: 'PR.PS-04',
    framework: 'NIST CSF 2.0',
    title: 'Log records are generated and made available for continuous monitoring',
    implementation: 'An append-only, hash-chained audit log with signed checkpoints (`devicegate audit verify`, `audit export` as JSON Lines), and Prometheus metrics.',
    evidence: [
      { label: 'audit log', value: governance.auditEnabled ? 'enabled' : 'disabled', source: 'config' },
      { label: 'chain head', value: `seq ${e.chainHead.seq}, ${e.chainHead.hash.slice(0, 16)}…`, source: 'audit' },
      { label: 'metrics', value: governance.metricsEnabled ? 'enabled' : 'disabled', source: 'config' },
    ],
    fail: governance.auditEnabled ? [] : [['the audit log is disabled', 'set governance.audit.enabled: true']],
    warn: governance.metricsEnabled ? [] : [['metrics are disabled', 'set governance.metrics.enabled: true']],
  })
  controls.push({
    id: 'DE.CM-03',
    framework: 'NIST CSF 2.0',
    title: 'Personnel activity and technology usage are monitored to find potentially adverse events',
    implementation: 'Detectors watch token use from new networks, approvals from another network, dormant grants and same-device approvals.',
    evidence: ['token_used_from_new_ip_range', 'approval_network_mismatch', 'dormant_grant', 'device_flow_same_device'].map((k) => ({
      label: `${k} (${governance.detectors[k]?.enabled === false ? 'disabled' : 'enabled'})`,
      value: count(e.anomalies[k]).value,
      source: 'audit' as const,
      seqs: count(e.anomalies[k]).seqs,
    })),
    fail: [],
    warn: ['token_used_from_new_ip_range', 'approval_network_mismatch', 'dormant_grant']
      .filter((k) => governance.detectors[k]?.enabled === false)
      .map((k): [string, string] => [`the ${k} detector is disabled`, `set governance.anomalies.${k}.enabled: true`]),
  })
  controls.push({
    id: 'DE.CM-09',
    framework: 'NIST CSF 2.0',
    title: 'Computing hardware, software and runtime environments and their data are monitored',
    implementation: 'Device posture assertions, the trusted-device registry (DPoP keys) and the token storage each client declares (storage_class) describe the client side.',
    evidence: [
      { label: 'device authorizations by declared storage', value: e.storageTotals ? Object.entries(e.storageTotals).map(([k, v]) => `${k} ${v}`).join(', ') : 'not recorded', source: 'inventory' },
      { label: 'plaintext declarations', value: weakDeclared, source: 'inventory' },
    ],
    fail: [],
    warn: weakDeclared > 0 ? [[`${weakDeclared} of ${declaredTotal} device authorizations declared plaintext token storage`, 'add a policy rule { when: { storage: { in: [plaintext] } }, effect: allow, constraints: { refresh: false } } or deny it for high-risk apps']] : [],
  })
  controls.push({
    id: 'DE.AE-02',
    framework: 'NIST CSF 2.0',
    title: 'Potentially adverse events are analyzed to better understand associated activities',
    implementation: 'Every detection is stored with its facts and written to the audit log as anomaly.raised, with the action taken.',
    evidence: [
      ...Object.entries(e.anomalies).map(([k, c]) => auditItem(`anomalies ${k}`, c)),
      { label: 'detectors disabled', value: disabledDetectors.join(', ') || 'none', source: 'config' },
    ],
    fail: [],
    warn: disabledDetectors.length > 0 ? [[`detectors disabled: ${disabledDetectors.join(', ')}`, disabledDetectors.map((k) => `governance.anomalies.${k}.enabled: true`).join('; ')]] : [],
  })
  controls.push({
    id: 'DE.AE-03',
    framework: 'NIST CSF 2.0',
    title: 'Information is correlated from multiple sources',
    implementation: 'Policy decisions, approvals, token issuance, refreshes, revocations and anomalies share one audit chain keyed by grant, client and person.',
    evidence: [auditItem('device authorizations', e.audit['device_authorization.requested']), auditItem('tokens issued', e.audit['token.issued']), auditItem('refreshes', e.audit['token.refreshed'])],
    fail: governance.auditEnabled ? [] : [['the audit log is disabled', 'set governance.audit.enabled: true']],
    warn: [],
  })
  controls.push({
    id: 'DE.AE-06',
    framework: 'NIST CSF 2.0',
    title: 'Information on adverse events is provided to authorized staff and tools',
    implementation: 'The admin API lists anomalies and audit events; /metrics counts anomalies by detector; audit export feeds a SIEM.',
    evidence: [
      { label: 'admin API', value: governance.adminEnabled ? 'enabled' : 'disabled', source: 'config' },
      { label: 'metrics', value: governance.metricsEnabled ? 'enabled' : 'disabled', source: 'config' },
    ],
    fail: [],
    warn: [
      ...(!governance.adminEnabled ? [['the admin API is disabled', 'set governance.admin.enabled: true'] as [string, string]] : []),
      ...(!governance.metricsEnabled ? [['metrics are disabled', 'set governance.metrics.enabled: true'] as [string, string]] : []),
    ],
  })
  controls.push({
    id: 'RS.MI-01',
    framework: 'NIST CSF 2.0',
    title: 'Incidents are contained',
    implementation: 'Central revocation by token, grant, user, client, DPoP key, time or approval pattern; refresh-token reuse revokes the whole family (RFC 9700 §4.14.2).',
    evidence: [auditItem('revocations in the period', e.audit['token.revoked']), auditItem('refresh-token reuse detected', e.audit['refresh_token.reuse_detected'])],
    fail: [],
    warn: [],
  })
  const dormant = governance.detectors.dormant_grant
  controls.push({
    id: 'RS.MI-02',
    framework: 'NIST CSF 2.0',
    title: 'Incidents are eradicated',
    implementation: 'Dormant and orphaned grants are revoked by their detectors; review campaigns revoke what nobody keeps.',
    evidence: [
      { label: 'dormant_grant action', value: dormant ? `${dormant.enabled ? dormant.action : 'disabled'}` : 'n/a', source: 'config' },
      { label: 'live dormant families', value: e.inventory.dormant, source: 'inventory' },
      { label: 'revoked by the last review round', value: e.reviews?.lastRound?.revoked ?? 0, source: 'reviews' },
    ],
    fail: [],
    warn: dormant && (!dormant.enabled || dormant.action === 'alert') ? [['dormant grants are not revoked automatically', 'set governance.anomalies.dormant_grant.action: revoke_grant']] : [],
  })
  controls.push({
    id: 'GV.OV-01',
    framework: 'NIST CSF 2.0',
    title: 'Cybersecurity risk management strategy outcomes are reviewed to inform and adjust strategy',
    implementation: 'Access-review rounds record who decided what and why; their evidence exports as JSON and CSV.',
    evidence: [
      { label: 'last round items (decided / kept / revoked)', value: e.reviews?.lastRound ? `${e.reviews.lastRound.items} (${e.reviews.lastRound.decided} / ${e.reviews.lastRound.kept} / ${e.reviews.lastRound.revoked})` : 'none', source: 'reviews' },
    ],
    fail: e.reviews?.lastRound ? [] : [['no review round has completed', reviewFix]],
    warn:
      e.reviews?.lastRound && e.reviews.lastRound.decided < e.reviews.lastRound.items
        ? [[`${e.reviews.lastRound.items - e.reviews.lastRound.decided} items of the last round were left to the default action`, 'remind reviewers before the deadline (webhook reminders) or shorten scopes']]
        : [],
  })
  controls.push({
    id: 'GV.OV-03',
    framework: 'NIST CSF 2.0',
    title: 'Organizational cybersecurity risk management performance is evaluated and reviewed for adjustments needed',
    implementation: 'This report: every control judged from live evidence, with the change that fixes each failure.',
    evidence: [{ label: 'period', value: `${new Date(e.period.since * 1000).toISOString()} – ${new Date(e.period.until * 1000).toISOString()}`, source: 'audit' }],
    fail: [],
    warn: [],
  })

  // --- OWASP NHI Top 10 (2025) ----------------------------------------------------------------
  controls.push({
    id: 'NHI1',
    framework: 'OWASP NHI Top 10 2025',
    title: 'Improper Offboarding',
    implementation: 'Each app has owners; disabling or removing an app or a person revokes its grants at once and at start-up (orphaned_token); reviews revoke what nobody keeps.',
    evidence: [
      { label: 'clients without owners', value: ownerless.join(', ') || 'none', source: 'config' },
      { label: 'live families of disabled or removed clients', value: e.inventory.ofDisabledClients, source: 'inventory' },
      { label: 'people active / disabled / deleted', value: statusLine(e.users), source: 'people' },
      ...peopleBySource(e.users),
      { label: 'live families of disabled, deleted or unknown people', value: e.inventory.ofInactivePeople, source: 'inventory' },
      auditItem('orphaned_token anomalies', e.anomalies.orphaned_token),
    ],
    fail: [
      ...(ownerless.length > 0 ? [[`apps without an owner to offboard them: ${ownerless.join(', ')}`, ownersFix(ownerless)] as [string, string]] : []),
      ...(e.inventory.ofDisabledClients > 0 ? [[`${e.inventory.ofDisabledClients} live families belong to disabled or removed clients`, 'restart the server (start-up orphan check) or `devicegate revoke --client <id>`'] as [string, string]] : []),
      ...(e.inventory.ofInactivePeople > 0
        ? [[`${e.inventory.ofInactivePeople} live families belong to disabled, deleted or unknown people`, 'restart the server (start-up orphan check) or `devicegate revoke --user <id>`'] as [string, string]]
        : []),
    ],
    warn: [],
  })
  controls.push({
    id: 'NHI2',
    framework: 'OWASP NHI Top 10 2025',
    title: 'Secret Leakage',
    implementation: 'DPoP binds tokens to a key the client holds (RFC 9449), so a leaked token is useless elsewhere; clients declare their token storage and policies refuse weak storage; the SDK never prints tokens.',
    evidence: [
      { label: 'DPoP-bound live device-flow families', value: `${e.inventory.dpopBound} of ${e.inventory.liveDeviceFlow} (${pct(dpopShare)})`, source: 'inventory' },
      { label: 'minimum share', value: pct(limits.minDpopBoundShare), source: 'config' },
      { label: 'high/admin apps neither DPoP-bound nor refusing weak storage', value: highWeakStorage.join(', ') || 'none', source: 'policy' },
    ],
    fail:
      highWeakStorage.length > 0
        ? [[`high-risk apps whose tokens may sit in weak storage unbound: ${highWeakStorage.join(', ')}`, `set clients[].dpop.required: true for ${highWeakStorage.join(', ')}, or add { when: { clients: [${highWeakStorage.join(', ')}], storage: { not_in: [keyring, memory] } }, effect: deny, reason: storage_not_accepted }`]]
        : [],
    warn: dpopShare < limits.minDpopBoundShare ? [[`only ${pct(dpopShare)} of live device-flow families are DPoP-bound`, 'use the devicegate SDK (DPoP on by default) or set clients[].dpop.required: true']] : [],
  })
  controls.push({
    id: 'NHI4',
    framework: 'OWASP NHI Top 10 2025',
    title: 'Insecure Authentication',
    implementation: 'Public device-flow clients hold no secret; tokens are sender-constrained with DPoP where required; confidential clients use argon2id-hashed secrets.',
    evidence: [{ label: 'high/admin apps without sender-constrained tokens', value: highUnbound.join(', ') || 'none', source: 'config' }],
    fail: deviceClients.filter((c) => c.tier === 'admin' && !c.dpopRequired).length > 0 ? [[`admin-tier apps accept bearer tokens: ${deviceClients.filter((c) => c.tier === 'admin' && !c.dpopRequired).map((c) => c.client.id).join(', ')}`, 'set clients[].dpop.required: true for admin-tier apps']] : [],
    warn: deviceClients.filter((c) => c.tier === 'high' && !c.dpopRequired).length > 0 ? [[`high-tier apps accept bearer tokens: ${deviceClients.filter((c) => c.tier === 'high' && !c.dpopRequired).map((c) => c.client.id).join(', ')}`, 'set clients[].dpop.required: true']] : [],
  })
  controls.push({
    id: 'NHI5',
    framework: 'OWASP NHI Top 10 2025',
    title: 'Overprivileged NHI',
    implementation: 'Each client may request only its scopes; default scopes and policy scope constraints keep grants narrow; reviews remove what is not needed.',
    evidence: overprivileged.length > 0 ? [{ label: 'clients granting every scope by default', value: overprivileged.map((c) => c.client.id).join(', '), source: 'config' }] : [{ label: 'clients granting every scope by default', value: 'none', source: 'config' }],
    fail: overprivileged.filter((c) => c.tier === 'high' || c.tier === 'admin').map((c): [string, string] => [`${c.client.id} (${c.tier}) grants all its scopes by default`, `set clients[client_id=${c.client.id}].default_scopes to the least it needs`]),
    warn: overprivileged.filter((c) => c.tier !== 'high' && c.tier !== 'admin').map((c): [string, string] => [`${c.client.id} grants all its scopes by default`, `set clients[client_id=${c.client.id}].default_scopes to the least it needs`]),
  })
  controls.push({
    id: 'NHI7',
    framework: 'OWASP NHI Top 10 2025',
    title: 'Long-Lived Secrets',
    implementation: 'Refresh tokens rotate on every use and their family ends at a fixed lifetime; policies cap lifetimes per tier.',
    evidence: [
      ...deviceClients.map((c) => ({
        label: `longest refresh lifetime in force: ${c.client.id} (${c.tier})`,
        value: `${days(c.refreshLifetimeSeconds)} (limit ${days(limits.maxRefreshLifetimeSeconds[c.tier])})${c.refreshRules.length ? `; rules ${c.refreshRules.join(', ')}` : ''}`,
        source: 'policy' as const,
      })),
      { label: 'longest live family', value: days(e.inventory.longestLifetimeSeconds), source: 'inventory' },
      { label: 'live families over their tier limit', value: e.inventory.overLimit.length, source: 'inventory' },
    ],
    fail: overRefresh.map((c): [string, string] => [
      `${c.client.id}: refresh lifetime ${days(c.refreshLifetimeSeconds)} exceeds the ${c.tier} limit of ${days(limits.maxRefreshLifetimeSeconds[c.tier])}`,
      `set clients[client_id=${c.client.id}].refresh_token_ttl_seconds: ${limits.maxRefreshLifetimeSeconds[c.tier]} (or a policy constraint refresh_max_lifetime_seconds)`,
    ]),
    warn: e.inventory.overLimit.length > 0 ? [[`${e.inventory.overLimit.length} live families were issued with a longer lifetime than today's limit`, 'revoke them (`devicegate revoke --grant <id>`) or let them expire']] : [],
  })
  controls.push({
    id: 'NHI9',
    framework: 'OWASP NHI Top 10 2025',
    title: 'NHI Reuse',
    implementation: 'Refresh-token reuse revokes the family; token use from a new network and DPoP key mismatches are detected; single_session limits one live session per person and app.',
    evidence: [
      auditItem('refresh-token reuse', e.audit['refresh_token.reuse_detected']),
      auditItem('token_used_from_new_ip_range', e.anomalies.token_used_from_new_ip_range),
      auditItem('dpop_key_mismatch', e.anomalies.dpop_key_mismatch),
    ],
    fail: [],
    warn: (['refresh_token_reuse', 'token_used_from_new_ip_range', 'dpop_key_mismatch'] as const)
      .filter((k) => governance.detectors[k]?.enabled === false)
      .map((k): [string, string] => [`the ${k} detector is disabled`, `set governance.anomalies.${k}.enabled: true`]),
  })

  // --- NIST SP 800-63B-4 (the approver's authentication) -----------------------------------------
  controls.push({
    id: '800-63B §2.2 (AAL2)',
    framework: 'NIST SP 800-63B-4',
    title: 'Approvals of privileged apps use multi-factor authentication (AAL2)',
    implementation: 'TOTP (RFC 6238) as the second factor on the verification page, required by policy step-up.',
    evidence: [
      { label: 'admin-tier apps without MFA', value: adminNoMfa.join(', ') || 'none', source: 'policy' },
      { label: 'people with TOTP', value: `${e.users.withTotp} of ${e.users.total}`, source: 'people' },
    ],
    fail: adminNoMfa.length > 0 ? [[`admin-tier approvals possible at AAL1: ${adminNoMfa.join(', ')}`, 'keep include_baseline: true (baseline.admin-mfa) and enrol approvers with `devicegate users enroll-totp`']] : [],
    warn: anyMfa && e.users.withTotp === 0 && e.users.total > 0 ? [['apps require MFA but no approver has a second factor', 'enrol approvers with `devicegate users enroll-totp <username>`']] : [],
  })
  controls.push({
    id: '800-63B §3.2.2',
    framework: 'NIST SP 800-63B-4',
    title: 'Rate limiting (throttling) of failed authentication attempts',
    implementation: 'User-code entry and sign-in are limited per address and session (RFC 8628 §5.1).',
    evidence: [{ label: 'failed entries allowed per window', value: governance.maxFailedEntries, source: 'config' }],
    fail: governance.maxFailedEntries > 100 ? [['more than 100 failed attempts are allowed per window (SP 800-63B-4 §3.2.2)', 'set verification.max_failed_entries to 100 or less']] : [],
    warn: [],
  })
  controls.push({
    id: '800-63B §3.1.1.2',
    framework: 'NIST SP 800-63B-4',
    title: 'Memorized secrets are stored salted and hashed with a cost-hard function',
    implementation: 'Passwords and client secrets are argon2id PHC strings; they are never stored or logged in clear.',
    evidence: [{ label: 'password hashing', value: 'argon2id', source: 'config' }],
    fail: [],
    warn: [],
  })
  controls.push({
    id: '800-63B §2.2.3',
    framework: 'NIST SP 800-63B-4',
    title: 'Reauthentication: an approver session ends within the AAL2 bound (24 h)',
    implementation: 'Verification-page sessions expire after verification.session_ttl_seconds.',
    evidence: [{ label: 'session lifetime', value: `${governance.sessionTtlSeconds} s`, source: 'config' }],
    fail: governance.sessionTtlSeconds > 86_400 ? [['approver sessions outlive 24 hours', 'set verification.session_ttl_seconds to 86400 or less']] : [],
    warn: [],
  })

  const results = controls.map(finish)
  const summary: Record<Verdict, number> = { pass: 0, warn: 0, fail: 0 }
  for (const r of results) summary[r.verdict]++
  return {
    title: 'devicegate compliance report',
    generatedAt: e.now,
    issuer: e.issuer,
    period: e.period,
    policy: { id: e.policyId, source: e.policySource },
    chainHead: e.chainHead,
    summary,
    controls: results,
  }
}
