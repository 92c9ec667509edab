/**
 * The governance console's read models on Kysely (see ../console-views.ts).
 */
import { sql, type Kysely, type SelectQueryBuilder } from 'kysely'
import type { AuditEventRecord } from '../audit-log.js'
import {
  MAX_PAGE_SIZE,
  type AnomalyRow,
  type AnomalySearch,
  type AuditSearch,
  type ConsoleViewStore,
  type Cursor,
  type GrantRow,
  type GrantSearch,
  type HourlyCounts,
} from '../console-views.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

const like = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`)

export class KyselyConsoleViewStore implements ConsoleViewStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
  }

  countActiveGrantsByClient(now: number): Promise<Map<string, number>> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .selectFrom('grants')
        .select(['client_id', (eb) => eb.fn.countAll<number | string>().as('n')])
        .where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .groupBy('client_id')
        .execute()
      return new Map(rows.map((r) => [r.client_id, Number(r.n)]))
    })
  }

  countOpenAnomalies(): Promise<number> {
    return this.#ctx.guard(async () => {
      const row = await this.#db
        .selectFrom('anomalies as a')
        .leftJoin('console_anomaly_acks as k', 'k.anomaly_id', 'a.id')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('k.anomaly_id', 'is', null)
        .executeTakeFirst()
      return Number(row?.n ?? 0)
    })
  }

  countHourly(from: number, to: number): Promise<HourlyCounts> {
    return this.#ctx.guard(async () => {
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
    })
  }

  searchGrants(q: GrantSearch, page: { limit: number; after?: Cursor }): Promise<GrantRow[]> {
    return this.#ctx.guard(async () => {
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
    })
  }

  #anomalies() {
    return this.#db
      .selectFrom('anomalies as a')
      .leftJoin('console_anomaly_acks as k', 'k.anomaly_id', 'a.id')
      .select(['a.id', 'a.kind', 'a.time', 'a.dedupe_key', 'a.client_id', 'a.subject', 'a.grant_id', 'a.ip', 'a.action', 'a.details', 'k.acknowledged_at', 'k.acknowledged_by', 'k.note'])
  }

  searchAnomalies(q: AnomalySearch, page: { limit: number; after?: Cursor }): Promise<AnomalyRow[]> {
    return this.#ctx.guard(async () => {
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
    })
  }

  findAnomaly(id: string): Promise<AnomalyRow | undefined> {
    return this.#ctx.guard(async () => {
      const row = await this.#anomalies().where('a.id', '=', id).executeTakeFirst()
      return row === undefined ? undefined : anomalyRow(row)
    })
  }

  listAnomaliesOfGrant(grantId: string): Promise<AnomalyRow[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#anomalies().where('a.grant_id', '=', grantId).orderBy('a.time').orderBy('a.id').limit(200).execute()
      return rows.map(anomalyRow)
    })
  }

  acknowledgeAnomaly(id: string, by: string, note: string, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .insertInto('console_anomaly_acks')
        .values({ anomaly_id: id, acknowledged_at: now, acknowledged_by: by, note })
        .onConflict((oc) => oc.column('anomaly_id').doNothing())
        .executeTakeFirst()
      return Number(result.numInsertedOrUpdatedRows ?? 0) > 0
    })
  }

  searchAudit(q: AuditSearch, page: { limit: number; beforeSeq?: number }): Promise<AuditEventRecord[]> {
    return this.#ctx.guard(async () => {
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
    })
  }

  listAuditOfGrant(grantId: string): Promise<AuditEventRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db.selectFrom('audit_events').selectAll().where('grant_id', '=', grantId).orderBy('seq').limit(200).execute()
      return rows.map(auditRow)
    })
  }

  findLastCheckpoint(): Promise<{ seq: number; time: number; hash: string } | undefined> {
    return this.#ctx.guard(async () => {
      const row = await this.#db.selectFrom('audit_checkpoints').select(['seq', 'time', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst()
      return row === undefined ? undefined : { seq: Number(row.seq), time: Number(row.time), hash: row.hash }
    })
  }

  findDecisionEvent(subject: string, decidedAt: number, type: string): Promise<AuditEventRecord | undefined> {
    return this.#ctx.guard(async () => {
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
    })
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
