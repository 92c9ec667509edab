/** DPoP replay detection (RFC 9449 §11.1) on Kysely: the `dpop_jtis` table (see ../dpop-replay.ts). */
import type { Kysely } from 'kysely'
import type { DpopReplayStore } from '../dpop-replay.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

export class KyselyDpopReplayStore implements DpopReplayStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
    ctx.onPurge(async (now) => {
      await this.#db.deleteFrom('dpop_jtis').where('expires_at', '<=', now).execute()
    })
  }

  /** `INSERT … ON CONFLICT DO NOTHING`: the one caller whose row went in sees true. */
  rememberDpopJti(key: string, expiresAt: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .insertInto('dpop_jtis')
        .values({ jti: key, expires_at: expiresAt })
        .onConflict((oc) => oc.column('jti').doNothing())
        .executeTakeFirst()
      return (result.numInsertedOrUpdatedRows ?? 0n) > 0n
    })
  }
}
