/**
 * The console's own storage: read models for its list pages and charts, and the one table it
 * writes (anomaly acknowledgements, migration `012_console`). Everything else the console changes
 * goes through the governance services (revocation, principals, device registry), which own those
 * writes.
 *
 * Every list is keyset-paged (newest first, on an indexed column plus the primary key as a tie
 * breaker) and bounded, so a page costs the same on the 10,000th grant as on the first.
 */
import { sql, type Kysely, type SelectQueryBuilder } from 'kysely'
import type { DevicegateDatabase } from '../storage/kysely-store.js'
import { kyselyOf } from '../storage/kysely-handle.js'
import type { AnomalyRecord, AuditEventRecord, Store } from '../storage/store.js'

/** Migration 012: who acknowledged an anomaly, when, and why. */
export interface ConsoleAnomalyAcksTable {
  anomaly_id: string
  acknowledged_at: number
  acknowledged_by: string
  note: string
}

type ConsoleDatabase = DevicegateDatabase & { console_anomaly_acks: ConsoleAnomalyAcksTable }

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

/** The console's queries. */
export interface ConsoleStore {
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

const like = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`)

/** Builds the console's queries on the store's own connection. */
export function createConsoleStore(store: Store): ConsoleStore {
  return new KyselyConsoleStore(kyselyOf(store) as unknown as Kysely<ConsoleDatabase>)
}

class KyselyConsoleStore implements ConsoleStore {
  readonly #db: Kysely<ConsoleDatabase>
  constructor(db: Kysely<ConsoleDatabase>) {
    this.#db = db
  }

  async countActiveGrantsByClient(now: number): Promise<Map<string, number>> {
    const rows = await this.#db
      .selectFrom('grants')
      .select(['client_id', (eb) => eb.fn.countAll<number | string>().as('n')])
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .groupBy('client_id')
      .execute()
    return new Map(rows.map((r) => [r.client_id, Number(r.n)]))
  }

  async countOpenAnomalies(): Promise<number> {
    const row = await this.#db
      .selectFrom('anomalies as a')
      .leftJoin('console_anomaly_acks as k', 'k.anomaly_id', 'a.id')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('k.anomaly_id', 'is', null)
      .executeTakeFirst()
    return Number(row?.n ?? 0)
  }

  async countHourly(from: number, to: number): Promise<HourlyCounts> {
    const hour = (column: string) => sql<number>`${sql.ref(column)} / 3600`
    const toMap = (rows: { h: number | string; n: number | string }[]) => new Map(rows.map((r) => [Number(r.h), Number(r.n)]))
    const decided = this.#db
      .selectFrom('device_grants as d')
      .leftJoin('device_grant_policy as p', 'p.device_grant_id', 'd.id')
      .where('d.decided_at', '>=', from)
      .where('d.decided_at', '<', to)
      // A denial by a person has a subject; one by central revocation (no decision) has none.
      .where('d.subject', 'is not', null)
    const [approvals, denials, refusals, anomalies] = await Promise.all([
      decided
        .select([hour('d.decided_at').as('h'), (eb) => eb.fn.countAll<number>().as('n')])
        .where('d.status', 'in', ['approved', 'redeemed'])
        .groupBy(hour('d.decided_at'))
        .execute(),
      decided
        .select([hour('d.decided_at').as('h'), (eb) => eb.fn.countAll<number>().as('n')])
        .where('d.status', '=', 'denied')
        .where((eb) => eb.or([eb('p.decision', 'is', null), eb('p.decision', '!=', 'deny')]))
        .groupBy(hour('d.decided_at'))
        .execute(),
      this.#db
        .selectFrom('device_grant_policy')
        .select([hour('decided_at').as('h'), (eb) => eb.fn.countAll<number>().as('n')])
        .where('decision', '=', 'deny')
        .where('decided_at', '>=', from)
        .where('decided_at', '<', to)
        .groupBy(hour('decided_at'))
        .execute(),
      this.#db
        .selectFrom('anomalies')
        .select([hour('time').as('h'), (eb) => eb.fn.countAll<number>().as('n')])
        .where('time', '>=', from)
        .where('time', '<', to)
        .groupBy(hour('time'))
        .execute(),
    ])
    return { approvals: toMap(approvals), denials: toMap(denials), refusals: toMap(refusals), anomalies: toMap(anomalies) }
  }

  async searchGrants(q: GrantSearch, page: { limit: number; after?: Cursor }): Promise<GrantRow[]> {
    if (q.clientIds !== undefined && q.clientIds.length === 0) return []
    let query = this.#db
      .selectFrom('grants as g')
      .leftJoin('device_grants as d', 'd.id', 'g.device_grant_id')
      .leftJoin('device_grant_policy as p', 'p.device_grant_id', 'g.device_grant_id')
      .select([
        'g.id',
        'g.client_id',
        'g.subject',
        'g.scope',
        'g.created_at',
        'g.expires_at',
        'g.revoked_at',
        'g.dpop_jkt',
        'g.last_used_at',
        'g.last_used_ip',
        'g.device_grant_id',
        'd.request_ip',
        'd.request_user_agent',
        'd.decided_at',
        'p.decision',
      ])
    if (q.subject !== undefined) query = query.where('g.subject', '=', q.subject)
    if (q.clientIds !== undefined) query = query.where('g.client_id', 'in', [...q.clientIds])
    if (q.status === 'revoked') query = query.where('g.revoked_at', 'is not', null)
    if (q.status === 'active') query = query.where('g.revoked_at', 'is', null).where((eb) => eb.or([eb('g.expires_at', 'is', null), eb('g.expires_at', '>', q.now)]))
    if (q.status === 'expired') query = query.where('g.revoked_at', 'is', null).where('g.expires_at', '<=', q.now)
    if (q.createdBefore !== undefined) query = query.where('g.created_at', '<', q.createdBefore)
    if (q.unusedSince !== undefined) query = query.where((eb) => eb(eb.fn.coalesce('g.last_used_at', 'g.created_at'), '<', q.unusedSince!))
    if (q.network !== undefined) {
      const prefix = like(q.network)
      // JSON.stringify of NetworkFacts starts with "ip" (policy/service.ts builds {ip, country, …}).
      query = query.where((eb) =>
        eb.or([
          eb('d.request_ip', 'like', sql<string>`${prefix + '%'} escape '\\'`),
          eb('p.explanation_json', 'like', sql<string>`${'%"approver":{"ip":"' + prefix + '%'} escape '\\'`),
        ]),
      )
    }
    if (q.country !== undefined) query = query.where('p.explanation_json', 'like', sql<string>`${'%"country":"' + like(q.country) + '"%'} escape '\\'`)
    query = keyset(query, 'g.created_at', 'g.id', page.after)
    const rows = await query.orderBy('g.created_at', 'desc').orderBy('g.id', 'desc').limit(Math.min(page.limit, MAX_PAGE_SIZE + 1)).execute()
    return rows.map((r) => ({
      id: r.id,
      clientId: r.client_id,
      subject: r.subject,
      scope: r.scope,
      createdAt: r.created_at,
      expiresAt: r.expires_at,
      revokedAt: r.revoked_at,
      dpopJkt: r.dpop_jkt,
      lastUsedAt: r.last_used_at,
      lastUsedIp: r.last_used_ip,
      deviceGrantId: r.device_grant_id,
      requestIp: r.request_ip,
      requestUserAgent: r.request_user_agent,
      approvedAt: r.decided_at,
      policyDecision: r.decision,
    }))
  }

  #anomalies() {
    return this.#db
      .selectFrom('anomalies as a')
      .leftJoin('console_anomaly_acks as k', 'k.anomaly_id', 'a.id')
      .select(['a.id', 'a.kind', 'a.time', 'a.dedupe_key', 'a.client_id', 'a.subject', 'a.grant_id', 'a.ip', 'a.action', 'a.details', 'k.acknowledged_at', 'k.acknowledged_by', 'k.note'])
  }

  async searchAnomalies(q: AnomalySearch, page: { limit: number; after?: Cursor }): Promise<AnomalyRow[]> {
    let query = this.#anomalies()
    if (q.kind !== undefined) query = query.where('a.kind', '=', q.kind)
    if (q.subject !== undefined) query = query.where('a.subject', '=', q.subject)
    if (q.clientId !== undefined) query = query.where('a.client_id', '=', q.clientId)
    if (q.since !== undefined) query = query.where('a.time', '>=', q.since)
    if (q.state === 'open') query = query.where('k.anomaly_id', 'is', null)
    if (q.state === 'acknowledged') query = query.where('k.anomaly_id', 'is not', null)
    query = keyset(query, 'a.time', 'a.id', page.after)
    const rows = await query.orderBy('a.time', 'desc').orderBy('a.id', 'desc').limit(Math.min(page.limit, MAX_PAGE_SIZE + 1)).execute()
    return rows.map(anomalyRow)
  }

  async findAnomaly(id: string): Promise<AnomalyRow | undefined> {
    const row = await this.#anomalies().where('a.id', '=', id).executeTakeFirst()
    return row === undefined ? undefined : anomalyRow(row)
  }

  async listAnomaliesOfGrant(grantId: string): Promise<AnomalyRow[]> {
    const rows = await this.#anomalies().where('a.grant_id', '=', grantId).orderBy('a.time').orderBy('a.id').limit(200).execute()
    return rows.map(anomalyRow)
  }

  async acknowledgeAnomaly(id: string, by: string, note: string, now: number): Promise<boolean> {
    const result = await this.#db
      .insertInto('console_anomaly_acks')
      .values({ anomaly_id: id, acknowledged_at: now, acknowledged_by: by, note })
      .onConflict((oc) => oc.column('anomaly_id').doNothing())
      .executeTakeFirst()
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0
  }

  async searchAudit(q: AuditSearch, page: { limit: number; beforeSeq?: number }): Promise<AuditEventRecord[]> {
    let query = this.#db.selectFrom('audit_events').selectAll()
    if (q.type !== undefined) query = query.where('type', '=', q.type)
    if (q.actor !== undefined) query = query.where('actor', '=', q.actor)
    if (q.subject !== undefined) query = query.where('subject', '=', q.subject)
    if (q.clientId !== undefined) query = query.where('client_id', '=', q.clientId)
    if (q.grantId !== undefined) query = query.where('grant_id', '=', q.grantId)
    if (q.since !== undefined) query = query.where('time', '>=', q.since)
    if (q.until !== undefined) query = query.where('time', '<', q.until)
    if (page.beforeSeq !== undefined) query = query.where('seq', '<', page.beforeSeq)
    const rows = await query.orderBy('seq', 'desc').limit(Math.min(page.limit, MAX_PAGE_SIZE + 1)).execute()
    return rows.map(auditRow)
  }

  async listAuditOfGrant(grantId: string): Promise<AuditEventRecord[]> {
    const rows = await this.#db.selectFrom('audit_events').selectAll().where('grant_id', '=', grantId).orderBy('seq').limit(200).execute()
    return rows.map(auditRow)
  }

  async findLastCheckpoint(): Promise<{ seq: number; time: number; hash: string } | undefined> {
    const row = await this.#db.selectFrom('audit_checkpoints').select(['seq', 'time', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst()
    return row === undefined ? undefined : { seq: Number(row.seq), time: Number(row.time), hash: row.hash }
  }

  async findDecisionEvent(subject: string, decidedAt: number, type: string): Promise<AuditEventRecord | undefined> {
    const row = await this.#db
      .selectFrom('audit_events')
      .selectAll()
      .where('time', '>=', decidedAt)
      .where('time', '<=', decidedAt + 5)
      .where('type', '=', type)
      .where('subject', '=', subject)
      .orderBy('seq')
      .executeTakeFirst()
    return row === undefined ? undefined : auditRow(row)
  }
}

/** Adds "strictly after `after` in (time desc, id desc) order". */
function keyset<Q extends SelectQueryBuilder<any, any, any>>(query: Q, timeColumn: string, idColumn: string, after: Cursor | undefined): Q {
  if (after === undefined) return query
  return query.where((eb: any) =>
    eb.or([eb(timeColumn, '<', after.time), eb.and([eb(timeColumn, '=', after.time), eb(idColumn, '<', after.id)])]),
  ) as Q
}

function anomalyRow(r: {
  id: string
  kind: string
  time: number
  dedupe_key: string | null
  client_id: string | null
  subject: string | null
  grant_id: string | null
  ip: string | null
  action: string
  details: string
  acknowledged_at: number | null
  acknowledged_by: string | null
  note: string | null
}): AnomalyRow {
  return {
    id: r.id,
    kind: r.kind,
    time: Number(r.time),
    dedupeKey: r.dedupe_key,
    clientId: r.client_id,
    subject: r.subject,
    grantId: r.grant_id,
    ip: r.ip,
    action: r.action,
    details: r.details,
    acknowledgedAt: r.acknowledged_at === null ? null : Number(r.acknowledged_at),
    acknowledgedBy: r.acknowledged_by,
    note: r.note,
  }
}

function auditRow(r: DevicegateDatabase['audit_events']): AuditEventRecord {
  return {
    seq: Number(r.seq),
    time: Number(r.time),
    type: r.type,
    actor: r.actor,
    clientId: r.client_id,
    subject: r.subject,
    ip: r.ip,
    grantId: r.grant_id,
    details: r.details,
    prevHash: r.prev_hash,
    hash: r.hash,
  }
}
