/**
 * Token families on Kysely: `grants`, `access_tokens`, `refresh_tokens` (see ../token-families.ts).
 *
 * Rotation (RFC 9700 §4.14.2) is one conditional UPDATE followed by the new tokens' inserts in the
 * same transaction; revocation is one UPDATE on the family, whose tokens are judged through the
 * join on `grants`. The lookups by token hash and the inserts are prepared once (hot paths).
 */
import { CompiledQuery, sql, type Insertable, type Kysely, type Selectable } from 'kysely'
import type {
  AccessTokenRecord,
  GrantRecord,
  RefreshTokenRecord,
  RetryGrace,
  RevocationsSince,
  RotatedTokens,
  RotationResult,
  TokenBundle,
  TokenFamilyStore,
  WithGrantState,
} from '../token-families.js'
import type { KyselyContext } from './context.js'
import { BatchedRead, padForGenericPlan } from './batched-read.js'
import { PreparedInsert, PreparedQuery, registerNamed } from './prepared.js'
import { insertOutboxEvent } from './signals.js'
import {
  joinResources,
  splitResources,
  type AccessTokensTable,
  type DevicegateDatabase,
  type GrantsTable,
  type RefreshTokensTable,
} from './tables.js'

/**
 * The prepared inserts of a token family, shared with the device grants (a redemption writes its
 * family in the redeeming transaction).
 */
export class TokenWriter {
  readonly #grantInsert: PreparedInsert<Insertable<DevicegateDatabase['grants']>>
  readonly #accessTokenInsert: PreparedInsert<Insertable<DevicegateDatabase['access_tokens']>>
  readonly #refreshTokenInsert: PreparedInsert<Insertable<DevicegateDatabase['refresh_tokens']>>

  constructor(db: Kysely<DevicegateDatabase>) {
    this.#grantInsert = new PreparedInsert((row: Insertable<DevicegateDatabase['grants']>) => db.insertInto('grants').values(row))
    this.#accessTokenInsert = new PreparedInsert((row: Insertable<DevicegateDatabase['access_tokens']>) => db.insertInto('access_tokens').values(row))
    this.#refreshTokenInsert = new PreparedInsert((row: Insertable<DevicegateDatabase['refresh_tokens']>) => db.insertInto('refresh_tokens').values(row))
  }

  /** Writes a new token family: the grant, its access token and its refresh token, if any. */
  async insertBundle(trx: Kysely<DevicegateDatabase>, tokens: TokenBundle): Promise<void> {
    await this.#grantInsert.execute(trx, grantRow(tokens.grant))
    await this.#accessTokenInsert.execute(trx, accessTokenRow(tokens.accessToken))
    if (tokens.refreshToken) await this.#refreshTokenInsert.execute(trx, refreshTokenRow(tokens.refreshToken))
  }

  /** Writes the tokens that replace a rotated refresh token, and the family's new key if it moved. */
  async insertRotated(trx: Kysely<DevicegateDatabase>, next: RotatedTokens): Promise<void> {
    await this.#accessTokenInsert.execute(trx, accessTokenRow(next.accessToken))
    await this.#refreshTokenInsert.execute(trx, refreshTokenRow(next.refreshToken))
    // RFC 9449 §5: the key moved (rare): record the family's current key with its new tokens.
    if (next.familyDpopJkt !== undefined)
      await trx.updateTable('grants').set({ dpop_jkt: next.familyDpopJkt }).where('id', '=', next.accessToken.grantId).execute()
  }
}

/** An access token row with its family's revocation time. */
type AccessTokenRow = Selectable<AccessTokensTable> & { grant_revoked_at: number | null }

export class KyselyTokenFamilyStore implements TokenFamilyStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>
  readonly #writer: TokenWriter
  /**
   * PostgreSQL: concurrent access-token lookups (introspection, resource requests) coalesced into
   * one statement per event-loop turn (see {@link BatchedRead}).
   */
  readonly #accessTokens: BatchedRead<AccessTokenRow> | undefined
  /** Hot-path lookups compiled once (see {@link PreparedQuery}). */
  readonly #hot: {
    accessTokenByHash: PreparedQuery<AccessTokenRow>
    refreshTokenByHash: PreparedQuery<Selectable<RefreshTokensTable> & { grant_revoked_at: number | null }>
    refreshTokenWithGrant: PreparedQuery<Selectable<RefreshTokensTable> & GrantColumns>
    grantById: PreparedQuery<Omit<Selectable<GrantsTable>, 'last_used_at' | 'last_used_ip'>>
    rotateRefreshToken: PreparedQuery<{ id: string }>
  }

  constructor(ctx: KyselyContext, writer: TokenWriter) {
    this.#ctx = ctx
    this.#db = ctx.db
    this.#writer = writer
    const db = ctx.db
    this.#hot = {
      accessTokenByHash: new PreparedQuery(1, (hash) =>
        db
          .selectFrom('access_tokens')
          .innerJoin('grants', 'grants.id', 'access_tokens.grant_id')
          .select(ACCESS_TOKEN_COLUMNS)
          .select('grants.revoked_at as grant_revoked_at')
          .where('access_tokens.token_hash', '=', hash),
      ),
      refreshTokenByHash: new PreparedQuery(1, (hash) =>
        db
          .selectFrom('refresh_tokens')
          .innerJoin('grants', 'grants.id', 'refresh_tokens.grant_id')
          .select(REFRESH_TOKEN_COLUMNS)
          .select('grants.revoked_at as grant_revoked_at')
          .where('refresh_tokens.token_hash', '=', hash),
      ),
      refreshTokenWithGrant: new PreparedQuery(1, (hash) =>
        db
          .selectFrom('refresh_tokens')
          .innerJoin('grants', 'grants.id', 'refresh_tokens.grant_id')
          .select(REFRESH_TOKEN_COLUMNS)
          .select([
            'grants.client_id as grant_client_id',
            'grants.subject as grant_subject',
            'grants.scope as grant_scope',
            'grants.created_at as grant_created_at',
            'grants.revoked_at as grant_revoked_at',
            'grants.device_grant_id as grant_device_grant_id',
            'grants.expires_at as grant_expires_at',
            'grants.dpop_jkt as grant_dpop_jkt',
            'grants.resources as grant_resources',
          ])
          .where('refresh_tokens.token_hash', '=', hash),
      ),
      grantById: new PreparedQuery(1, (id) => db.selectFrom('grants').select(GRANT_COLUMNS).where('id', '=', id)),
      // RFC 9700 §4.14.2: marks the token rotated only while it and its family are live.
      rotateRefreshToken: new PreparedQuery(4, (now, tokenHash, rotatedJkt, replacedBy) =>
        db
          .updateTable('refresh_tokens')
          .set({ rotated_at: sql<number>`${now}`, rotated_jkt: sql<string | null>`${rotatedJkt}`, replaced_by: replacedBy })
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
    }
    if (ctx.kind === 'postgres') {
      const byHashes = accessTokensByHashesSql()
      this.#accessTokens = new BatchedRead(
        async (hashes) => (await db.executeQuery<AccessTokenRow>(CompiledQuery.raw(byHashes, [padForGenericPlan(hashes)]))).rows,
        (row) => row.token_hash,
      )
    }
  }

  issueTokens(tokens: TokenBundle): Promise<void> {
    return this.#ctx.guard(() => this.#db.transaction().execute((trx) => this.#writer.insertBundle(trx, tokens)))
  }

  findGrant(id: string): Promise<GrantRecord | undefined> {
    return this.#ctx.guard(async () => {
      const [row] = await this.#hot.grantById.execute(this.#db, id)
      return row && toGrant(row)
    })
  }

  findAccessTokenByHash(
    tokenHash: string,
  ): Promise<WithGrantState<AccessTokenRecord> | undefined> {
    return this.#ctx.guard(async () => {
      const row = this.#accessTokens ? await this.#accessTokens.load(tokenHash) : (await this.#hot.accessTokenByHash.execute(this.#db, tokenHash))[0]
      return row && { ...toAccessToken(row), grantRevokedAt: row.grant_revoked_at }
    })
  }

  findRefreshTokenByHash(
    tokenHash: string,
  ): Promise<WithGrantState<RefreshTokenRecord> | undefined> {
    return this.#ctx.guard(() => this.#findRefreshToken(this.#db, tokenHash))
  }

  findRefreshTokenWithGrant(tokenHash: string): Promise<{ token: WithGrantState<RefreshTokenRecord>; grant: GrantRecord } | undefined> {
    return this.#ctx.guard(async () => {
      const [row] = await this.#hot.refreshTokenWithGrant.execute(this.#db, tokenHash)
      if (row === undefined) return undefined
      const grant = toGrant({
        id: row.grant_id,
        client_id: row.grant_client_id,
        subject: row.grant_subject,
        scope: row.grant_scope,
        created_at: row.grant_created_at,
        revoked_at: row.grant_revoked_at,
        device_grant_id: row.grant_device_grant_id,
        expires_at: row.grant_expires_at,
        dpop_jkt: row.grant_dpop_jkt,
        resources: row.grant_resources,
      })
      return { token: { ...toRefreshToken(row), grantRevokedAt: row.grant_revoked_at }, grant }
    })
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
    next: RotatedTokens,
    grace?: RetryGrace,
  ): Promise<RotationResult> {
    return this.#ctx.guard(async () => {
      const rotated = await this.#db.transaction().execute(async (trx) => {
        const rotatedRows = await this.#hot.rotateRefreshToken.execute(trx, now, oldTokenHash, grace?.dpopJkt ?? null, next.refreshToken.id)
        if (rotatedRows.length === 0) return false
        await this.#writer.insertRotated(trx, next)
        if (next.signal) await insertOutboxEvent(trx, next.signal)
        return true
      })
      if (rotated) return { ok: true, retried: false }
      const old = await this.#findRefreshToken(this.#db, oldTokenHash)
      if (!old) return { ok: false, reason: 'unknown' }
      if (old.rotatedAt !== null) {
        if (grace && (await this.#retryRotation(old, now, next, grace))) return { ok: true, retried: true }
        return { ok: false, reason: 'reused' }
      }
      if (old.revokedAt !== null || old.grantRevokedAt !== null) {
        return { ok: false, reason: 'revoked' }
      }
      return { ok: false, reason: 'expired' }
    })
  }

  /**
   * A retry of a rotated refresh token within the grace (see {@link RetryGrace}), in one
   * transaction: the successor is revoked only while unused (a used successor means the client got
   * its answer: this is reuse), then the old token is pointed at the new successor with a
   * compare-and-set on `replaced_by`, so of concurrent retries exactly one wins; then the new
   * tokens are written. Any failed condition rolls everything back.
   * @returns whether the retry was answered.
   */
  async #retryRotation(
    old: WithGrantState<RefreshTokenRecord>,
    now: number,
    next: RotatedTokens,
    grace: RetryGrace,
  ): Promise<boolean> {
    const previous = old.replacedBy
    if (
      grace.graceSeconds <= 0 ||
      previous === null ||
      previous === undefined ||
      old.rotatedAt === null ||
      now - old.rotatedAt > grace.graceSeconds ||
      (old.rotatedJkt ?? null) !== grace.dpopJkt ||
      old.revokedAt !== null ||
      old.grantRevokedAt !== null
    )
      return false
    const notRetried = new Error('retry condition no longer holds')
    try {
      await this.#db.transaction().execute(async (trx) => {
        const successor = await trx
          .updateTable('refresh_tokens')
          .set({ revoked_at: now })
          .where('id', '=', previous)
          .where('rotated_at', 'is', null)
          .where('revoked_at', 'is', null)
          .executeTakeFirst()
        if (Number(successor.numUpdatedRows) !== 1) throw notRetried
        const repointed = await trx
          .updateTable('refresh_tokens')
          .set({ replaced_by: next.refreshToken.id })
          .where('token_hash', '=', old.tokenHash)
          .where('replaced_by', '=', previous)
          .where('revoked_at', 'is', null)
          .where((eb) =>
            eb.exists(
              eb
                .selectFrom('grants')
                .select('grants.id')
                .whereRef('grants.id', '=', 'refresh_tokens.grant_id')
                .where('grants.revoked_at', 'is', null)
                .where((g) => g.or([g('grants.expires_at', 'is', null), g('grants.expires_at', '>', now)])),
            ),
          )
          .executeTakeFirst()
        if (Number(repointed.numUpdatedRows) !== 1) throw notRetried
        await this.#writer.insertRotated(trx, next)
      })
      return true
    } catch (err) {
      if (err === notRetried) return false
      throw err
    }
  }

  /** One UPDATE on the family; its tokens are judged through the join on `grants`. */
  revokeGrant(grantId: string, now: number): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('id', '=', grantId)
        .where('revoked_at', 'is', null)
        .execute()
    })
  }

  revokeGrantsBySubject(subject: string, now: number): Promise<number> {
    return this.#ctx.guard(async () => {
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
    return this.#ctx.guard(async () => {
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
    return this.#ctx.guard(async () => {
      await this.#db
        .updateTable('access_tokens')
        .set({ revoked_at: now })
        .where('token_hash', '=', tokenHash)
        .where('revoked_at', 'is', null)
        .execute()
    })
  }

  revokeOtherSessions(subject: string, clientId: string, keepGrantId: string, now: number): Promise<number> {
    return this.#ctx.guard(async () => {
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

  touchGrant(grantId: string, now: number, ip: string | null, minIntervalSeconds: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .updateTable('grants')
        .set((eb) => ({ last_used_at: now, last_used_ip: ip === null ? eb.ref('last_used_ip') : ip }))
        .where('id', '=', grantId)
        .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', now - minIntervalSeconds)]))
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  /** Two indexed reads: tokens revoked directly or through their family, and families. */
  listRevocationsSince(since: number, now: number): Promise<RevocationsSince> {
    return this.#ctx.guard(async () => {
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
}

// --- row mapping ---

// Explicit column lists for the hot lookups (not `t.*`): they run as named prepared statements on
// PostgreSQL, whose result must not change when a later migration adds a column (prepared.ts).
const ACCESS_TOKEN_COLUMNS = [
  'access_tokens.token_hash',
  'access_tokens.jti',
  'access_tokens.grant_id',
  'access_tokens.client_id',
  'access_tokens.subject',
  'access_tokens.scope',
  'access_tokens.issued_at',
  'access_tokens.expires_at',
  'access_tokens.revoked_at',
  'access_tokens.format',
  'access_tokens.dpop_jkt',
  'access_tokens.resources',
] as const satisfies readonly `access_tokens.${keyof AccessTokensTable}`[]
/**
 * PostgreSQL: the access tokens of these hashes with their family's revocation time, for the
 * coalesced lookups ({@link BatchedRead}). Parameter: $1 the hashes (`text[]`, padded with NULL by
 * `padForGenericPlan`, which matches no row); one row per hash found, in no particular order.
 *
 * Each hash is looked up on its own (`cross join lateral … limit 1`, the primary key makes the
 * limit a no-op): one probe of each primary key per hash, whatever the tables' sizes and
 * statistics. As `token_hash = any($1)` joined to `grants`, PostgreSQL read the whole of both
 * tables into a hash join while they were small (1,000 tokens: 0.3 ms per statement against
 * 0.07 ms), and a cached generic plan would keep that choice until the next ANALYZE. Run as a
 * named statement (`registerNamed`).
 */
function accessTokensByHashesSql(): string {
  const columns = ACCESS_TOKEN_COLUMNS.map((c) => c.slice('access_tokens.'.length))
  const text = `select ${columns.map((c) => `t.${c}`).join(', ')}, t.grant_revoked_at
  from unnest($1::text[]) as k(token_hash)
 cross join lateral (
       select ${ACCESS_TOKEN_COLUMNS.join(', ')}, grants.revoked_at as grant_revoked_at
         from access_tokens join grants on grants.id = access_tokens.grant_id
        where access_tokens.token_hash = k.token_hash
        limit 1) as t`
  registerNamed(text)
  return text
}

const REFRESH_TOKEN_COLUMNS = [
  'refresh_tokens.token_hash',
  'refresh_tokens.id',
  'refresh_tokens.grant_id',
  'refresh_tokens.client_id',
  'refresh_tokens.subject',
  'refresh_tokens.scope',
  'refresh_tokens.issued_at',
  'refresh_tokens.expires_at',
  'refresh_tokens.rotated_at',
  'refresh_tokens.revoked_at',
  'refresh_tokens.dpop_jkt',
  'refresh_tokens.rotated_jkt',
  'refresh_tokens.replaced_by',
] as const satisfies readonly `refresh_tokens.${keyof RefreshTokensTable}`[]
const GRANT_COLUMNS = [
  'id',
  'client_id',
  'subject',
  'scope',
  'created_at',
  'revoked_at',
  'device_grant_id',
  'expires_at',
  'dpop_jkt',
  'resources',
] as const satisfies readonly (keyof GrantsTable)[]

/** The columns of `grants` that {@link toGrant} reads, selected beside a token row with a `grant_` prefix. */
interface GrantColumns {
  grant_client_id: string
  grant_subject: string | null
  grant_scope: string
  grant_created_at: number
  grant_revoked_at: number | null
  grant_device_grant_id: string | null
  grant_expires_at: number | null
  grant_dpop_jkt: string | null
  grant_resources: string | null
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

/** A `grants` row as a record (also used by the inventory and the device registry). */
export function toGrant(row: Omit<Selectable<GrantsTable>, 'last_used_at' | 'last_used_ip'>): GrantRecord {
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
    rotated_jkt: t.rotatedJkt ?? null,
    replaced_by: t.replacedBy ?? null,
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
    rotatedJkt: row.rotated_jkt,
    replacedBy: row.replaced_by,
  }
}
