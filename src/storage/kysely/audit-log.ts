/**
 * The governance audit log on Kysely: `audit_events`, `audit_head`, `audit_checkpoints` (see
 * ../audit-log.ts). Appends serialise on the chain-head row, across instances.
 */
import { sql, type Kysely, type Selectable } from 'kysely'
import type { AuditCheckpointRecord, AuditEventBody, AuditEventQuery, AuditEventRecord, AuditLogStore, NewAuditEvent } from '../audit-log.js'
import type { KyselyContext } from './context.js'
import { PreparedQuery } from './prepared.js'
import type { AuditEventsTable, DevicegateDatabase } from './tables.js'

export class KyselyAuditLogStore implements AuditLogStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>
  /** One single-row insert compiled once (see {@link PreparedQuery}); used on SQLite. */
  readonly #auditEventInsert: PreparedQuery<unknown>
  /** `seq = seq + n … RETURNING seq, hash` on the chain-head row, compiled once. */
  readonly #headAdvance: PreparedQuery<{ seq: number | string; hash: string }>
  /** `hash = ?` on the chain-head row, compiled once. */
  readonly #headHash: PreparedQuery<unknown>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
    const db = ctx.db
    this.#auditEventInsert = new PreparedQuery(12, (seq, time, type, actor, clientId, subject, ip, grantId, details, prevHash, hash, mac) =>
      db.insertInto('audit_events').values({
        seq: sql<number>`${seq}`,
        time: sql<number>`${time}`,
        type: type!,
        actor: actor!,
        client_id: clientId!,
        subject: subject!,
        ip: ip!,
        grant_id: grantId!,
        details: details!,
        prev_hash: prevHash!,
        hash: hash!,
        mac: mac!,
      }),
    )
    this.#headAdvance = new PreparedQuery(1, (n) =>
      db
        .updateTable('audit_head')
        .set((eb) => ({ seq: eb('seq', '+', sql<number>`${n}`) }))
        .where('id', '=', 1)
        .returning(['seq', 'hash']),
    )
    this.#headHash = new PreparedQuery(1, (hash) => db.updateTable('audit_head').set({ hash: hash! }).where('id', '=', 1))
  }

  /**
   * The head row is updated first (`seq = seq + n … RETURNING`), which takes its row lock on
   * PostgreSQL and the write lock on SQLite: a concurrent appender waits, then sees this
   * transaction's head. Hashes are computed in between, inside the transaction.
   */
  appendAuditEvents(
    events: readonly NewAuditEvent[],
    chain: (prevHash: string, event: AuditEventBody) => string,
    seal?: (record: AuditEventRecord) => string,
  ): Promise<AuditEventRecord[]> {
    if (events.length === 0) return Promise.resolve([])
    return this.#ctx.guard(() =>
      this.#db.transaction().execute(async (trx) => {
        const [head] = await this.#headAdvance.execute(trx, events.length)
        if (head === undefined) throw new Error('audit_head row missing')
        let seq = Number(head.seq) - events.length
        let prevHash = head.hash
        const records: AuditEventRecord[] = events.map((e) => {
          // Written out rather than spread: one object per event, built in one shape.
          const record: AuditEventRecord = {
            seq: ++seq,
            time: e.time,
            type: e.type,
            actor: e.actor,
            clientId: e.clientId,
            subject: e.subject,
            ip: e.ip,
            grantId: e.grantId,
            details: e.details,
            prevHash,
            hash: '',
            mac: null,
          }
          record.hash = chain(prevHash, record)
          if (seal) record.mac = seal(record)
          prevHash = record.hash
          return record
        })
        if (this.#ctx.kind === 'postgres') {
          // Few round trips: multi-row inserts.
          for (let i = 0; i < records.length; i += 200) {
            await trx
              .insertInto('audit_events')
              .values(records.slice(i, i + 200).map(auditEventRow))
              .execute()
          }
        } else {
          // In-process SQLite: one prepared single-row insert reused for every record is cheaper than
          // compiling (and preparing) a new multi-row statement for every batch size.
          for (const r of records)
            await this.#auditEventInsert.execute(trx, r.seq, r.time, r.type, r.actor, r.clientId, r.subject, r.ip, r.grantId, r.details, r.prevHash, r.hash, r.mac ?? null)
        }
        await this.#headHash.execute(trx, prevHash)
        return records
      }),
    )
  }

  readAuditHead(): Promise<{ seq: number; hash: string }> {
    return this.#ctx.guard(async () => {
      const row = await this.#db
        .selectFrom('audit_head')
        .select(['seq', 'hash'])
        .where('id', '=', 1)
        .executeTakeFirstOrThrow()
      return { seq: Number(row.seq), hash: row.hash }
    })
  }

  listAuditEvents(query: AuditEventQuery): Promise<AuditEventRecord[]> {
    return this.#ctx.guard(async () => {
      if (query.types !== undefined && query.types.length === 0) return []
      let q = this.#db.selectFrom('audit_events').selectAll()
      if (query.afterSeq !== undefined) q = q.where('seq', '>', query.afterSeq)
      if (query.sinceTime !== undefined) q = q.where('time', '>=', query.sinceTime)
      if (query.untilTime !== undefined) q = q.where('time', '<', query.untilTime)
      if (query.types !== undefined) q = q.where('type', 'in', [...query.types])
      const rows = await q.orderBy('seq').limit(query.limit).execute()
      return rows.map(toAuditEvent)
    })
  }

  insertAuditCheckpoint(checkpoint: AuditCheckpointRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('audit_checkpoints')
        .values({ ...checkpoint })
        .onConflict((oc) => oc.column('seq').doNothing())
        .execute()
    })
  }

  listAuditCheckpoints(): Promise<AuditCheckpointRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute()
      return rows.map((r) => ({ seq: Number(r.seq), hash: r.hash, time: Number(r.time), signature: r.signature }))
    })
  }
}

// --- row mapping ---

function auditEventRow(r: AuditEventRecord): AuditEventsTable {
  return {
    seq: r.seq,
    time: r.time,
    type: r.type,
    actor: r.actor,
    client_id: r.clientId,
    subject: r.subject,
    ip: r.ip,
    grant_id: r.grantId,
    details: r.details,
    prev_hash: r.prevHash,
    hash: r.hash,
    mac: r.mac ?? null,
  }
}

function toAuditEvent(row: Selectable<AuditEventsTable>): AuditEventRecord {
  return {
    seq: Number(row.seq),
    time: Number(row.time),
    type: row.type,
    actor: row.actor,
    clientId: row.client_id,
    subject: row.subject,
    ip: row.ip,
    grantId: row.grant_id,
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
    mac: row.mac,
  }
}
