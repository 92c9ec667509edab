/**
 * Live evidence for the compliance report: what the configuration, the policy in
 * force, the audit log, the inventory, the signing keys and the review programme say over a
 * period. Gathering reads; judging is `compliance.ts` (pure).
 *
 * Audit-derived counts carry the sequence numbers of (up to 20 of) the records counted, and the
 * report carries the chain head, so an auditor can check each figure with `devicegate audit
 * verify` and `devicegate audit export`.
 */
import type { Config } from '../config/load.js'
import type { Client } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import type { StorageClass } from '../core/storage-class.js'
import { summarizeClientPractices, type PracticesReport } from '../governance/client-practices.js'
import type { CompiledPolicy } from '../policy/compile.js'
import { evaluate } from '../policy/evaluate.js'
import type { PolicyFacts } from '../policy/model.js'
import type { RiskTier } from '../policy/schema.js'
import type { PersonSource, PersonStatus, Store } from '../storage/store.js'

/** A count from the audit log with the records that make it up. */
export interface AuditCount {
  count: number
  /** Sequence numbers of the first records counted (at most 20). */
  seqs: number[]
}

/** The last completed review round, as the review programme reports it. */
export interface ReviewRoundSummary {
  campaignId: string
  roundId: string
  openedAt: number
  /** When the round closed (all items decided, or the deadline passed). */
  completedAt: number
  items: number
  /** Items decided by a reviewer (the rest took the default action at the deadline). */
  decided: number
  kept: number
  revoked: number
}

/** What the review programme can tell the report (campaigns service). */
export interface ReviewEvidenceSource {
  /** Campaigns defined (configuration and admin API). */
  countCampaigns(): Promise<number>
  /** The most recently completed round of any campaign, if any. */
  lastCompletedRound(): Promise<ReviewRoundSummary | undefined>
}

/** How the policy in force treats one client, judged on a plain approval (see {@link probeClient}). */
export interface ClientPosture {
  client: Client
  tier: RiskTier
  /** An ordinary approval without MFA is stepped up (or denied): MFA is required. */
  mfaRequired: boolean
  /** Rules that matched that approval (names). */
  mfaRules: string[]
  /** Tokens must be DPoP-bound (client setting or policy constraint). */
  dpopRequired: boolean
  /** Longest refresh-token family lifetime a plain approval gets, seconds (0: no refresh token). */
  refreshLifetimeSeconds: number
  /** Rules that shorten or forbid refresh for this client. */
  refreshRules: string[]
  /** A `plaintext` storage declaration is refused (flow or refresh) by a rule. */
  weakStorageRefused: boolean
  storageRules: string[]
}

/** All evidence of one report. */
export interface Evidence {
  now: number
  period: { since: number; until: number }
  issuer: string
  policyId: string
  policySource: string
  includeBaseline: boolean
  chainHead: { seq: number; hash: string }
  audit: Record<string, AuditCount>
  /** `anomaly.raised` records by detector name. */
  anomalies: Record<string, AuditCount>
  /** Policy decisions that denied, by phase. */
  policyDenials: AuditCount
  clients: ClientPosture[]
  /**
   * People of the people store (configured, signed in upstream, provisioned by SCIM), by status and
   * source; configured users the server has not stored yet count as it will seed them.
   * `total` is everyone not deleted (active and disabled); `withTotp` and `withManager` count
   * among them.
   */
  users: PeopleEvidence
  inventory: {
    live: number
    liveDeviceFlow: number
    dpopBound: number
    /** Longest lifetime (expiresAt − createdAt) of a live family, seconds. */
    longestLifetimeSeconds: number
    /** Live families whose lifetime exceeds their client's tier limit. */
    overLimit: { grantId: string; clientId: string; lifetimeSeconds: number; limitSeconds: number }[]
    /** Live families of disabled or unknown clients. */
    ofDisabledClients: number
    /** Live families of a person who is disabled, deleted or unknown (OWASP NHI1: offboarding missed them). */
    ofInactivePeople: number
    /** Live families unused for the dormant detector's `after_seconds`. */
    dormant: number
  }
  signingKey: { kid: string; alg: string; ageDays: number } | null
  practices: PracticesReport
  storageTotals: Record<StorageClass, number> | null
  reviews: { campaigns: number; lastRound: ReviewRoundSummary | undefined } | null
}

/** People counted by status. */
export interface StatusCounts {
  active: number
  disabled: number
  deleted: number
}

/** People evidence; see {@link Evidence.users}. */
export interface PeopleEvidence extends StatusCounts {
  total: number
  bySource: Record<PersonSource, StatusCounts>
  withTotp: number
  withManager: number
}

/** What {@link gatherEvidence} reads. */
export interface EvidenceDeps {
  config: Config
  policy: CompiledPolicy
  store: Store
  clock: Clock
  reviews?: ReviewEvidenceSource | undefined
}

const TRACKED_EVENTS = [
  'device_authorization.requested',
  'device_code.approved',
  'device_code.denied',
  'token.issued',
  'token.refreshed',
  'token.revoked',
  'refresh_token.reuse_detected',
  'anomaly.raised',
  'admin.action',
  'session.sign_in_failed',
] as const

/** The audit records the evidence reads: the tracked ones, and policy decisions for denials. */
const EVIDENCE_EVENTS: readonly string[] = [...TRACKED_EVENTS, 'policy.decided']

function add(c: AuditCount | undefined, seq: number): AuditCount {
  const x = c ?? { count: 0, seqs: [] }
  x.count++
  if (x.seqs.length < 20) x.seqs.push(seq)
  return x
}

/**
 * Judges how the policy treats an ordinary approval for `client`: approver signed in without MFA,
 * same network as the device (no proximity mismatch), no posture, key not registered, keyring
 * storage, not same-device. Probed again with `plaintext` storage to see whether weak storage is
 * refused. Rules that depend on the person (groups, risk) are not assumed.
 */
export function probeClient(policy: CompiledPolicy, client: Client, now: number): ClientPosture {
  const tier = client.riskTier ?? 'standard'
  const net = { ip: '192.0.2.1', country: null, asn: null, asOrg: null }
  const facts = (storage: StorageClass, phase: PolicyFacts['phase']): PolicyFacts => ({
    phase,
    now,
    client: { id: client.id, tier },
    user: { username: '\u0000probe', groups: [], risk: 0, disabled: false },
    mfaDone: false,
    request: net,
    approver: net,
    posture: { status: 'absent' },
    device: { jkt: null, registered: false },
    storage,
    sameDevice: false,
  })
  const plain = evaluate(policy, facts('keyring', 'approval'))
  const afterMfa = evaluate(policy, { ...facts('keyring', 'approval'), mfaDone: true })
  const weak = evaluate(policy, { ...facts('plaintext', 'refresh'), mfaDone: true })
  const c = afterMfa.constraints
  let refresh = client.grantTypes.includes('refresh_token') && c.refreshAllowed ? client.refreshTokenTtlSeconds : 0
  if (refresh > 0 && c.refreshMaxLifetimeSeconds !== null) refresh = Math.min(refresh, c.refreshMaxLifetimeSeconds)
  if (refresh > 0 && c.maxSessionSeconds !== null) refresh = Math.min(refresh, c.maxSessionSeconds)
  const ruleNames = new Map(policy.rules.map((r) => [r.name, r]))
  const refreshRules = afterMfa.matchedRules.filter((n) => {
    const k = ruleNames.get(n)?.constraints
    return k !== undefined && (k.refresh === false || k.refresh_max_lifetime_seconds !== undefined || k.max_session_seconds !== undefined)
  })
  const storageRules = weak.matchedRules.filter((n) => ruleNames.get(n)?.usesStorage === true)
  return {
    client,
    tier,
    mfaRequired: plain.decision !== 'allow',
    mfaRules: plain.reasons.filter((r) => r.effect === 'step_up' || r.effect === 'deny').map((r) => r.rule),
    dpopRequired: client.requiresDpop === true || c.dpopRequired,
    refreshLifetimeSeconds: refresh,
    refreshRules,
    weakStorageRefused: storageRules.length > 0 && (weak.decision === 'deny' || !weak.constraints.refreshAllowed),
    storageRules,
  }
}

/**
 * Reads every piece of evidence for `[since, until)`.
 * @param period Epoch seconds; `until` defaults to now.
 */
export async function gatherEvidence(deps: EvidenceDeps, period: { since: number; until?: number }): Promise<Evidence> {
  const { config, policy, store, clock } = deps
  const now = clock.nowSeconds()
  const until = period.until ?? now
  const since = period.since
  const chainHead = await store.readAuditHead()

  const audit: Record<string, AuditCount> = {}
  const anomalies: Record<string, AuditCount> = {}
  let policyDenials: AuditCount = { count: 0, seqs: [] }
  let afterSeq = 0
  for (;;) {
    const page = await store.listAuditEvents({ afterSeq, sinceTime: since, untilTime: until, types: EVIDENCE_EVENTS, limit: 5000 })
    for (const r of page) {
      if ((TRACKED_EVENTS as readonly string[]).includes(r.type)) audit[r.type] = add(audit[r.type], r.seq)
      if (r.type === 'anomaly.raised' || r.type === 'policy.decided') {
        let d: Record<string, unknown> = {}
        try {
          d = JSON.parse(r.details) as Record<string, unknown>
        } catch {
          // counted as nothing; `audit verify` reports unreadable records
        }
        if (r.type === 'anomaly.raised') anomalies[String(d.kind)] = add(anomalies[String(d.kind)], r.seq)
        else if (d.decision === 'deny') policyDenials = add(policyDenials, r.seq)
      }
    }
    if (page.length < 5000) break
    afterSeq = page[page.length - 1]!.seq
  }

  const people = await gatherPeople(config, store)
  const clients = config.clients.filter((c) => !c.disabled).map((c) => probeClient(policy, c, now))
  const limits = config.reviews.compliance.maxRefreshLifetimeSeconds
  const byId = new Map(config.clients.map((c) => [c.id, c]))
  const inventory: Evidence['inventory'] = { live: 0, liveDeviceFlow: 0, dpopBound: 0, longestLifetimeSeconds: 0, overLimit: [], ofDisabledClients: 0, ofInactivePeople: 0, dormant: 0 }
  const dormantAfter = config.governance.anomalies.dormantGrant.afterSeconds
  let after: { createdAt: number; id: string } | undefined
  for (;;) {
    const page = await store.listGrantSummaries({ revoked: false, unexpiredAt: now }, { limit: 1000, ...(after ? { after } : {}) })
    for (const g of page) {
      inventory.live++
      if (g.deviceGrantId !== null) {
        inventory.liveDeviceFlow++
        if (g.dpopJkt !== null) inventory.dpopBound++
      }
      const client = byId.get(g.clientId)
      if (client === undefined || client.disabled) inventory.ofDisabledClients++
      // client_credentials families have no person; any other subject must be an active person.
      if (g.subject !== null && people.statusOf.get(g.subject) !== 'active') inventory.ofInactivePeople++
      if (g.expiresAt !== null) {
        const lifetime = g.expiresAt - g.createdAt
        inventory.longestLifetimeSeconds = Math.max(inventory.longestLifetimeSeconds, lifetime)
        const limit = limits[client?.riskTier ?? 'standard']
        if (lifetime > limit && inventory.overLimit.length < 50) inventory.overLimit.push({ grantId: g.id, clientId: g.clientId, lifetimeSeconds: lifetime, limitSeconds: limit })
      }
      if ((g.lastUsedAt ?? g.createdAt) < now - dormantAfter) inventory.dormant++
    }
    if (page.length < 1000) break
    const last = page[page.length - 1]!
    after = { createdAt: last.createdAt, id: last.id }
  }

  const active = (await store.listSigningKeys()).filter((k) => k.retiredAt === null).sort((a, b) => b.createdAt - a.createdAt)[0]
  const practices = await summarizeClientPractices(store, { since, until })
  return {
    now,
    period: { since, until },
    issuer: config.issuer,
    policyId: policy.id,
    policySource: policy.source,
    includeBaseline: policy.rules.some((r) => r.name.startsWith('baseline.')),
    chainHead,
    audit,
    anomalies,
    policyDenials,
    clients,
    users: people.evidence,
    inventory,
    signingKey: active ? { kid: active.kid, alg: active.alg, ageDays: Math.floor((now - active.createdAt) / 86_400) } : null,
    practices,
    storageTotals: await store.countStorageClasses({ since }),
    reviews: deps.reviews ? { campaigns: await deps.reviews.countCampaigns(), lastRound: await deps.reviews.lastCompletedRound() } : null,
  }
}

/**
 * Counts people from the people store (`src/identity/`: configured, upstream sign-in, SCIM), so
 * offboarding evidence (OWASP NHI1) covers people who never were in the configuration. Configured
 * users not stored yet (a database the server has not started on) count as the server seeds them.
 * @returns the counts, and each person's status by id (the token `sub`).
 */
async function gatherPeople(config: Config, store: Store): Promise<{ evidence: PeopleEvidence; statusOf: Map<string, PersonStatus> }> {
  const zero = (): StatusCounts => ({ active: 0, disabled: 0, deleted: 0 })
  const evidence: PeopleEvidence = { total: 0, ...zero(), bySource: { config: zero(), provider: zero(), scim: zero() }, withTotp: 0, withManager: 0 }
  const configured = new Map(config.users.map((u) => [u.username, u]))
  const statusOf = new Map<string, PersonStatus>()
  const count = async (id: string, status: PersonStatus, source: PersonSource, hasManager: boolean) => {
    statusOf.set(id, status)
    evidence[status]++
    evidence.bySource[source][status]++
    if (status === 'deleted') return
    evidence.total++
    if (hasManager) evidence.withManager++
    if (configured.get(id)?.totpSecret !== undefined || (await store.findTotpSecret(id)) !== undefined) evidence.withTotp++
  }
  for (const p of await store.listPeople()) await count(p.id, p.status, p.source, p.manager !== null)
  for (const u of config.users) if (!statusOf.has(u.username)) await count(u.username, u.disabled ? 'disabled' : 'active', 'config', u.manager !== undefined)
  return { evidence, statusOf }
}
