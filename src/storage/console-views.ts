/**
 * Storage domain of the governance console (src/console/): read models for its list pages and
 * hourly charts, and the one table it writes, `console_anomaly_acks` (migration 012). Everything
 * else the console changes goes through the governance services, which own those writes.
 *
 * Every list is keyset-paged (newest first, on an indexed column plus the primary key as a tie
 * breaker) and bounded, so a page costs the same on the 10,000th grant as on the first.
 */
import type { AuditEventRecord } from './audit-log.js'
import type { AnomalyRecord } from './governance-records.js'

/** Longest page any console list returns. */
export const MAX_PAGE_SIZE = 200

/** Grant search criteria; all given ones must hold. Times are epoch seconds. */
export interface GrantSearch {
  /** The person (grant subject, i.e. the approver of a device-flow grant). */
  subject?: string
  /** Only these clients (a client, or every client of a risk tier). Empty: nothing matches. */
  clientIds?: readonly string[]
  /** `active` (not revoked, not past end of life at `now`), `revoked` or `expired`. */
  status?: 'active' | 'revoked' | 'expired'
  /**
   * Address prefix (`203.0.113.` or a full address) the device authorization was requested from,
   * or the approving browser's address as recorded with the policy decision.
   */
  network?: string
  /** ISO 3166-1 alpha-2 country of either side, as recorded with the policy decision. */
  country?: string
  /** Only grants created before this time (age). */
  createdBefore?: number
  /** Only grants not used (nor created) since this time (dormant). */
  unusedSince?: number
  /** Evaluation time for `status`. */
  now: number
}

/** One row of the grant search. */
export interface GrantRow {
  id: string
  clientId: string
  subject: string | null
  scope: string
  createdAt: number
  expiresAt: number | null
  revokedAt: number | null
  dpopJkt: string | null
  lastUsedAt: number | null
  lastUsedIp: string | null
  deviceGrantId: string | null
  requestIp: string | null
  requestUserAgent: string | null
  approvedAt: number | null
  /** The policy decision at approval, if one was recorded. */
  policyDecision: string | null
}

/** A keyset position: the last row's sort key. */
export interface Cursor {
  time: number
  id: string
}

/** An anomaly with its acknowledgement, if any. */
export interface AnomalyRow extends AnomalyRecord {
  acknowledgedAt: number | null
  acknowledgedBy: string | null
  note: string | null
}

/** Anomaly list criteria. */
export interface AnomalySearch {
  kind?: string
  /** `open` (not acknowledged) or `acknowledged`. */
  state?: 'open' | 'acknowledged'
  subject?: string
  clientId?: string
  /** Only anomalies at or after this time. */
  since?: number
}

/** Audit browse criteria. */
export interface AuditSearch {
  type?: string
  actor?: string
  subject?: string
  clientId?: string
  grantId?: string
  since?: number
  until?: number
}

/** Events of the four overview series, counted per hour (`hour` = epoch seconds / 3600, floored). */
export interface HourlyCounts {
  approvals: Map<number, number>
  denials: Map<number, number>
  refusals: Map<number, number>
  anomalies: Map<number, number>
}

/** The governance console's read models and anomaly acknowledgements. */
export interface ConsoleViewStore {
  /** Live families per client (not revoked, not past end of life at `now`). */
  countActiveGrantsByClient(now: number): Promise<Map<string, number>>
  /** Anomalies nobody acknowledged yet. */
  countOpenAnomalies(): Promise<number>
  /** Approvals, user denials, policy refusals and anomalies per hour in `[from, to)`. */
  countHourly(from: number, to: number): Promise<HourlyCounts>
  /** One page of grants, newest first; pass the last row's `createdAt`/`id` as `after`. */
  searchGrants(q: GrantSearch, page: { limit: number; after?: Cursor }): Promise<GrantRow[]>
  /** One page of anomalies, newest first. */
  searchAnomalies(q: AnomalySearch, page: { limit: number; after?: Cursor }): Promise<AnomalyRow[]>
  findAnomaly(id: string): Promise<AnomalyRow | undefined>
  /** Anomalies about one grant, oldest first. */
  listAnomaliesOfGrant(grantId: string): Promise<AnomalyRow[]>
  /** Records an acknowledgement. @returns false when it was already acknowledged (the first stands). */
  acknowledgeAnomaly(id: string, by: string, note: string, now: number): Promise<boolean>
  /** One page of audit events, newest first; `beforeSeq` is the last row's seq. */
  searchAudit(q: AuditSearch, page: { limit: number; beforeSeq?: number }): Promise<AuditEventRecord[]>
  /** Audit events about one grant, oldest first (at most 200). */
  listAuditOfGrant(grantId: string): Promise<AuditEventRecord[]>
  /** The newest signed checkpoint of the audit chain, if any. */
  findLastCheckpoint(): Promise<{ seq: number; time: number; hash: string } | undefined>
  /** The audit event that recorded a device authorization decision (approver's address), if any. */
  findDecisionEvent(subject: string, decidedAt: number, type: string): Promise<AuditEventRecord | undefined>
}
