/**
 * The trusted device registry on Kysely: the `devices` table, and the token families and access
 * tokens bound to a device's DPoP key (see ../trusted-devices.ts).
 */
import type { Kysely, Selectable } from 'kysely'
import type { GrantRecord } from '../token-families.js'
import type { DeviceRecord, TrustedDeviceStore } from '../trusted-devices.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase, DevicesTable } from './tables.js'
import { toGrant } from './token-families.js'

export class KyselyTrustedDeviceStore implements TrustedDeviceStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
  }

  registerDevice(device: DeviceRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('devices')
        .values({
          jkt: device.jkt,
          label: device.label,
          registered_at: device.registeredAt,
          registered_by: device.registeredBy,
          retired_at: device.retiredAt,
        })
        .execute()
    })
  }

  findDevice(jkt: string): Promise<DeviceRecord | undefined> {
    return this.#ctx.guard(async () => {
      const row = await this.#db.selectFrom('devices').selectAll().where('jkt', '=', jkt).executeTakeFirst()
      return row && toDevice(row)
    })
  }

  listDevices(): Promise<DeviceRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .selectFrom('devices')
        .selectAll()
        .orderBy('registered_at', 'desc')
        .orderBy('jkt')
        .execute()
      return rows.map(toDevice)
    })
  }

  labelDevice(jkt: string, label: string): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db.updateTable('devices').set({ label }).where('jkt', '=', jkt).executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  retireDevice(jkt: string, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .updateTable('devices')
        .set({ retired_at: now })
        .where('jkt', '=', jkt)
        .where('retired_at', 'is', null)
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  listGrantsByDpopJkt(jkt: string): Promise<GrantRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .selectFrom('grants')
        .selectAll()
        .where('dpop_jkt', '=', jkt)
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .execute()
      return rows.map(toGrant)
    })
  }

  revokeGrantsByDpopJkt(jkt: string, now: number): Promise<number> {
    return this.#ctx.guard(() =>
      this.#db.transaction().execute(async (trx) => {
        const result = await trx
          .updateTable('grants')
          .set({ revoked_at: now })
          .where('dpop_jkt', '=', jkt)
          .where('revoked_at', 'is', null)
          .executeTakeFirst()
        await trx
          .updateTable('access_tokens')
          .set({ revoked_at: now })
          .where('dpop_jkt', '=', jkt)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', now)
          .execute()
        await trx
          .updateTable('refresh_tokens')
          .set({ revoked_at: now })
          .where('dpop_jkt', '=', jkt)
          .where('revoked_at', 'is', null)
          .execute()
        return Number(result.numUpdatedRows)
      }),
    )
  }
}

function toDevice(row: Selectable<DevicesTable>): DeviceRecord {
  return {
    jkt: row.jkt,
    label: row.label,
    registeredAt: row.registered_at,
    registeredBy: row.registered_by,
    retiredAt: row.retired_at,
  }
}
