/**
 * Signing keys and server secrets on Kysely: `signing_keys` and `server_secrets` (see
 * ../keys-and-secrets.ts).
 */
import type { Kysely } from 'kysely'
import type { KeyStore, SigningKeyRecord } from '../keys-and-secrets.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase } from './tables.js'

export class KyselyKeyStore implements KeyStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
  }

  /** All keys, newest first. */
  listSigningKeys(): Promise<SigningKeyRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .selectFrom('signing_keys')
        .selectAll()
        .orderBy('created_at', 'desc')
        .orderBy('kid')
        .execute()
      return rows.map((row) => ({
        kid: row.kid,
        alg: row.alg,
        publicJwk: row.public_jwk,
        privateJwk: row.private_jwk,
        createdAt: row.created_at,
        retiredAt: row.retired_at,
        publishUntil: row.publish_until,
      }))
    })
  }

  insertSigningKey(key: SigningKeyRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('signing_keys')
        .values({
          kid: key.kid,
          alg: key.alg,
          public_jwk: key.publicJwk,
          private_jwk: key.privateJwk,
          created_at: key.createdAt,
          retired_at: key.retiredAt,
          publish_until: key.publishUntil,
        })
        .execute()
    })
  }

  retireSigningKey(kid: string, now: number, publishUntil: number): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .updateTable('signing_keys')
        .set({ retired_at: now, publish_until: publishUntil })
        .where('kid', '=', kid)
        .execute()
    })
  }

  replaceSigningKeyPrivateJwk(kid: string, expected: string, next: string): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .updateTable('signing_keys')
        .set({ private_jwk: next })
        .where('kid', '=', kid)
        .where('private_jwk', '=', expected)
        .executeTakeFirst()
      return Number(result.numUpdatedRows) === 1
    })
  }

  ensureServerSecret(name: string, candidate: string, now: number): Promise<string> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('server_secrets')
        .values({ name, value: candidate, created_at: now })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute()
      const row = await this.#db
        .selectFrom('server_secrets')
        .select('value')
        .where('name', '=', name)
        .executeTakeFirstOrThrow()
      return row.value
    })
  }
}
