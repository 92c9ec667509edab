/**
 * Governance records on Kysely: `anomalies` and `principal_overrides` (see
 * ../governance-records.ts).
 */
import type { Kysely } from 'kysely'
import type { AnomalyRecord, GovernanceRecordStore, PrincipalKind, PrincipalOverrideRecord } from '../governance-records.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

export class KyselyGovernanceRecordStore implements GovernanceRecordStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
  }

  insertAnomaly(anomaly: AnomalyRecord): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .insertInto('anomalies')
        .values({
          id: anomaly.id,
          kind: anomaly.kind,
          time: anomaly.time,
          dedupe_key: anomaly.dedupeKey,
          client_id: anomaly.clientId,
          subject: anomaly.subject,
          grant_id: anomaly.grantId,
          ip: anomaly.ip,
          action: anomaly.action,
          details: anomaly.details,
        })
        .onConflict((oc) => oc.column('dedupe_key').doNothing())
        .executeTakeFirst()
      return (result.numInsertedOrUpdatedRows ?? 0n) > 0n
    })
  }

  listAnomalies(query: { sinceTime: number; kind?: string; limit: number }): Promise<AnomalyRecord[]> {
    return this.#ctx.guard(async () => {
      let q = this.#db.selectFrom('anomalies').selectAll().where('time', '>=', query.sinceTime)
      if (query.kind !== undefined) q = q.where('kind', '=', query.kind)
      const rows = await q.orderBy('time').orderBy('id').limit(query.limit).execute()
      return rows.map((r) => ({
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
      }))
    })
  }

  setPrincipalOverride(override: PrincipalOverrideRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('principal_overrides')
        .values({
          kind: override.kind,
          id: override.id,
          state: override.state,
          changed_at: override.changedAt,
          changed_by: override.changedBy,
        })
        .onConflict((oc) =>
          oc.columns(['kind', 'id']).doUpdateSet({
            state: override.state,
            changed_at: override.changedAt,
            changed_by: override.changedBy,
          }),
        )
        .execute()
    })
  }

  clearPrincipalOverride(kind: PrincipalKind, id: string): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .deleteFrom('principal_overrides')
        .where('kind', '=', kind)
        .where('id', '=', id)
        .executeTakeFirst()
      return result.numDeletedRows > 0n
    })
  }

  listPrincipalOverrides(): Promise<PrincipalOverrideRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db.selectFrom('principal_overrides').selectAll().orderBy('kind').orderBy('id').execute()
      return rows.map((r) => ({
        kind: r.kind as PrincipalKind,
        id: r.id,
        state: r.state as PrincipalOverrideRecord['state'],
        changedAt: Number(r.changed_at),
        changedBy: r.changed_by,
      }))
    })
  }
}
