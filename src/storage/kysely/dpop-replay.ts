/**
 * DPoP replay detection (RFC 9449 §11.1) on Kysely: the `dpop_jtis` table (see ../dpop-replay.ts),
 * UNLOGGED on PostgreSQL (migration 008), or the store's Redis when one is configured.
 */
import type { Kysely } from 'kysely'
import type { DpopReplayStore } from '../dpop-replay.js'
import type { EphemeralStore } from '../ephemeral.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

/** `INSERT … ON CONFLICT DO NOTHING`: the one caller whose row went in sees true. */
export async function insertDpopJti(db: Kysely<DevicegateDatabase>, key: string, expiresAt: number): Promise<boolean> {
  const result = await db
    .insertInto('dpop_jtis')
    .values({ jti: key, expires_at: expiresAt })
    .onConflict((oc) => oc.column('jti').doNothing())
    .executeTakeFirst()
  return (result.numInsertedOrUpdatedRows ?? 0n) > 0n
}

export class KyselyDpopReplayStore implements DpopReplayStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>
  readonly #ephemeral: EphemeralStore | undefined

  /** @param ephemeral The PostgreSQL store's ephemeral store (see ../ephemeral.ts); undefined on SQLite. */
  constructor(ctx: KyselyContext, ephemeral: EphemeralStore | undefined) {
    this.#ctx = ctx
    this.#db = ctx.db
    this.#ephemeral = ephemeral
    ctx.onPurge(async (now) => {
      await this.#db.deleteFrom('dpop_jtis').where('expires_at', '<=', now).execute()
    })
  }

  rememberDpopJti(key: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#ctx.guard(() =>
      this.#ephemeral ? this.#ephemeral.rememberJti(key, expiresAt, now) : insertDpopJti(this.#db, key, expiresAt),
    )
  }
}
