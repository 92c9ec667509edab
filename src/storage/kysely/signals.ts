/**
 * The Kysely implementation of {@link SignalOutboxStore} (signals: outbox, destinations, stream
 * subjects, deliveries), on the store's one connection.
 */
import { sql, type Kysely } from 'kysely'
import { REVIEW_SIGNAL_TYPES, type DeliveryRecord, type DeliveryStatus, type DestinationKind, type DestinationRecord, type DestinationStatus, type NewOutboxEvent, type OutboxEvent, type SignalOutboxStore, type StreamSubjectRecord } from '../signals.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

const num = (v: unknown): number => Number(v)
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))

function parseObject(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text)
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

function toDestination(row: DevicegateDatabase['signal_destinations']): DestinationRecord {
  return {
    id: row.id,
    kind: row.kind as DestinationKind,
    owner: row.owner,
    config: parseObject(row.config),
    status: row.status as DestinationStatus,
    statusReason: row.status_reason,
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
    nextAttemptAtMs: num(row.next_attempt_at_ms),
    failingSince: numOrNull(row.failing_since),
    secret: row.secret ?? null,
  }
}

function toDelivery(row: DevicegateDatabase['signal_deliveries']): DeliveryRecord {
  return {
    destinationId: row.destination_id,
    eventSeq: num(row.event_seq),
    jti: row.jti,
    payload: row.payload,
    status: row.status as DeliveryStatus,
    attempts: num(row.attempts),
    lastError: row.last_error,
    createdAt: num(row.created_at),
    lastAttemptAt: numOrNull(row.last_attempt_at),
    deliveredAt: numOrNull(row.delivered_at),
  }
}

/**
 * Appends one event to the outbox on `db`, which may be a transaction of another aggregate (a
 * refresh rotation writes its token-claims-change in the rotating transaction).
 */
export async function insertOutboxEvent(db: Kysely<DevicegateDatabase>, event: NewOutboxEvent): Promise<void> {
  await db
    .insertInto('signal_outbox')
    .values({ type: event.type, occurred_at: event.occurredAt, ref: event.ref, target: event.target, payload: JSON.stringify(event.payload) } as never)
    .execute()
}

/** Largest id list per statement (SQLite's bound-parameter limit is far above). */
const CHUNK = 500

/** The Kysely implementation of {@link SignalsStore}. */
export class KyselySignalOutboxStore implements SignalOutboxStore {
  readonly #ctx: KyselyContext

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
  }

  #run<T>(operation: (db: Kysely<DevicegateDatabase>) => Promise<T>): Promise<T> {
    return this.#ctx.guard(() => operation(this.#ctx.db))
  }

  appendSignalEvent(event: NewOutboxEvent): Promise<void> {
    return this.#run((db) => insertOutboxEvent(db, event))
  }

  /** Reads a batch of pending rows and the rows they name (grants, devices, anomalies, audit events), a few queries per batch. */
  listPendingSignalEvents(limit: number): Promise<OutboxEvent[]> {
    return this.#run(async (db) => {
      const rows = await db.selectFrom('signal_outbox').selectAll().orderBy('seq').limit(limit).execute()
      const refs = (types: string[]) => [...new Set(rows.filter((r) => types.includes(r.type) && r.ref !== null).map((r) => r.ref!))]
      const byKey = async <T>(ids: string[], read: (chunk: string[]) => Promise<T[]>, key: (row: T) => string) => {
        const out = new Map<string, T>()
        for (let i = 0; i < ids.length; i += CHUNK) for (const row of await read(ids.slice(i, i + CHUNK))) out.set(key(row), row)
        return out
      }
      const grants = await byKey(refs(['grant.revoked', 'token.claims_changed']), (ids) => db.selectFrom('grants').select(['id', 'client_id', 'subject', 'scope', 'device_grant_id', 'dpop_jkt']).where('id', 'in', ids).execute(), (g) => g.id)
      const devices = await byKey(refs(['device.retired']), (ids) => db.selectFrom('devices').select(['jkt', 'label']).where('jkt', 'in', ids).execute(), (d) => d.jkt)
      const anomalies = await byKey(refs(['anomaly.raised']), (ids) => db.selectFrom('anomalies').selectAll().where('id', 'in', ids).execute(), (a) => a.id)
      const audit = await byKey(refs(['admin.action', ...REVIEW_SIGNAL_TYPES]), (ids) => db.selectFrom('audit_events').selectAll().where('seq', 'in', ids.map(Number)).execute(), (e) => String(e.seq))
      return rows.map((r): OutboxEvent => {
        const base = { seq: num(r.seq), id: `evt_${r.seq}`, type: r.type, occurredAt: num(r.occurred_at), target: r.target }
        const stored = r.payload === null ? {} : parseObject(r.payload)
        const ref = r.ref ?? ''
        switch (r.type) {
          case 'grant.revoked':
          case 'token.claims_changed': {
            const g = grants.get(ref)
            const facts = r.type === 'grant.revoked' && g ? { scope: g.scope, deviceGrantId: g.device_grant_id, dpopJkt: g.dpop_jkt } : {}
            return { ...base, clientId: g?.client_id ?? null, subject: g?.subject ?? null, grantId: r.ref, payload: { ...facts, ...stored } }
          }
          case 'user.revoked':
            // Every family of one user (the ref) revoked at once (see grant-inventory.ts).
            return { ...base, clientId: null, subject: ref, grantId: null, payload: stored }
          case 'device.retired':
            return { ...base, clientId: null, subject: null, grantId: null, payload: { jkt: ref, label: devices.get(ref)?.label ?? null } }
          case 'anomaly.raised': {
            const a = anomalies.get(ref)
            return { ...base, clientId: a?.client_id ?? null, subject: a?.subject ?? null, grantId: a?.grant_id ?? null, payload: a ? { id: a.id, kind: a.kind, action: a.action, ip: a.ip, details: a.details } : { id: ref } }
          }
          case 'admin.action': {
            const e = audit.get(ref)
            return { ...base, clientId: e?.client_id ?? null, subject: e?.subject ?? null, grantId: e?.grant_id ?? null, payload: e ? { seq: num(e.seq), auditType: e.type, actor: e.actor, details: e.details } : { seq: Number(ref) } }
          }
          default: {
            if (!(REVIEW_SIGNAL_TYPES as readonly string[]).includes(r.type)) return { ...base, clientId: null, subject: null, grantId: null, payload: stored }
            // An access-review event: the audit record's facts (reviewers, campaign, counts, deadline).
            const e = audit.get(ref)
            return { ...base, clientId: e?.client_id ?? null, subject: e?.subject ?? null, grantId: e?.grant_id ?? null, payload: e ? { seq: num(e.seq), details: e.details } : { seq: Number(ref) } }
          }
        }
      })
    })
  }

  fanOutSignalEvents(
    seqs: readonly number[],
    deliveries: readonly Omit<DeliveryRecord, 'status' | 'attempts' | 'lastError' | 'lastAttemptAt' | 'deliveredAt'>[]
  ): Promise<void> {
    return this.#run((db) =>
      db.transaction().execute(async (trx) => {
        for (const d of deliveries)
          await trx
            .insertInto('signal_deliveries')
            .values({
              destination_id: d.destinationId,
              event_seq: d.eventSeq,
              jti: d.jti,
              payload: d.payload,
              status: 'pending',
              attempts: 0,
              last_error: null,
              created_at: d.createdAt,
              last_attempt_at: null,
              delivered_at: null,
            })
            .onConflict((oc) => oc.columns(['destination_id', 'event_seq']).doNothing())
            .execute()
        for (let i = 0; i < seqs.length; i += CHUNK)
          await trx.deleteFrom('signal_outbox').where('seq', 'in', seqs.slice(i, i + CHUNK)).execute()
      }),
    )
  }

  createSignalDestination(r: DestinationRecord): Promise<void> {
    return this.#run(async (db) => {
      await db
        .insertInto('signal_destinations')
        .values({
          id: r.id,
          kind: r.kind,
          owner: r.owner,
          config: JSON.stringify(r.config),
          status: r.status,
          status_reason: r.statusReason,
          created_at: r.createdAt,
          updated_at: r.updatedAt,
          next_attempt_at_ms: r.nextAttemptAtMs,
          failing_since: r.failingSince,
          lease_owner: null,
          lease_until_ms: 0,
          secret: r.secret ?? null,
        })
        .execute()
    })
  }

  findSignalDestination(id: string): Promise<DestinationRecord | undefined> {
    return this.#run(async (db) => {
      const row = await db.selectFrom('signal_destinations').selectAll().where('id', '=', id).executeTakeFirst()
      return row && toDestination(row)
    })
  }

  listSignalDestinations(filter: { kind?: DestinationKind; owner?: string }): Promise<DestinationRecord[]> {
    return this.#run(async (db) => {
      let q = db.selectFrom('signal_destinations').selectAll()
      if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind)
      if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner)
      return (await q.orderBy('created_at').orderBy('id').execute()).map(toDestination)
    })
  }

  updateSignalDestination(id: string, patch: { config?: Record<string, unknown>; secret?: string | null; status?: DestinationStatus; statusReason?: string | null }, now: number): Promise<boolean> {
    return this.#run(async (db) => {
      const result = await db
        .updateTable('signal_destinations')
        .set({
          updated_at: now,
          ...(patch.config !== undefined ? { config: JSON.stringify(patch.config) } : {}),
          ...(patch.secret !== undefined ? { secret: patch.secret } : {}),
          ...(patch.status !== undefined ? { status: patch.status } : {}),
          ...(patch.statusReason !== undefined ? { status_reason: patch.statusReason } : {}),
          // Re-enabling a paused destination makes it due now and starts a fresh failing run.
          ...(patch.status === 'enabled' ? { next_attempt_at_ms: 0, failing_since: null } : {}),
        })
        .where('id', '=', id)
        .executeTakeFirst()
      return Number(result.numUpdatedRows) > 0
    })
  }

  replaceSignalDestinationSecret(id: string, expected: string, next: string): Promise<boolean> {
    return this.#run(async (db) => {
      const result = await db.updateTable('signal_destinations').set({ secret: next }).where('id', '=', id).where('secret', '=', expected).executeTakeFirst()
      return Number(result.numUpdatedRows) === 1
    })
  }

  deleteSignalDestination(id: string): Promise<boolean> {
    return this.#run((db) =>
      db.transaction().execute(async (trx) => {
        await trx.deleteFrom('signal_deliveries').where('destination_id', '=', id).execute()
        await trx.deleteFrom('signal_subjects').where('destination_id', '=', id).execute()
        const result = await trx.deleteFrom('signal_destinations').where('id', '=', id).executeTakeFirst()
        return Number(result.numDeletedRows) > 0
      }),
    )
  }

  setStreamSubject(destinationId: string, subject: StreamSubjectRecord, now: number): Promise<void> {
    return this.#run(async (db) => {
      const values = { subject: JSON.stringify(subject.subject), included: subject.included ? 1 : 0, changed_at: now }
      await db
        .insertInto('signal_subjects')
        .values({ destination_id: destinationId, subject_key: subject.key, ...values })
        .onConflict((oc) => oc.columns(['destination_id', 'subject_key']).doUpdateSet(values))
        .execute()
    })
  }

  listStreamSubjects(destinationId: string): Promise<StreamSubjectRecord[]> {
    return this.#run(async (db) => {
      const rows = await db.selectFrom('signal_subjects').selectAll().where('destination_id', '=', destinationId).execute()
      return rows.map((r) => ({ key: r.subject_key, subject: parseObject(r.subject), included: Number(r.included) === 1 }))
    })
  }

  acquireDestinationLease(destinationId: string, owner: string, nowMs: number, untilMs: number): Promise<boolean> {
    return this.#run(async (db) => {
      const result = await db
        .updateTable('signal_destinations')
        .set({ lease_owner: owner, lease_until_ms: untilMs })
        .where('id', '=', destinationId)
        .where((eb) => eb.or([eb('lease_until_ms', '<', nowMs), eb('lease_owner', '=', owner), eb('lease_owner', 'is', null)]))
        .executeTakeFirst()
      return Number(result.numUpdatedRows) > 0
    })
  }

  releaseDestinationLease(destinationId: string, owner: string): Promise<void> {
    return this.#run(async (db) => {
      await db
        .updateTable('signal_destinations')
        .set({ lease_owner: null, lease_until_ms: 0 })
        .where('id', '=', destinationId)
        .where('lease_owner', '=', owner)
        .execute()
    })
  }

  listDueSignalDestinations(kind: DestinationKind, nowMs: number): Promise<DestinationRecord[]> {
    return this.#run(async (db) => {
      const rows = await db
        .selectFrom('signal_destinations')
        .selectAll()
        .where('kind', '=', kind)
        .where('status', '=', 'enabled')
        .where('next_attempt_at_ms', '<=', nowMs)
        .where((eb) =>
          eb.exists(
            eb
              .selectFrom('signal_deliveries')
              .select('signal_deliveries.jti')
              .whereRef('signal_deliveries.destination_id', '=', 'signal_destinations.id')
              .where('signal_deliveries.status', '=', 'pending'),
          ),
        )
        .execute()
      return rows.map(toDestination)
    })
  }

  listPendingSignalDeliveries(destinationId: string, limit: number): Promise<DeliveryRecord[]> {
    return this.#run(async (db) => {
      const rows = await db
        .selectFrom('signal_deliveries')
        .selectAll()
        .where('destination_id', '=', destinationId)
        .where('status', '=', 'pending')
        .orderBy('event_seq')
        .limit(limit)
        .execute()
      return rows.map(toDelivery)
    })
  }

  completeSignalDeliveries(destinationId: string, jtis: readonly string[], status: Exclude<DeliveryStatus, 'pending'>, now: number, error?: string): Promise<number> {
    if (jtis.length === 0) return Promise.resolve(0)
    return this.#run(async (db) => {
      let changed = 0
      for (let i = 0; i < jtis.length; i += CHUNK) {
        const result = await db
          .updateTable('signal_deliveries')
          .set({ status, delivered_at: now, ...(error !== undefined ? { last_error: error.slice(0, 500) } : {}) })
          .where('destination_id', '=', destinationId)
          .where('jti', 'in', jtis.slice(i, i + CHUNK))
          .where('status', '=', 'pending')
          .executeTakeFirst()
        changed += Number(result.numUpdatedRows)
      }
      return changed
    })
  }

  recordSignalDeliveryFailure(destinationId: string, eventSeq: number, error: string, now: number, nextAttemptAtMs: number): Promise<void> {
    return this.#run((db) =>
      db.transaction().execute(async (trx) => {
        await trx
          .updateTable('signal_deliveries')
          .set((eb) => ({ attempts: eb('attempts', '+', 1), last_error: error.slice(0, 500), last_attempt_at: now }))
          .where('destination_id', '=', destinationId)
          .where('event_seq', '=', eventSeq)
          .execute()
        await trx
          .updateTable('signal_destinations')
          .set({ next_attempt_at_ms: nextAttemptAtMs, failing_since: sql<number>`coalesce(failing_since, ${now})` })
          .where('id', '=', destinationId)
          .execute()
      }),
    )
  }

  recordSignalDeliverySuccess(destinationId: string, eventSeq: number, now: number): Promise<void> {
    return this.#run((db) =>
      db.transaction().execute(async (trx) => {
        await trx
          .updateTable('signal_deliveries')
          .set((eb) => ({ attempts: eb('attempts', '+', 1), last_attempt_at: now, status: 'delivered', delivered_at: now, last_error: null }))
          .where('destination_id', '=', destinationId)
          .where('event_seq', '=', eventSeq)
          .where('status', '=', 'pending')
          .execute()
        await trx.updateTable('signal_destinations').set({ next_attempt_at_ms: 0, failing_since: null }).where('id', '=', destinationId).where('failing_since', 'is not', null).execute()
      }),
    )
  }

  listSignalDeliveries(destinationId: string, query: { status?: DeliveryStatus; limit: number }): Promise<DeliveryRecord[]> {
    return this.#run(async (db) => {
      let q = db.selectFrom('signal_deliveries').selectAll().where('destination_id', '=', destinationId)
      if (query.status !== undefined) q = q.where('status', '=', query.status)
      return (await q.orderBy('event_seq', 'desc').limit(query.limit).execute()).map(toDelivery)
    })
  }

  retrySignalDelivery(destinationId: string, eventSeq: number): Promise<boolean> {
    return this.#run((db) =>
      db.transaction().execute(async (trx) => {
        const result = await trx
          .updateTable('signal_deliveries')
          .set({ status: 'pending', delivered_at: null })
          .where('destination_id', '=', destinationId)
          .where('event_seq', '=', eventSeq)
          .executeTakeFirst()
        if (Number(result.numUpdatedRows) === 0) return false
        await trx.updateTable('signal_destinations').set({ next_attempt_at_ms: 0 }).where('id', '=', destinationId).execute()
        return true
      }),
    )
  }

  purgeSignals(before: number): Promise<void> {
    return this.#run(async (db) => {
      await db.deleteFrom('signal_deliveries').where('status', '!=', 'pending').where('created_at', '<', before).execute()
    })
  }
}
