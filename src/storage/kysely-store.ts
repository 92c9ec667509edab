/**
 * The one {@link Store} implementation, on top of Kysely, shared by the SQLite and PostgreSQL
 * adapters so that every query is written once.
 *
 * Atomic operations are single conditional writes (`UPDATE … WHERE <state> RETURNING`,
 * `INSERT … ON CONFLICT`) or one transaction that starts with such a write, so they stay correct
 * when several processes or instances race on the same row: there is no read-then-write.
 * Adapters supply the dialect, an error classifier (unique violation → {@link StoreConflictError},
 * lost database → {@link StoreUnavailableError}) and how to migrate.
 */
import { sql, type Compilable, type CompiledQuery, type Expression, type ExpressionBuilder, type Insertable, type Kysely, type Selectable, type SqlBool } from 'kysely'
import { InMemoryPollTimes } from './poll-times.js'
import {
  StoreConflictError,
  StoreUnavailableError,
  type AccessTokenRecord,
  type AnomalyRecord,
  type AuditCheckpointRecord,
  type AuditEventBody,
  type AuditEventRecord,
  type DeviceGrantFilter,
  type GrantFilter,
  type GrantLineage,
  type GrantSummary,
  type NewAuditEvent,
  type PrincipalKind,
  type PrincipalOverrideRecord,
  type DeviceGrantRecord,
  type DeviceRecord,
  type DeviceGrantStatus,
  type GrantRecord,
  type RefreshTokenRecord,
  type RevocationsSince,
  type RotationResult,
  type SigningKeyRecord,
  type Store,
  type TokenBundle,
  type WebSessionRecord,
  type DeviceGrantPolicyRecord,
  type WithGrantState,
} from './store.js'

// --- table types (see migrations.ts; all times are epoch seconds) ---

export interface DeviceGrantsTable {
  id: string
  device_code_hash: string
  user_code: string
  client_id: string
  scope: string
  status: string
  created_at: number
  expires_at: number
  interval_seconds: number
  last_polled_at: number | null
  subject: string | null
  decided_at: number | null
  request_ip: string
  request_user_agent: string | null
  dpop_jkt: string | null
  grant_id: string | null
  /** Added by migration 002: RFC 8707 resources, space-delimited. */
  resources: string | null
}

export interface GrantsTable {
  id: string
  client_id: string
  subject: string | null
  scope: string
  created_at: number
  revoked_at: number | null
  device_grant_id: string | null
  expires_at: number | null
  dpop_jkt: string | null
  /** Added by migration 002. */
  resources: string | null
  /** Added by migration 003: last use reported by refresh or introspection. */
  last_used_at: number | null
  last_used_ip: string | null
}

export interface AccessTokensTable {
  token_hash: string
  jti: string
  grant_id: string
  client_id: string
  subject: string | null
  scope: string
  issued_at: number
  expires_at: number
  revoked_at: number | null
  format: string
  dpop_jkt: string | null
  /** Added by migration 002. */
  resources: string | null
}

export interface RefreshTokensTable {
  token_hash: string
  id: string
  grant_id: string
  client_id: string
  subject: string | null
  scope: string
  issued_at: number
  expires_at: number | null
  rotated_at: number | null
  revoked_at: number | null
  dpop_jkt: string | null
}

export interface WebSessionsTable {
  id_hash: string
  csrf_token: string
  subject: string | null
  auth_time: number | null
  /** Added by migration 004. */
  mfa_at: number | null
  created_at: number
  expires_at: number
}

/** Conditional approval per device authorization (migration 004). */
export interface DeviceGrantPolicyTable {
  device_grant_id: string
  posture_json: string | null
  decision: string | null
  explanation_json: string | null
  decided_at: number | null
}

/** TOTP enrolments of built-in users (migration 004). */
export interface TotpSecretsTable {
  username: string
  secret: string
  created_at: number
}

export interface RateCountersTable {
  key: string
  window_seconds: number
  window_start: number
  hits: number
  expires_at: number
}

export interface SigningKeysTable {
  kid: string
  alg: string
  public_jwk: string
  private_jwk: string
  created_at: number
  retired_at: number | null
  publish_until: number | null
}

export interface DpopJtisTable {
  jti: string
  expires_at: number
}

export interface ServerSecretsTable {
  name: string
  value: string
  created_at: number
}

export interface DevicesTable {
  jkt: string
  label: string
  registered_at: number
  registered_by: string | null
  retired_at: number | null
}

/** Migration 003: the hash-chained audit log. */
export interface AuditEventsTable {
  seq: number
  time: number
  type: string
  actor: string | null
  client_id: string | null
  subject: string | null
  ip: string | null
  grant_id: string | null
  details: string
  prev_hash: string
  hash: string
}

export interface AuditHeadTable {
  id: number
  seq: number
  hash: string
}

export interface AuditCheckpointsTable {
  seq: number
  hash: string
  time: number
  signature: string
}

export interface AnomaliesTable {
  id: string
  kind: string
  time: number
  dedupe_key: string | null
  client_id: string | null
  subject: string | null
  grant_id: string | null
  ip: string | null
  action: string
  details: string
}

export interface PrincipalOverridesTable {
  kind: string
  id: string
  state: string
  changed_at: number
  changed_by: string | null
}

export interface DevicegateDatabase {
  audit_events: AuditEventsTable
  audit_head: AuditHeadTable
  audit_checkpoints: AuditCheckpointsTable
  anomalies: AnomaliesTable
  principal_overrides: PrincipalOverridesTable
  device_grants: DeviceGrantsTable
  grants: GrantsTable
  access_tokens: AccessTokensTable
  refresh_tokens: RefreshTokensTable
  web_sessions: WebSessionsTable
  rate_counters: RateCountersTable
  signing_keys: SigningKeysTable
  dpop_jtis: DpopJtisTable
  device_grant_policy: DeviceGrantPolicyTable
  totp_secrets: TotpSecretsTable
  server_secrets: ServerSecretsTable
  devices: DevicesTable
}

/** How an adapter sorts a driver error. */
export type StoreErrorKind = 'conflict' | 'unavailable' | undefined

export interface KyselyStoreOptions {
  kind: string
  db: Kysely<DevicegateDatabase>
  /** Sorts driver errors; anything unclassified is rethrown unchanged. */
  classifyError(error: unknown): StoreErrorKind
  /** Applies pending migrations (dialect-specific bookkeeping). */
  migrate(db: Kysely<DevicegateDatabase>): Promise<void>
  /**
   * Where RFC 8628 §3.5 poll times are decided: `database` (each poll is one conditional UPDATE;
   * holds across instances) or `memory` (one process owns the database: decided in memory and
   * written back in batches, see {@link InMemoryPollTimes}). Default `database`.
   */
  pollTimes?: 'database' | 'memory'
  /**
   * When the adapter commits writes in groups: resolves once the writes issued so far are
   * committed (undefined when none are pending). Every store call waits for it before it returns.
   */
  settled?: () => Promise<void> | undefined
  /** Runs before the connection closes (e.g. stops a checkpointer). */
  beforeClose?: () => Promise<void>
  /** Receives failures of background writes (poll write-back); default: ignored. */
  onBackgroundError?: (error: unknown) => void
}

/**
 * A query compiled once and executed many times with new parameter values.
 *
 * Kysely rebuilds and recompiles the operation tree on every call; on the hot paths (a poll, an
 * introspection) that is about a tenth of the request. The query is built once with sentinel
 * values, and each compiled parameter that is a sentinel is replaced by the matching argument at
 * execution, so parameter order and repetition in the SQL do not matter.
 */
class PreparedQuery<Row> {
  readonly #compiled: CompiledQuery<Row>
  readonly #slots: readonly number[]

  constructor(arity: number, build: (...sentinels: string[]) => Compilable<Row>) {
    const sentinels = Array.from({ length: arity }, (_, i) => `\u0000devicegate-param-${i}\u0000`)
    this.#compiled = build(...sentinels).compile()
    this.#slots = this.#compiled.parameters.map((p) => sentinels.indexOf(p as string))
    if (this.#slots.filter((i) => i >= 0).length < arity) throw new TypeError('PreparedQuery: a parameter was not bound')
  }

  /** Runs the query with `args` in place of the sentinels. */
  async execute(db: Kysely<DevicegateDatabase>, ...args: readonly (string | number | null)[]): Promise<Row[]> {
    const fixed = this.#compiled.parameters
    const parameters = this.#slots.map((slot, i) => (slot >= 0 ? args[slot] : fixed[i]))
    const result = await db.executeQuery<Row>({ ...this.#compiled, parameters })
    return result.rows
  }
}

/**
 * An INSERT of one whole row, compiled (see {@link PreparedQuery}) on first use for the columns
 * of that first row. Rows must come from one mapper function, so every row has the same columns;
 * a row with other columns is refused rather than written in part.
 */
class PreparedInsert<Row extends object> {
  readonly #build: (row: Row) => Compilable<unknown>
  #columns: readonly (keyof Row & string)[] | undefined
  #query: PreparedQuery<unknown> | undefined

  constructor(build: (row: Row) => Compilable<unknown>) {
    this.#build = build
  }

  /** @throws {TypeError} when `row` has other columns than the first row inserted. */
  async execute(db: Kysely<DevicegateDatabase>, row: Row): Promise<void> {
    const columns = (this.#columns ??= Object.keys(row) as (keyof Row & string)[])
    this.#query ??= new PreparedQuery(columns.length, (...sentinels) =>
      this.#build(Object.fromEntries(columns.map((c, i) => [c, sentinels[i]])) as Row),
    )
    if (Object.keys(row).length !== columns.length) throw new TypeError('PreparedInsert: the row has other columns')
    await this.#query.execute(db, ...columns.map((c) => (row[c] ?? null) as string | number | null))
  }
}

/** Unredeemed device grants are kept this long past expiry (support, audit), then purged. */
const DEVICE_GRANT_RETENTION_SECONDS = 86_400

export class KyselyStore implements Store {
  readonly kind: string
  readonly #db: Kysely<DevicegateDatabase>
  readonly #classify: (error: unknown) => StoreErrorKind
  readonly #migrate: (db: Kysely<DevicegateDatabase>) => Promise<void>
  readonly #beforeClose: (() => Promise<void>) | undefined
  readonly #settled: (() => Promise<void> | undefined) | undefined
  /** Set when poll times are kept in memory (`pollTimes: 'memory'`). */
  readonly #pollTimes: InMemoryPollTimes | undefined

  constructor(options: KyselyStoreOptions) {
    this.kind = options.kind
    this.#db = options.db
    this.#classify = options.classifyError
    this.#migrate = options.migrate
    this.#beforeClose = options.beforeClose
    this.#settled = options.settled
    const db = this.#db
    this.#hot = {
      deviceGrantByCodeHash: new PreparedQuery(1, (hash) =>
        db.selectFrom('device_grants').selectAll().where('device_code_hash', '=', hash),
      ),
      accessTokenByHash: new PreparedQuery(1, (hash) =>
        db
          .selectFrom('access_tokens')
          .innerJoin('grants', 'grants.id', 'access_tokens.grant_id')
          .selectAll('access_tokens')
          .select('grants.revoked_at as grant_revoked_at')
          .where('access_tokens.token_hash', '=', hash),
      ),
      refreshTokenByHash: new PreparedQuery(1, (hash) =>
        db
          .selectFrom('refresh_tokens')
          .innerJoin('grants', 'grants.id', 'refresh_tokens.grant_id')
          .selectAll('refresh_tokens')
          .select('grants.revoked_at as grant_revoked_at')
          .where('refresh_tokens.token_hash', '=', hash),
      ),
      pollOnTime: new PreparedQuery(2, (now, id) =>
        db
          .updateTable('device_grants')
          .set({ last_polled_at: sql<number>`${now}` })
          .where('id', '=', id)
          .where((eb) =>
            eb.or([
              eb('last_polled_at', 'is', null),
              // last_polled_at + interval <= now: keeps `now` a bigint parameter on PostgreSQL.
              eb(eb('last_polled_at', '+', eb.ref('interval_seconds')), '<=', sql<number>`${now}`),
            ]),
          )
          .returning('interval_seconds'),
      ),
      auditEventInsert: new PreparedQuery(11, (seq, time, type, actor, clientId, subject, ip, grantId, details, prevHash, hash) =>
        db.insertInto('audit_events').values({
          seq: sql<number>`${seq}`,
          time: sql<number>`${time}`,
          type: type!,
          actor: actor!,
          client_id: clientId!,
          subject: subject!,
          ip: ip!,
          grant_id: grantId!,
          details: details!,
          prev_hash: prevHash!,
          hash: hash!,
        }),
      ),
      deviceGrantInsert: new PreparedInsert((row: Insertable<DeviceGrantsTable>) => db.insertInto('device_grants').values(row)),
      grantInsert: new PreparedInsert((row: Insertable<DevicegateDatabase['grants']>) => db.insertInto('grants').values(row)),
      accessTokenInsert: new PreparedInsert((row: Insertable<DevicegateDatabase['access_tokens']>) => db.insertInto('access_tokens').values(row)),
      refreshTokenInsert: new PreparedInsert((row: Insertable<DevicegateDatabase['refresh_tokens']>) => db.insertInto('refresh_tokens').values(row)),
      grantById: new PreparedQuery(1, (id) => db.selectFrom('grants').selectAll().where('id', '=', id)),
      deviceGrantPolicyById: new PreparedQuery(1, (id) => db.selectFrom('device_grant_policy').selectAll().where('device_grant_id', '=', id)),
      // RFC 9700 §4.14.2: marks the token rotated only while it and its family are live.
      rotateRefreshToken: new PreparedQuery(2, (now, tokenHash) =>
        db
          .updateTable('refresh_tokens')
          .set({ rotated_at: sql<number>`${now}` })
          .where('token_hash', '=', tokenHash)
          .where('rotated_at', 'is', null)
          .where('revoked_at', 'is', null)
          .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<number>`${now}`)]))
          .where((eb) =>
            eb.exists(
              eb
                .selectFrom('grants')
                .select('grants.id')
                .whereRef('grants.id', '=', 'refresh_tokens.grant_id')
                .where('grants.revoked_at', 'is', null)
                .where((g) => g.or([g('grants.expires_at', 'is', null), g('grants.expires_at', '>', sql<number>`${now}`)])),
            ),
          )
          .returning('refresh_tokens.id'),
      ),
      pollState: new PreparedQuery(1, (id) =>
        db.selectFrom('device_grants').select(['last_polled_at', 'interval_seconds']).where('id', '=', id),
      ),
      pollWriteBack: new PreparedQuery(3, (lastPolledAt, interval, id) =>
        db
          .updateTable('device_grants')
          .set({ last_polled_at: sql<number>`${lastPolledAt}`, interval_seconds: sql<number>`${interval}` })
          .where('id', '=', id),
      ),
      pollTooFast: new PreparedQuery(2, (now, id) =>
        db
          .updateTable('device_grants')
          .set((eb) => ({ interval_seconds: eb('interval_seconds', '+', 5), last_polled_at: sql<number>`${now}` }))
          .where('id', '=', id)
          .returning('interval_seconds'),
      ),
    }
    this.#pollTimes =
      options.pollTimes === 'memory'
        ? new InMemoryPollTimes(
            async (id) => {
              const [row] = await this.#hot.pollState.execute(this.#db, id)
              return row && { lastPolledAt: row.last_polled_at, intervalSeconds: row.interval_seconds }
            },
            (changes) =>
              this.#db.transaction().execute(async (trx) => {
                for (const [id, p] of changes) await this.#hot.pollWriteBack.execute(trx, p.lastPolledAt, p.intervalSeconds, id)
              }),
            options.onBackgroundError ?? (() => {}),
          )
        : undefined
  }

  /** Hot-path lookups compiled once (see {@link PreparedQuery}). */
  readonly #hot: {
    deviceGrantByCodeHash: PreparedQuery<Selectable<DevicegateDatabase['device_grants']>>
    accessTokenByHash: PreparedQuery<Selectable<DevicegateDatabase['access_tokens']> & { grant_revoked_at: number | null }>
    refreshTokenByHash: PreparedQuery<Selectable<DevicegateDatabase['refresh_tokens']> & { grant_revoked_at: number | null }>
    pollOnTime: PreparedQuery<{ interval_seconds: number }>
    pollTooFast: PreparedQuery<{ interval_seconds: number }>
    pollState: PreparedQuery<{ last_polled_at: number | null; interval_seconds: number }>
    grantById: PreparedQuery<Selectable<DevicegateDatabase['grants']>>
    deviceGrantPolicyById: PreparedQuery<Selectable<DevicegateDatabase['device_grant_policy']>>
    rotateRefreshToken: PreparedQuery<{ id: string }>
    deviceGrantInsert: PreparedInsert<Insertable<DeviceGrantsTable>>
    grantInsert: PreparedInsert<Insertable<DevicegateDatabase['grants']>>
    accessTokenInsert: PreparedInsert<Insertable<DevicegateDatabase['access_tokens']>>
    refreshTokenInsert: PreparedInsert<Insertable<DevicegateDatabase['refresh_tokens']>>
    pollWriteBack: PreparedQuery<unknown>
    auditEventInsert: PreparedQuery<unknown>
  }

  /**
   * Runs `fn`, then waits until its writes are committed (group commit, see
   * `KyselyStoreOptions.settled`); turns driver errors into the store's stable error types.
   */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn()
      await this.#settled?.()
      return result
    } catch (error) {
      switch (this.#classify(error)) {
        case 'conflict':
          throw new StoreConflictError(errorMessage(error), { cause: error })
        case 'unavailable':
          throw new StoreUnavailableError(errorMessage(error), { cause: error })
        default:
          throw error
      }
    }
  }

  migrate(): Promise<void> {
    return this.#guard(() => this.#migrate(this.#db))
  }

  async close(): Promise<void> {
    await this.#pollTimes?.flush()
    await this.#beforeClose?.()
    await this.#db.destroy()
  }

  // --- device authorizations (RFC 8628) ---

  createDeviceGrant(grant: DeviceGrantRecord): Promise<void> {
    return this.#guard(async () => {
      await this.#hot.deviceGrantInsert.execute(this.#db, deviceGrantRow(grant))
    })
  }

  findDeviceGrantByDeviceCodeHash(deviceCodeHash: string): Promise<DeviceGrantRecord | undefined> {
    return this.#guard(async () => {
      const [row] = await this.#hot.deviceGrantByCodeHash.execute(this.#db, deviceCodeHash)
      return row && this.#deviceGrant(row)
    })
  }

  findDeviceGrantByUserCode(userCode: string): Promise<DeviceGrantRecord | undefined> {
    return this.#guard(async () => {
      const row = await this.#db
        .selectFrom('device_grants')
        .selectAll()
        .where('user_code', '=', userCode)
        .executeTakeFirst()
      return row && this.#deviceGrant(row)
    })
  }

  /**
   * RFC 8628 §3.5 `slow_down`, atomically: a poll at least `interval_seconds` after the previous
   * one only records the time (one UPDATE); a faster poll adds 5 s to the interval, which stays.
   * @throws {Error} when no device grant has this id.
   */
  registerPoll(id: string, now: number): Promise<{ tooFast: boolean; intervalSeconds: number }> {
    if (this.#pollTimes) return this.#guard(() => this.#pollTimes!.register(id, now))
    const record = async (db: Kysely<DevicegateDatabase>) => {
      const [onTime] = await this.#hot.pollOnTime.execute(db, now, id)
      if (onTime) return { tooFast: false, intervalSeconds: onTime.interval_seconds }
      const [tooFast] = await this.#hot.pollTooFast.execute(db, now, id)
      if (!tooFast) throw new Error(`registerPoll: no device grant with id ${JSON.stringify(id)}`)
      return { tooFast: true, intervalSeconds: tooFast.interval_seconds }
    }
    if (this.kind !== 'postgres') return this.#guard(() => record(this.#db))
    // Polling is the hottest write. Losing the last poll time in a database crash only forgoes one
    // slow_down, so on PostgreSQL this one transaction does not wait for its WAL flush
    // (synchronous_commit off: still atomic and crash-consistent, never corrupt). Every other
    // write keeps the server's durability setting.
    return this.#guard(() =>
      this.#db.transaction().execute(async (trx) => {
        await sql`SET LOCAL synchronous_commit = off`.execute(trx)
        return record(trx)
      }),
    )
  }

  /** Writes a new token family: the grant, its access token and its refresh token, if any. */
  async #insertBundle(trx: Kysely<DevicegateDatabase>, tokens: TokenBundle): Promise<void> {
    await this.#hot.grantInsert.execute(trx, grantRow(tokens.grant))
    await this.#hot.accessTokenInsert.execute(trx, accessTokenRow(tokens.accessToken))
    if (tokens.refreshToken) await this.#hot.refreshTokenInsert.execute(trx, refreshTokenRow(tokens.refreshToken))
  }

  /** A device grant row as a record, with the poll state held in memory when it is newer. */
  #deviceGrant(row: Selectable<DeviceGrantsTable>): DeviceGrantRecord {
    const record = toDeviceGrant(row)
    const poll = this.#pollTimes?.current(record.id)
    return poll ? { ...record, lastPolledAt: poll.lastPolledAt, intervalSeconds: poll.intervalSeconds } : record
  }

  decideDeviceGrant(
    id: string,
    decision: 'approved' | 'denied',
    subject: string,
    now: number,
  ): Promise<boolean> {
    return this.#guard(async () => {
      const result = await this.#db
        .updateTable('device_grants')
        .set({ status: decision, subject, decided_at: now })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .where('expires_at', '>', now)
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  redeemDeviceGrant(id: string, now: number, tokens: TokenBundle): Promise<boolean> {
    return this.#guard(() =>
      this.#db.transaction().execute(async (trx) => {
        // The conditional update is the lock: of racing callers exactly one sees 1 row.
        const result = await trx
          .updateTable('device_grants')
          .set({ status: 'redeemed', grant_id: tokens.grant.id })
          .where('id', '=', id)
          .where('status', '=', 'approved')
          .where('expires_at', '>', now)
          .executeTakeFirst()
        if (result.numUpdatedRows === 0n) return false
        await this.#insertBundle(trx, tokens)
        return true
      }),
    )
  }

  // --- token families ---

  issueTokens(tokens: TokenBundle): Promise<void> {
    return this.#guard(() => this.#db.transaction().execute((trx) => this.#insertBundle(trx, tokens)))
  }

  findGrant(id: string): Promise<GrantRecord | undefined> {
    return this.#guard(async () => {
      const [row] = await this.#hot.grantById.execute(this.#db, id)
      return row && toGrant(row)
    })
  }

  findAccessTokenByHash(
    tokenHash: string,
  ): Promise<WithGrantState<AccessTokenRecord> | undefined> {
    return this.#guard(async () => {
      const [row] = await this.#hot.accessTokenByHash.execute(this.#db, tokenHash)
      return row && { ...toAccessToken(row), grantRevokedAt: row.grant_revoked_at }
    })
  }

  findRefreshTokenByHash(
    tokenHash: string,
  ): Promise<WithGrantState<RefreshTokenRecord> | undefined> {
    return this.#guard(() => this.#findRefreshToken(this.#db, tokenHash))
  }

  async #findRefreshToken(
    db: Kysely<DevicegateDatabase>,
    tokenHash: string,
  ): Promise<WithGrantState<RefreshTokenRecord> | undefined> {
    const [row] = await this.#hot.refreshTokenByHash.execute(db, tokenHash)
    return row && { ...toRefreshToken(row), grantRevokedAt: row.grant_revoked_at }
  }

  /**
   * RFC 9700 §4.14.2 rotation: one conditional UPDATE marks the old token rotated only while it
   * and its family are live (the family's `expires_at` included); the new tokens are written in
   * the same transaction. When nothing was updated the row is read once to name the reason.
   */
  rotateRefreshToken(
    oldTokenHash: string,
    now: number,
    next: { accessToken: AccessTokenRecord; refreshToken: RefreshTokenRecord },
  ): Promise<RotationResult> {
    return this.#guard(async () => {
      const rotated = await this.#db.transaction().execute(async (trx) => {
        const rotatedRows = await this.#hot.rotateRefreshToken.execute(trx, now, oldTokenHash)
        if (rotatedRows.length === 0) return false
        await this.#hot.accessTokenInsert.execute(trx, accessTokenRow(next.accessToken))
        await this.#hot.refreshTokenInsert.execute(trx, refreshTokenRow(next.refreshToken))
        return true
      })
      if (rotated) return { ok: true }
      const old = await this.#findRefreshToken(this.#db, oldTokenHash)
      if (!old) return { ok: false, reason: 'unknown' }
      if (old.rotatedAt !== null) return { ok: false, reason: 'reused' }
      if (old.revokedAt !== null || old.grantRevokedAt !== null) {
        return { ok: false, reason: 'revoked' }
      }
      return { ok: false, reason: 'expired' }
    })
  }

  /** One UPDATE on the family; its tokens are judged through the join on `grants`. */
  revokeGrant(grantId: string, now: number): Promise<void> {
    return this.#guard(async () => {
      await this.#db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('id', '=', grantId)
        .where('revoked_at', 'is', null)
        .execute()
    })
  }

  revokeGrantsBySubject(subject: string, now: number): Promise<number> {
    return this.#guard(async () => {
      const result = await this.#db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('subject', '=', subject)
        .where('revoked_at', 'is', null)
        .executeTakeFirst()
      return Number(result.numUpdatedRows)
    })
  }

  revokeGrantsByClient(clientId: string, now: number): Promise<number> {
    return this.#guard(async () => {
      const result = await this.#db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('client_id', '=', clientId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst()
      return Number(result.numUpdatedRows)
    })
  }

  revokeAccessToken(tokenHash: string, now: number): Promise<void> {
    return this.#guard(async () => {
      await this.#db
        .updateTable('access_tokens')
        .set({ revoked_at: now })
        .where('token_hash', '=', tokenHash)
        .where('revoked_at', 'is', null)
        .execute()
    })
  }

  // --- verification-page sessions ---

  createWebSession(session: WebSessionRecord): Promise<void> {
    return this.#guard(async () => {
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
    return this.#guard(async () => {
      const row = await this.#db
        .selectFrom('web_sessions')
        .selectAll()
        .where('id_hash', '=', idHash)
        .where('expires_at', '>', now)
        .executeTakeFirst()
      return (
        row && {
          idHash: row.id_hash,
          csrfToken: row.csrf_token,
          subject: row.subject,
          authTime: row.auth_time,
          ...(row.mfa_at !== null ? { mfaAt: row.mfa_at } : {}),
          createdAt: row.created_at,
          expiresAt: row.expires_at,
        }
      )
    })
  }

  deleteWebSession(idHash: string): Promise<void> {
    return this.#guard(async () => {
      await this.#db.deleteFrom('web_sessions').where('id_hash', '=', idHash).execute()
    })
  }

  markWebSessionMfa(idHash: string, now: number): Promise<boolean> {
    return this.#guard(async () => {
      const result = await this.#db
        .updateTable('web_sessions')
        .set({ mfa_at: now })
        .where('id_hash', '=', idHash)
        .where('expires_at', '>', now)
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  // --- conditional approval (policy) ---

  saveDevicePosture(deviceGrantId: string, postureJson: string): Promise<void> {
    return this.#guard(async () => {
      await this.#db
        .insertInto('device_grant_policy')
        .values({ device_grant_id: deviceGrantId, posture_json: postureJson, decision: null, explanation_json: null, decided_at: null })
        .onConflict((oc) => oc.column('device_grant_id').doUpdateSet({ posture_json: postureJson }))
        .execute()
    })
  }

  saveDeviceGrantDecision(deviceGrantId: string, decision: 'allow' | 'deny' | 'step_up', explanationJson: string, now: number): Promise<void> {
    return this.#guard(async () => {
      await this.#db
        .insertInto('device_grant_policy')
        .values({ device_grant_id: deviceGrantId, posture_json: null, decision, explanation_json: explanationJson, decided_at: now })
        .onConflict((oc) => oc.column('device_grant_id').doUpdateSet({ decision, explanation_json: explanationJson, decided_at: now }))
        .execute()
    })
  }

  findDeviceGrantPolicy(deviceGrantId: string): Promise<DeviceGrantPolicyRecord | undefined> {
    return this.#guard(async () => {
      const [row] = await this.#hot.deviceGrantPolicyById.execute(this.#db, deviceGrantId)
      return (
        row && {
          deviceGrantId: row.device_grant_id,
          postureJson: row.posture_json,
          decision: row.decision as DeviceGrantPolicyRecord['decision'],
          explanationJson: row.explanation_json,
          decidedAt: row.decided_at,
        }
      )
    })
  }

  saveTotpSecret(username: string, secret: string, now: number): Promise<void> {
    return this.#guard(async () => {
      await this.#db
        .insertInto('totp_secrets')
        .values({ username, secret, created_at: now })
        .onConflict((oc) => oc.column('username').doUpdateSet({ secret, created_at: now }))
        .execute()
    })
  }

  findTotpSecret(username: string): Promise<{ secret: string; createdAt: number } | undefined> {
    return this.#guard(async () => {
      const row = await this.#db.selectFrom('totp_secrets').select(['secret', 'created_at']).where('username', '=', username).executeTakeFirst()
      return row && { secret: row.secret, createdAt: row.created_at }
    })
  }

  revokeOtherSessions(subject: string, clientId: string, keepGrantId: string, now: number): Promise<number> {
    return this.#guard(async () => {
      const result = await this.#db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('subject', '=', subject)
        .where('client_id', '=', clientId)
        .where('id', '<>', keepGrantId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst()
      return Number(result.numUpdatedRows)
    })
  }

  // --- shared counters (rate limits) ---

  /** One upsert: `INSERT … ON CONFLICT DO UPDATE SET hits = hits + 1 RETURNING hits`. */
  incrementCounter(key: string, windowSeconds: number, now: number): Promise<number> {
    return this.#guard(async () => {
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
    return this.#guard(async () => {
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

  // --- signing keys ---

  /** All keys, newest first. */
  listSigningKeys(): Promise<SigningKeyRecord[]> {
    return this.#guard(async () => {
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
    return this.#guard(async () => {
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
    return this.#guard(async () => {
      await this.#db
        .updateTable('signing_keys')
        .set({ retired_at: now, publish_until: publishUntil })
        .where('kid', '=', kid)
        .execute()
    })
  }

  // --- DPoP replay (RFC 9449 §11.1) ---

  /** `INSERT … ON CONFLICT DO NOTHING`: the one caller whose row went in sees true. */
  rememberDpopJti(key: string, expiresAt: number): Promise<boolean> {
    return this.#guard(async () => {
      const result = await this.#db
        .insertInto('dpop_jtis')
        .values({ jti: key, expires_at: expiresAt })
        .onConflict((oc) => oc.column('jti').doNothing())
        .executeTakeFirst()
      return (result.numInsertedOrUpdatedRows ?? 0n) > 0n
    })
  }

  // --- server-wide secrets ---

  ensureServerSecret(name: string, candidate: string, now: number): Promise<string> {
    return this.#guard(async () => {
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

  // --- revocation feed ---

  /** Two indexed reads: tokens revoked directly or through their family, and families. */
  listRevocationsSince(since: number, now: number): Promise<RevocationsSince> {
    return this.#guard(async () => {
      const tokens = await this.#db
        .selectFrom('access_tokens')
        .innerJoin('grants', 'grants.id', 'access_tokens.grant_id')
        .select([
          'access_tokens.jti as jti',
          'access_tokens.expires_at as expires_at',
          'access_tokens.revoked_at as token_revoked_at',
          'grants.revoked_at as grant_revoked_at',
        ])
        .where('access_tokens.expires_at', '>', now)
        .where((eb) =>
          eb.or([eb('access_tokens.revoked_at', '>=', since), eb('grants.revoked_at', '>=', since)]),
        )
        .execute()
      const grants = await this.#db
        .selectFrom('grants')
        .select(['id', 'revoked_at'])
        .where('revoked_at', '>=', since)
        .execute()
      return {
        accessTokens: tokens.map((t) => ({
          jti: t.jti,
          revokedAt: Math.min(
            ...[t.token_revoked_at, t.grant_revoked_at].filter((v): v is number => v !== null).map(Number),
          ),
          expiresAt: Number(t.expires_at),
        })),
        grants: grants.map((g) => ({ id: g.id, revokedAt: Number(g.revoked_at) })),
      }
    })
  }

  // --- trusted device registry ---

  registerDevice(device: DeviceRecord): Promise<void> {
    return this.#guard(async () => {
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
    return this.#guard(async () => {
      const row = await this.#db.selectFrom('devices').selectAll().where('jkt', '=', jkt).executeTakeFirst()
      return row && toDevice(row)
    })
  }

  listDevices(): Promise<DeviceRecord[]> {
    return this.#guard(async () => {
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
    return this.#guard(async () => {
      const result = await this.#db.updateTable('devices').set({ label }).where('jkt', '=', jkt).executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  retireDevice(jkt: string, now: number): Promise<boolean> {
    return this.#guard(async () => {
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
    return this.#guard(async () => {
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
    return this.#guard(() =>
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

  // --- governance: audit log (issue 5) ---

  /**
   * The head row is updated first (`seq = seq + n … RETURNING`), which takes its row lock on
   * PostgreSQL and the write lock on SQLite: a concurrent appender waits, then sees this
   * transaction's head. Hashes are computed in between, inside the transaction.
   */
  appendAuditEvents(
    events: readonly NewAuditEvent[],
    chain: (prevHash: string, event: AuditEventBody) => string,
  ): Promise<AuditEventRecord[]> {
    if (events.length === 0) return Promise.resolve([])
    return this.#guard(() =>
      this.#db.transaction().execute(async (trx) => {
        const head = await trx
          .updateTable('audit_head')
          .set((eb) => ({ seq: eb('seq', '+', events.length) }))
          .where('id', '=', 1)
          .returning(['seq', 'hash'])
          .executeTakeFirstOrThrow()
        let seq = Number(head.seq) - events.length
        let prevHash = head.hash
        const records: AuditEventRecord[] = events.map((e) => {
          const body: AuditEventBody = { ...e, seq: ++seq }
          const hash = chain(prevHash, body)
          const record = { ...body, prevHash, hash }
          prevHash = hash
          return record
        })
        if (this.kind === 'postgres') {
          // Few round trips: multi-row inserts.
          for (let i = 0; i < records.length; i += 200) {
            await trx
              .insertInto('audit_events')
              .values(records.slice(i, i + 200).map(auditEventRow))
              .execute()
          }
        } else {
          // In-process SQLite: one prepared single-row insert reused for every record is cheaper than
          // compiling (and preparing) a new multi-row statement for every batch size.
          for (const r of records)
            await this.#hot.auditEventInsert.execute(trx, r.seq, r.time, r.type, r.actor, r.clientId, r.subject, r.ip, r.grantId, r.details, r.prevHash, r.hash)
        }
        await trx.updateTable('audit_head').set({ hash: prevHash }).where('id', '=', 1).execute()
        return records
      }),
    )
  }

  readAuditHead(): Promise<{ seq: number; hash: string }> {
    return this.#guard(async () => {
      const row = await this.#db
        .selectFrom('audit_head')
        .select(['seq', 'hash'])
        .where('id', '=', 1)
        .executeTakeFirstOrThrow()
      return { seq: Number(row.seq), hash: row.hash }
    })
  }

  listAuditEvents(query: { afterSeq?: number; sinceTime?: number; limit: number }): Promise<AuditEventRecord[]> {
    return this.#guard(async () => {
      let q = this.#db.selectFrom('audit_events').selectAll()
      if (query.afterSeq !== undefined) q = q.where('seq', '>', query.afterSeq)
      if (query.sinceTime !== undefined) q = q.where('time', '>=', query.sinceTime)
      const rows = await q.orderBy('seq').limit(query.limit).execute()
      return rows.map(toAuditEvent)
    })
  }

  insertAuditCheckpoint(checkpoint: AuditCheckpointRecord): Promise<void> {
    return this.#guard(async () => {
      await this.#db
        .insertInto('audit_checkpoints')
        .values({ ...checkpoint })
        .onConflict((oc) => oc.column('seq').doNothing())
        .execute()
    })
  }

  listAuditCheckpoints(): Promise<AuditCheckpointRecord[]> {
    return this.#guard(async () => {
      const rows = await this.#db.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute()
      return rows.map((r) => ({ seq: Number(r.seq), hash: r.hash, time: Number(r.time), signature: r.signature }))
    })
  }

  // --- governance: anomalies, overrides, inventory, central revocation (issue 5) ---

  insertAnomaly(anomaly: AnomalyRecord): Promise<boolean> {
    return this.#guard(async () => {
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
    return this.#guard(async () => {
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
    return this.#guard(async () => {
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
    return this.#guard(async () => {
      const result = await this.#db
        .deleteFrom('principal_overrides')
        .where('kind', '=', kind)
        .where('id', '=', id)
        .executeTakeFirst()
      return result.numDeletedRows > 0n
    })
  }

  listPrincipalOverrides(): Promise<PrincipalOverrideRecord[]> {
    return this.#guard(async () => {
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

  /** One UPDATE per chunk of at most 500 listed ids (a bound-parameter limit), in one transaction. */
  revokeGrantsWhere(filter: GrantFilter, now: number): Promise<number> {
    if (!hasGrantCriterion(filter)) {
      return Promise.reject(new TypeError('revokeGrantsWhere: the filter names no criterion'))
    }
    return this.#guard(() =>
      this.#db.transaction().execute(async (trx) => {
        let revoked = 0
        for (const chunk of chunkGrantFilter(filter)) {
          const result = await trx
            .updateTable('grants')
            .set({ revoked_at: now })
            .where('revoked_at', 'is', null)
            .where((eb) => grantFilterExpression(eb, chunk))
            .executeTakeFirst()
          revoked += Number(result.numUpdatedRows)
        }
        return revoked
      }),
    )
  }

  countGrants(filter: GrantFilter): Promise<number> {
    return this.#guard(async () => {
      let total = 0
      for (const chunk of chunkGrantFilter(filter)) {
        const row = await this.#db
          .selectFrom('grants')
          .select((eb) => eb.fn.countAll<number | string>().as('n'))
          .where((eb) => grantFilterExpression(eb, chunk))
          .executeTakeFirstOrThrow()
        total += Number(row.n)
      }
      return total
    })
  }

  listGrantSummaries(
    filter: GrantFilter,
    page: { limit: number; after?: { createdAt: number; id: string } },
  ): Promise<GrantSummary[]> {
    if ((filter.ids?.length ?? 0) > 500 || (filter.deviceGrantIds?.length ?? 0) > 500) {
      return Promise.reject(new TypeError('listGrantSummaries: at most 500 ids per call'))
    }
    return this.#guard(async () => {
      let q = this.#db
        .selectFrom('grants')
        .leftJoin('device_grants', 'device_grants.id', 'grants.device_grant_id')
        .selectAll('grants')
        .select([
          'device_grants.request_ip as dg_request_ip',
          'device_grants.request_user_agent as dg_request_user_agent',
          'device_grants.created_at as dg_created_at',
          'device_grants.decided_at as dg_decided_at',
        ])
        .where((eb) => grantFilterExpression(eb as unknown as ExpressionBuilder<DevicegateDatabase, 'grants'>, filter))
      const after = page.after
      if (after !== undefined) {
        q = q.where((eb) =>
          eb.or([
            eb('grants.created_at', '<', after.createdAt),
            eb.and([eb('grants.created_at', '=', after.createdAt), eb('grants.id', '>', after.id)]),
          ]),
        )
      }
      const rows = await q.orderBy('grants.created_at', 'desc').orderBy('grants.id').limit(page.limit).execute()
      return rows.map((row) => ({
        ...toGrant(row),
        lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
        lastUsedIp: row.last_used_ip,
        requestIp: row.dg_request_ip,
        requestUserAgent: row.dg_request_user_agent,
        requestedAt: row.dg_created_at === null ? null : Number(row.dg_created_at),
        approvedAt: row.dg_decided_at === null ? null : Number(row.dg_decided_at),
      }))
    })
  }

  findGrantLineage(grantId: string): Promise<GrantLineage | undefined> {
    return this.#guard(async () => {
      const [grant] = await this.listGrantSummaries({ ids: [grantId] }, { limit: 1 })
      if (grant === undefined) return undefined
      const deviceGrant =
        grant.deviceGrantId === null
          ? undefined
          : await this.#db.selectFrom('device_grants').selectAll().where('id', '=', grant.deviceGrantId).executeTakeFirst()
      const access = await this.#db
        .selectFrom('access_tokens')
        .select(['jti', 'issued_at', 'expires_at', 'revoked_at', 'dpop_jkt'])
        .where('grant_id', '=', grantId)
        .orderBy('issued_at')
        .orderBy('jti')
        .execute()
      const refresh = await this.#db
        .selectFrom('refresh_tokens')
        .select(['id', 'issued_at', 'expires_at', 'rotated_at', 'revoked_at'])
        .where('grant_id', '=', grantId)
        .orderBy('issued_at')
        .orderBy('id')
        .execute()
      return {
        grant,
        deviceGrant: deviceGrant && this.#deviceGrant(deviceGrant),
        accessTokens: access.map((a) => ({
          jti: a.jti,
          issuedAt: Number(a.issued_at),
          expiresAt: Number(a.expires_at),
          revokedAt: a.revoked_at === null ? null : Number(a.revoked_at),
          dpopJkt: a.dpop_jkt,
        })),
        refreshTokens: refresh.map((r) => ({
          id: r.id,
          issuedAt: Number(r.issued_at),
          expiresAt: r.expires_at === null ? null : Number(r.expires_at),
          rotatedAt: r.rotated_at === null ? null : Number(r.rotated_at),
          revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
        })),
      }
    })
  }

  touchGrant(grantId: string, now: number, ip: string | null, minIntervalSeconds: number): Promise<boolean> {
    return this.#guard(async () => {
      const result = await this.#db
        .updateTable('grants')
        .set((eb) => ({ last_used_at: now, last_used_ip: ip === null ? eb.ref('last_used_ip') : ip }))
        .where('id', '=', grantId)
        .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', now - minIntervalSeconds)]))
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  listDeviceGrants(filter: DeviceGrantFilter, limit: number): Promise<DeviceGrantRecord[]> {
    return this.#guard(async () => {
      const rows = await this.#db
        .selectFrom('device_grants')
        .selectAll()
        .where((eb) => deviceGrantFilterExpression(eb, filter))
        .orderBy('created_at')
        .orderBy('id')
        .limit(limit)
        .execute()
      return rows.map((row) => this.#deviceGrant(row))
    })
  }

  denyOpenDeviceGrants(filter: DeviceGrantFilter, now: number): Promise<number> {
    const criteria = [filter.ids, filter.clientId, filter.subject, filter.createdFrom, filter.createdTo]
    if (criteria.every((c) => c === undefined)) {
      return Promise.reject(new TypeError('denyOpenDeviceGrants: the filter names no criterion'))
    }
    const chunks: DeviceGrantFilter[] = []
    if (filter.ids !== undefined && filter.ids.length > 500) {
      for (let i = 0; i < filter.ids.length; i += 500) chunks.push({ ...filter, ids: filter.ids.slice(i, i + 500) })
    } else chunks.push(filter)
    return this.#guard(() =>
      this.#db.transaction().execute(async (trx) => {
        let denied = 0
        for (const chunk of chunks) {
          const result = await trx
            .updateTable('device_grants')
            .set((eb) => ({ status: 'denied', decided_at: eb.fn.coalesce('decided_at', eb.val(now)) }))
            .where('status', 'in', ['pending', 'approved'])
            .where((eb) => deviceGrantFilterExpression(eb, chunk))
            .executeTakeFirst()
          denied += Number(result.numUpdatedRows)
        }
        return denied
      }),
    )
  }

  countPendingDeviceGrants(now: number): Promise<number> {
    return this.#guard(async () => {
      const row = await this.#db
        .selectFrom('device_grants')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('status', '=', 'pending')
        .where('expires_at', '>', now)
        .executeTakeFirstOrThrow()
      return Number(row.n)
    })
  }

  listLiveGrantOwners(): Promise<{ subjects: string[]; clientIds: string[] }> {
    return this.#guard(async () => {
      const subjects = await this.#db
        .selectFrom('grants')
        .select('subject')
        .distinct()
        .where('revoked_at', 'is', null)
        .where('subject', 'is not', null)
        .execute()
      const clients = await this.#db
        .selectFrom('grants')
        .select('client_id')
        .distinct()
        .where('revoked_at', 'is', null)
        .execute()
      return {
        subjects: subjects.map((r) => r.subject!).sort(),
        clientIds: clients.map((r) => r.client_id).sort(),
      }
    })
  }

  /**
   * Deletes expired web sessions, counters whose window is over, expired DPoP jtis, and device
   * grants that were never redeemed and expired more than a day ago (redeemed ones stay: their
   * token family points at them).
   */
  purgeExpired(now: number): Promise<void> {
    return this.#guard(async () => {
      await this.#db.deleteFrom('web_sessions').where('expires_at', '<=', now).execute()
      await this.#db.deleteFrom('rate_counters').where('expires_at', '<=', now).execute()
      await this.#db.deleteFrom('dpop_jtis').where('expires_at', '<=', now).execute()
      await this.#db
        .deleteFrom('device_grants')
        .where('status', '<>', 'redeemed')
        .where('expires_at', '<', now - DEVICE_GRANT_RETENTION_SECONDS)
        .execute()
    })
  }
}

// --- row mapping ---

function windowStartOf(windowSeconds: number, now: number): number {
  if (!Number.isInteger(windowSeconds) || windowSeconds <= 0) {
    throw new TypeError(`windowSeconds must be a positive integer, got ${windowSeconds}`)
  }
  return Math.floor(now / windowSeconds) * windowSeconds
}

function errorMessage(error: unknown): string {
  // Node reports a failed connect to several addresses as an AggregateError with no message.
  if (error instanceof AggregateError && !error.message) return error.errors.map(errorMessage).join('; ')
  return error instanceof Error ? error.message : String(error)
}

function grantRow(g: TokenBundle['grant']): Insertable<DevicegateDatabase['grants']> {
  return {
    id: g.id,
    client_id: g.clientId,
    subject: g.subject,
    scope: g.scope,
    created_at: g.createdAt,
    revoked_at: g.revokedAt,
    device_grant_id: g.deviceGrantId,
    expires_at: g.expiresAt,
    dpop_jkt: g.dpopJkt,
    resources: joinResources(g.resources),
  }
}

function deviceGrantRow(g: DeviceGrantRecord): DeviceGrantsTable {
  return {
    id: g.id,
    device_code_hash: g.deviceCodeHash,
    user_code: g.userCode,
    client_id: g.clientId,
    scope: g.scope,
    status: g.status,
    created_at: g.createdAt,
    expires_at: g.expiresAt,
    interval_seconds: g.intervalSeconds,
    last_polled_at: g.lastPolledAt,
    subject: g.subject,
    decided_at: g.decidedAt,
    request_ip: g.requestIp,
    request_user_agent: g.requestUserAgent,
    dpop_jkt: g.dpopJkt,
    grant_id: g.grantId,
    resources: joinResources(g.resources),
  }
}

function toDeviceGrant(row: Selectable<DeviceGrantsTable>): DeviceGrantRecord {
  return {
    id: row.id,
    deviceCodeHash: row.device_code_hash,
    userCode: row.user_code,
    clientId: row.client_id,
    scope: row.scope,
    status: row.status as DeviceGrantStatus,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    intervalSeconds: row.interval_seconds,
    lastPolledAt: row.last_polled_at,
    subject: row.subject,
    decidedAt: row.decided_at,
    requestIp: row.request_ip,
    requestUserAgent: row.request_user_agent,
    dpopJkt: row.dpop_jkt,
    grantId: row.grant_id,
    ...splitResources(row.resources),
  }
}

function toGrant(row: Selectable<GrantsTable>): GrantRecord {
  return {
    id: row.id,
    clientId: row.client_id,
    subject: row.subject,
    scope: row.scope,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    deviceGrantId: row.device_grant_id,
    expiresAt: row.expires_at,
    dpopJkt: row.dpop_jkt,
    ...splitResources(row.resources),
  }
}

function accessTokenRow(t: AccessTokenRecord): AccessTokensTable {
  return {
    token_hash: t.tokenHash,
    jti: t.jti,
    grant_id: t.grantId,
    client_id: t.clientId,
    subject: t.subject,
    scope: t.scope,
    issued_at: t.issuedAt,
    expires_at: t.expiresAt,
    revoked_at: t.revokedAt,
    format: t.format,
    dpop_jkt: t.dpopJkt,
    resources: joinResources(t.resources),
  }
}

function toAccessToken(row: Selectable<AccessTokensTable>): AccessTokenRecord {
  return {
    tokenHash: row.token_hash,
    jti: row.jti,
    grantId: row.grant_id,
    clientId: row.client_id,
    subject: row.subject,
    scope: row.scope,
    issuedAt: row.issued_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    format: row.format as AccessTokenRecord['format'],
    dpopJkt: row.dpop_jkt,
    ...splitResources(row.resources),
  }
}

function refreshTokenRow(t: RefreshTokenRecord): RefreshTokensTable {
  return {
    token_hash: t.tokenHash,
    id: t.id,
    grant_id: t.grantId,
    client_id: t.clientId,
    subject: t.subject,
    scope: t.scope,
    issued_at: t.issuedAt,
    expires_at: t.expiresAt,
    rotated_at: t.rotatedAt,
    revoked_at: t.revokedAt,
    dpop_jkt: t.dpopJkt,
  }
}

function toRefreshToken(row: Selectable<RefreshTokensTable>): RefreshTokenRecord {
  return {
    tokenHash: row.token_hash,
    id: row.id,
    grantId: row.grant_id,
    clientId: row.client_id,
    subject: row.subject,
    scope: row.scope,
    issuedAt: row.issued_at,
    expiresAt: row.expires_at,
    rotatedAt: row.rotated_at,
    revokedAt: row.revoked_at,
    dpopJkt: row.dpop_jkt,
  }
}

/** RFC 8707 resources as stored: space-delimited (an absolute URI contains no space), null for none. */
function joinResources(resources: readonly string[] | undefined): string | null {
  return resources && resources.length > 0 ? resources.join(' ') : null
}

function splitResources(value: string | null): { resources?: string[] } {
  return value ? { resources: value.split(' ') } : {}
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

// --- governance helpers (issue 5) ---

function auditEventRow(r: AuditEventRecord): AuditEventsTable {
  return {
    seq: r.seq,
    time: r.time,
    type: r.type,
    actor: r.actor,
    client_id: r.clientId,
    subject: r.subject,
    ip: r.ip,
    grant_id: r.grantId,
    details: r.details,
    prev_hash: r.prevHash,
    hash: r.hash,
  }
}

function toAuditEvent(row: Selectable<AuditEventsTable>): AuditEventRecord {
  return {
    seq: Number(row.seq),
    time: Number(row.time),
    type: row.type,
    actor: row.actor,
    clientId: row.client_id,
    subject: row.subject,
    ip: row.ip,
    grantId: row.grant_id,
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  }
}

/** Whether a filter selects something narrower than "every family" (revocation must). */
function hasGrantCriterion(f: GrantFilter): boolean {
  return [f.ids, f.subject, f.clientId, f.dpopJkt, f.createdBefore, f.createdFrom, f.deviceGrantIds, f.requestIp, f.lastUsedBefore].some(
    (c) => c !== undefined,
  )
}

/** Splits id lists into chunks of 500, keeping the other criteria on every chunk. */
function chunkGrantFilter(f: GrantFilter): GrantFilter[] {
  const CHUNK = 500
  if (f.ids !== undefined && f.ids.length > CHUNK) {
    const out: GrantFilter[] = []
    for (let i = 0; i < f.ids.length; i += CHUNK) out.push(...chunkGrantFilter({ ...f, ids: f.ids.slice(i, i + CHUNK) }))
    return out
  }
  if (f.deviceGrantIds !== undefined && f.deviceGrantIds.length > CHUNK) {
    const out: GrantFilter[] = []
    for (let i = 0; i < f.deviceGrantIds.length; i += CHUNK) out.push({ ...f, deviceGrantIds: f.deviceGrantIds.slice(i, i + CHUNK) })
    return out
  }
  return [f]
}

const NEVER = sql<SqlBool>`1 = 0`

function grantFilterExpression(eb: ExpressionBuilder<DevicegateDatabase, 'grants'>, f: GrantFilter): Expression<SqlBool> {
  const parts: Expression<SqlBool>[] = []
  if (f.ids !== undefined) parts.push(f.ids.length === 0 ? NEVER : eb('grants.id', 'in', [...f.ids]))
  if (f.subject !== undefined) parts.push(eb('grants.subject', '=', f.subject))
  if (f.clientId !== undefined) parts.push(eb('grants.client_id', '=', f.clientId))
  if (f.dpopJkt !== undefined) parts.push(eb('grants.dpop_jkt', '=', f.dpopJkt))
  if (f.createdBefore !== undefined) parts.push(eb('grants.created_at', '<', f.createdBefore))
  if (f.createdFrom !== undefined) parts.push(eb('grants.created_at', '>=', f.createdFrom))
  if (f.deviceGrantIds !== undefined) {
    parts.push(f.deviceGrantIds.length === 0 ? NEVER : eb('grants.device_grant_id', 'in', [...f.deviceGrantIds]))
  }
  if (f.requestIp !== undefined) {
    parts.push(
      eb(
        'grants.device_grant_id',
        'in',
        eb.selectFrom('device_grants').select('device_grants.id').where('device_grants.request_ip', '=', f.requestIp),
      ),
    )
  }
  if (f.revoked === true) parts.push(eb('grants.revoked_at', 'is not', null))
  if (f.revoked === false) parts.push(eb('grants.revoked_at', 'is', null))
  if (f.unexpiredAt !== undefined) {
    const at = f.unexpiredAt
    parts.push(eb.or([eb('grants.expires_at', 'is', null), eb('grants.expires_at', '>', at)]))
  }
  if (f.lastUsedBefore !== undefined) {
    parts.push(eb(eb.fn.coalesce('grants.last_used_at', 'grants.created_at'), '<', f.lastUsedBefore))
  }
  return eb.and(parts)
}

function deviceGrantFilterExpression(
  eb: ExpressionBuilder<DevicegateDatabase, 'device_grants'>,
  f: DeviceGrantFilter,
): Expression<SqlBool> {
  const parts: Expression<SqlBool>[] = []
  if (f.ids !== undefined) parts.push(f.ids.length === 0 ? NEVER : eb('device_grants.id', 'in', [...f.ids]))
  if (f.clientId !== undefined) parts.push(eb('device_grants.client_id', '=', f.clientId))
  if (f.subject !== undefined) parts.push(eb('device_grants.subject', '=', f.subject))
  if (f.createdFrom !== undefined) parts.push(eb('device_grants.created_at', '>=', f.createdFrom))
  if (f.createdTo !== undefined) parts.push(eb('device_grants.created_at', '<', f.createdTo))
  return eb.and(parts)
}
