/**
 * The Kysely implementation of {@link AuthContextStore} (table `oidc_auth_context`).
 */
import type { Selectable } from 'kysely'
import type { AuthContextRecord, AuthContextStore, AuthenticationContext } from '../oidc-context.js'
import type { KyselyContext } from './context.js'
import { PreparedQuery } from './prepared.js'
import type { DevicegateDatabase } from './tables.js'

export class KyselyAuthContextStore implements AuthContextStore {
  readonly #ctx: KyselyContext
  /** Read on every refresh that issues a JWT or an ID Token: compiled once (see {@link PreparedQuery}). */
  readonly #byDeviceGrantId: PreparedQuery<Selectable<DevicegateDatabase['oidc_auth_context']>>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    const db = ctx.db
    this.#byDeviceGrantId = new PreparedQuery(1, (id) =>
      db
        .selectFrom('oidc_auth_context')
        // Explicit columns, not `*`: runs as a named statement on PostgreSQL (prepared.ts).
        .select(['device_grant_id', 'nonce', 'auth_time', 'amr', 'acr'])
        .where('device_grant_id', '=', id),
    )
  }

  saveOidcNonce(deviceGrantId: string, nonce: string): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#ctx.db
        .insertInto('oidc_auth_context')
        .values({ device_grant_id: deviceGrantId, nonce, auth_time: null, amr: null, acr: null })
        .onConflict((oc) => oc.column('device_grant_id').doNothing())
        .execute()
    })
  }

  saveAuthenticationContext(deviceGrantId: string, context: AuthenticationContext): Promise<void> {
    const values = { auth_time: context.authTime, amr: context.amr.join(' '), acr: context.acr }
    return this.#ctx.guard(async () => {
      await this.#ctx.db
        .insertInto('oidc_auth_context')
        .values({ device_grant_id: deviceGrantId, nonce: null, ...values })
        .onConflict((oc) => oc.column('device_grant_id').doUpdateSet(values))
        .execute()
    })
  }

  findAuthContext(deviceGrantId: string): Promise<AuthContextRecord | undefined> {
    return this.#ctx.guard(async () => {
      const [row] = await this.#byDeviceGrantId.execute(this.#ctx.db, deviceGrantId)
      if (row === undefined) return undefined
      return {
        deviceGrantId: row.device_grant_id,
        nonce: row.nonce,
        authentication:
          row.auth_time === null || row.acr === null
            ? null
            : { authTime: Number(row.auth_time), amr: (row.amr ?? '').split(' ').filter(Boolean), acr: row.acr },
      }
    })
  }
}
