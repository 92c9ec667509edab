/** Verification-page sessions on Kysely: the `web_sessions` table (see ../web-sessions.ts). */
import type { Kysely, Selectable } from 'kysely'
import type { WebSessionRecord, WebSessionStore } from '../web-sessions.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase, WebSessionsTable } from './tables.js'

function toRecord(row: Selectable<WebSessionsTable>): WebSessionRecord {
  return {
    idHash: row.id_hash,
    csrfToken: row.csrf_token,
    subject: row.subject,
    authTime: row.auth_time,
    ...(row.mfa_at !== null ? { mfaAt: row.mfa_at } : {}),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  }
}

export class KyselyWebSessionStore implements WebSessionStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
    ctx.onPurge(async (now) => {
      await this.#db.deleteFrom('web_sessions').where('expires_at', '<=', now).execute()
    })
  }

  createWebSession(session: WebSessionRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('web_sessions')
        .values({
          id_hash: session.idHash,
          csrf_token: session.csrfToken,
          subject: session.subject,
          auth_time: session.authTime,
          mfa_at: session.mfaAt ?? null,
          created_at: session.createdAt,
          expires_at: session.expiresAt,
        })
        .execute()
    })
  }

  findWebSession(idHash: string, now: number): Promise<WebSessionRecord | undefined> {
    return this.#ctx.guard(async () => {
      const row = await this.#db
        .selectFrom('web_sessions')
        .selectAll()
        .where('id_hash', '=', idHash)
        .where('expires_at', '>', now)
        .executeTakeFirst()
      return row && toRecord(row)
    })
  }

  extendWebSession(idHash: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .updateTable('web_sessions')
        .set({ expires_at: expiresAt })
        .where('id_hash', '=', idHash)
        .where('expires_at', '>', now)
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  takeExpiredWebSession(idHash: string, now: number): Promise<WebSessionRecord | undefined> {
    return this.#ctx.guard(async () => {
      // DELETE … RETURNING: SQLite ≥ 3.35 and PostgreSQL; one statement, so one taker.
      const row = await this.#db
        .deleteFrom('web_sessions')
        .where('id_hash', '=', idHash)
        .where('expires_at', '<=', now)
        .returningAll()
        .executeTakeFirst()
      return row && toRecord(row)
    })
  }

  deleteWebSession(idHash: string): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db.deleteFrom('web_sessions').where('id_hash', '=', idHash).execute()
    })
  }

  markWebSessionMfa(idHash: string, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .updateTable('web_sessions')
        .set({ mfa_at: now })
        .where('id_hash', '=', idHash)
        .where('expires_at', '>', now)
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }
}
