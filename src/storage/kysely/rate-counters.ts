/** Shared rate-limit counters on Kysely: the `rate_counters` table (see ../rate-counters.ts). */
import type { Kysely } from 'kysely'
import { windowStartOf, type RateCounterStore } from '../rate-counters.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

export class KyselyRateCounterStore implements RateCounterStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
    ctx.onPurge(async (now) => {
      await this.#db.deleteFrom('rate_counters').where('expires_at', '<=', now).execute()
    })
  }

  /** One upsert: `INSERT … ON CONFLICT DO UPDATE SET hits = hits + 1 RETURNING hits`. */
  incrementCounter(key: string, windowSeconds: number, now: number): Promise<number> {
    return this.#ctx.guard(async () => {
      const windowStart = windowStartOf(windowSeconds, now)
      const row = await this.#db
        .insertInto('rate_counters')
        .values({
          key,
          window_seconds: windowSeconds,
          window_start: windowStart,
          hits: 1,
          expires_at: windowStart + windowSeconds,
        })
        .onConflict((oc) =>
          oc
            .columns(['key', 'window_seconds', 'window_start'])
            .doUpdateSet((eb) => ({ hits: eb('rate_counters.hits', '+', 1) })),
        )
        .returning('hits')
        .executeTakeFirstOrThrow()
      return row.hits
    })
  }

  readCounter(key: string, windowSeconds: number, now: number): Promise<number> {
    return this.#ctx.guard(async () => {
      const row = await this.#db
        .selectFrom('rate_counters')
        .select('hits')
        .where('key', '=', key)
        .where('window_seconds', '=', windowSeconds)
        .where('window_start', '=', windowStartOf(windowSeconds, now))
        .executeTakeFirst()
      return row?.hits ?? 0
    })
  }
}
