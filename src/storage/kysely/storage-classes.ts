/**
 * Declared token storage on Kysely: `grant_storage_classes` (see ../storage-classes.ts).
 */
import type { Kysely } from 'kysely'
import { isStorageClass, STORAGE_CLASSES, type StorageClass } from '../../core/storage-class.js'
import type { StorageClassRecord, StorageClassStore } from '../storage-classes.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase, GrantStorageClassesTable } from './tables.js'

function toRecord(r: GrantStorageClassesTable): StorageClassRecord {
  return {
    deviceGrantId: r.device_grant_id,
    clientId: r.client_id,
    storageClass: isStorageClass(r.storage_class) ? r.storage_class : 'unknown',
    declaredAt: Number(r.declared_at),
    redeclaredAt: r.redeclared_at === null ? null : Number(r.redeclared_at),
  }
}

export class KyselyStorageClassStore implements StorageClassStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
  }

  declareStorageClass(record: Omit<StorageClassRecord, 'redeclaredAt'>): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('grant_storage_classes')
        .values({
          device_grant_id: record.deviceGrantId,
          client_id: record.clientId,
          storage_class: record.storageClass,
          declared_at: record.declaredAt,
          redeclared_at: null,
        })
        .onConflict((oc) => oc.column('device_grant_id').doNothing())
        .execute()
    })
  }

  redeclareStorageClass(deviceGrantId: string, storageClass: StorageClass, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const r = await this.#db
        .updateTable('grant_storage_classes')
        .set({ storage_class: storageClass, redeclared_at: now })
        .where('device_grant_id', '=', deviceGrantId)
        .where('storage_class', '<>', storageClass)
        .executeTakeFirst()
      return Number(r.numUpdatedRows) > 0
    })
  }

  findStorageClass(deviceGrantId: string): Promise<StorageClassRecord | undefined> {
    return this.#ctx.guard(async () => {
      const row = await this.#db.selectFrom('grant_storage_classes').selectAll().where('device_grant_id', '=', deviceGrantId).executeTakeFirst()
      return row && toRecord(row)
    })
  }

  findStorageClasses(deviceGrantIds: readonly string[]): Promise<Map<string, StorageClassRecord>> {
    return this.#ctx.guard(async () => {
      const out = new Map<string, StorageClassRecord>()
      for (let i = 0; i < deviceGrantIds.length; i += 500) {
        const rows = await this.#db.selectFrom('grant_storage_classes').selectAll().where('device_grant_id', 'in', deviceGrantIds.slice(i, i + 500)).execute()
        for (const r of rows) out.set(r.device_grant_id, toRecord(r))
      }
      return out
    })
  }

  countStorageClasses(query: { since: number; clientId?: string }): Promise<Record<StorageClass, number>> {
    return this.#ctx.guard(async () => {
      let q = this.#db
        .selectFrom('grant_storage_classes')
        .select(['storage_class', (eb) => eb.fn.countAll<number | string>().as('n')])
        .where('declared_at', '>=', query.since)
        .groupBy('storage_class')
      if (query.clientId !== undefined) q = q.where('client_id', '=', query.clientId)
      const counts = Object.fromEntries(STORAGE_CLASSES.map((c) => [c, 0])) as Record<StorageClass, number>
      for (const r of await q.execute()) counts[isStorageClass(r.storage_class) ? r.storage_class : 'unknown'] += Number(r.n)
      return counts
    })
  }

  listStorageClassClients(since: number): Promise<string[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db.selectFrom('grant_storage_classes').select('client_id').distinct().where('declared_at', '>=', since).execute()
      return rows.map((r) => r.client_id).sort()
    })
  }
}
