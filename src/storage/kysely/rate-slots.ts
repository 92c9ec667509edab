/** Sliding-window rate limits on Kysely: the `rate_slots` table (see ../rate-slots.ts). */
import { sql, type Kysely } from 'kysely'
import type { RateSlotStore, SlotTake, SlotUsage } from '../rate-slots.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

/** Tries per take before giving up on a key that other requests keep winning (each loss means they took a slot). */
const MAX_TAKE_ATTEMPTS = 8

/** Slot rows taken this long ago are free at every window the configuration allows (≤ 1 day) and are purged. */
const RATE_SLOT_RETENTION_SECONDS = 86_400

function checkLimits(limit: number, windowSeconds: number): void {
  if (!Number.isInteger(limit) || limit <= 0) throw new TypeError(`limit must be a positive integer, got ${limit}`)
  if (!Number.isInteger(windowSeconds) || windowSeconds <= 0) throw new TypeError(`windowSeconds must be a positive integer, got ${windowSeconds}`)
}

export class KyselyRateSlotStore implements RateSlotStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
    ctx.onPurge(async (now) => {
      // A missing row is a free slot, so deleting free ones is always safe.
      await this.#db.deleteFrom('rate_slots').where('taken_at', '<=', now - RATE_SLOT_RETENTION_SECONDS).execute()
    })
  }

  /** Slots of `key` below `limit`: how many rows exist, how many are taken in the window, when the oldest of those frees. */
  async #usage(key: string, limit: number, windowSeconds: number, now: number): Promise<SlotUsage & { rows: number }> {
    const cutoff = now - windowSeconds
    const row = await this.#db
      .selectFrom('rate_slots')
      .where('key', '=', key)
      .where('slot', '<', limit)
      .select((eb) => [
        eb.fn.countAll().as('rows'),
        sql<number | string | null>`sum(case when taken_at > ${cutoff} then 1 else 0 end)`.as('used'),
        sql<number | string | null>`min(case when taken_at > ${cutoff} then taken_at end)`.as('oldest'),
      ])
      .executeTakeFirstOrThrow()
    const used = Number(row.used ?? 0)
    return {
      rows: Number(row.rows),
      used,
      retryAfterSeconds: used < limit ? undefined : Math.max(1, Number(row.oldest) + windowSeconds - now),
    }
  }

  /** Creates the missing slot rows of `key` (free: taken_at 0). */
  async #createSlots(key: string, limit: number): Promise<void> {
    await this.#db
      .insertInto('rate_slots')
      .values(Array.from({ length: limit }, (_, slot) => ({ key, slot, taken_at: 0 })))
      .onConflict((oc) => oc.columns(['key', 'slot']).doNothing())
      .execute()
  }

  /** Compare-and-swap on the oldest free slot: `UPDATE … SET taken_at = now WHERE key, slot AND taken_at = <read>`. */
  takeRateSlot(key: string, limit: number, windowSeconds: number, now: number): Promise<SlotTake> {
    return this.#ctx.guard(async () => {
      checkLimits(limit, windowSeconds)
      for (let attempt = 0; attempt < MAX_TAKE_ATTEMPTS; attempt++) {
        let state = await this.#usage(key, limit, windowSeconds, now)
        if (state.retryAfterSeconds !== undefined) return { taken: false, retryAfterSeconds: state.retryAfterSeconds }
        if (state.rows < limit) {
          await this.#createSlots(key, limit)
          state = await this.#usage(key, limit, windowSeconds, now)
          if (state.retryAfterSeconds !== undefined) return { taken: false, retryAfterSeconds: state.retryAfterSeconds }
        }
        const free = await this.#db
          .selectFrom('rate_slots')
          .select(['slot', 'taken_at'])
          .where('key', '=', key)
          .where('slot', '<', limit)
          .where('taken_at', '<=', now - windowSeconds)
          .orderBy('taken_at', 'asc')
          .limit(1)
          .executeTakeFirst()
        if (free === undefined) continue // taken (or purged) since the count: read again
        const result = await this.#db
          .updateTable('rate_slots')
          .set({ taken_at: now })
          .where('key', '=', key)
          .where('slot', '=', free.slot)
          .where('taken_at', '=', free.taken_at)
          .executeTakeFirst()
        if (Number(result.numUpdatedRows) === 1) return { taken: true, slot: Number(free.slot), used: state.used + 1 }
        // Another request took this slot between the read and the update: read again.
      }
      // Others kept winning: each win took a slot, so treat the key as busy for a moment.
      return { taken: false, retryAfterSeconds: 1 }
    })
  }

  releaseRateSlot(key: string, slot: number, takenAt: number): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .updateTable('rate_slots')
        .set({ taken_at: 0 })
        .where('key', '=', key)
        .where('slot', '=', slot)
        .where('taken_at', '=', takenAt)
        .execute()
    })
  }

  readRateSlots(key: string, limit: number, windowSeconds: number, now: number): Promise<SlotUsage> {
    return this.#ctx.guard(async () => {
      checkLimits(limit, windowSeconds)
      const { used, retryAfterSeconds } = await this.#usage(key, limit, windowSeconds, now)
      return { used, retryAfterSeconds }
    })
  }
}
