/**
 * Device authorizations on Kysely: the `device_grants` table (see ../device-grants.ts).
 *
 * Atomic operations are single conditional writes (`UPDATE … WHERE <state> RETURNING`) or one
 * transaction that starts with such a write, so they stay correct when several processes or
 * instances race on the same row: there is no read-then-write. Polling (RFC 8628 §3.5) is the
 * hottest path: its statements are prepared once, and the poll times are decided off the durable
 * commit path: in memory where one process owns the database ({@link InMemoryPollTimes}), else in
 * the shared ephemeral store (`SharedPollTimes`, `../ephemeral.ts`).
 */
import { CompiledQuery, sql, type Expression, type ExpressionBuilder, type Insertable, type Kysely, type Selectable, type SqlBool } from 'kysely'
import type { StorageClass } from '../../core/storage-class.js'
import type { DeviceGrantFilter, DeviceGrantRecord, DeviceGrantStatus, DeviceGrantStore } from '../device-grants.js'
import type { PendingGrantCache } from '../pending-grant-cache.js'
import { InMemoryPollTimes, type PollTimes } from '../poll-times.js'
import type { TokenBundle } from '../token-families.js'
import type { KyselyContext, KyselyStoreOptions } from './context.js'
import { BatchedRead, padForGenericPlan } from './batched-read.js'
import { NEVER, PreparedInsert, PreparedQuery, registerNamed } from './prepared.js'
import { joinResources, splitResources, type DevicegateDatabase, type DeviceGrantsTable } from './tables.js'
import type { TokenWriter } from './token-families.js'
import { constantTimeEqual } from '../../system.js'

/** Every column of `device_grants` (the compiler checks none is missing), for hot reads. */
const DEVICE_GRANT_COLUMNS = [
  'id',
  'device_code_hash',
  'user_code',
  'client_id',
  'scope',
  'status',
  'created_at',
  'expires_at',
  'interval_seconds',
  'last_polled_at',
  'subject',
  'decided_at',
  'request_ip',
  'request_user_agent',
  'dpop_jkt',
  'grant_id',
  'resources',
  'review_claim',
  'review_claim_until',
  'device_secret_hash',
] as const satisfies readonly (keyof DeviceGrantsTable)[]
const allDeviceGrantColumns: Exclude<keyof DeviceGrantsTable, (typeof DEVICE_GRANT_COLUMNS)[number]> extends never ? true : never = true
void allDeviceGrantColumns

/**
 * PostgreSQL: the device grants of these ids, for the coalesced reads ({@link BatchedRead}).
 * Parameter: $1 the ids (`text[]`, padded with NULL by `padForGenericPlan`, which matches no row).
 * Each id is looked up on its own (`cross join lateral … limit 1`): one primary-key probe per id
 * whatever the table's size and statistics, where `id = any($1)` read the whole table while it was
 * small (see `accessTokensByHashesSql` in token-families.ts). A named statement (`registerNamed`).
 */
const DEVICE_GRANTS_BY_IDS_SQL = `select ${DEVICE_GRANT_COLUMNS.map((c) => `g.${c}`).join(', ')}
  from unnest($1::text[]) as k(id)
 cross join lateral (select ${DEVICE_GRANT_COLUMNS.join(', ')} from device_grants where device_grants.id = k.id limit 1) as g`
registerNamed(DEVICE_GRANTS_BY_IDS_SQL)

/** A `device_grants` row as read by the hot path. */
type DeviceGrantRow = Selectable<DeviceGrantsTable>

/** Unredeemed device grants are kept this long past expiry (support, audit), then purged. */
const DEVICE_GRANT_RETENTION_SECONDS = 86_400

/**
 * The in-memory poll times of a store one process owns (`pollTimes: 'memory'`, SQLite), written
 * back through prepared statements and flushed when the store closes.
 */
export function createPollTimes(
  ctx: KyselyContext,
  options: Pick<KyselyStoreOptions, 'onBackgroundError'>,
): InMemoryPollTimes {
  const db = ctx.db
  const pollState = new PreparedQuery<{ last_polled_at: number | null; interval_seconds: number }>(1, (id) =>
    db.selectFrom('device_grants').select(['last_polled_at', 'interval_seconds']).where('id', '=', id),
  )
  const pollWriteBack = new PreparedQuery<unknown>(3, (lastPolledAt, interval, id) =>
    db
      .updateTable('device_grants')
      .set({ last_polled_at: sql<number>`${lastPolledAt}`, interval_seconds: sql<number>`${interval}` })
      .where('id', '=', id),
  )
  const pollTimes = new InMemoryPollTimes(
    async (id) => {
      const [row] = await pollState.execute(db, id)
      return row && { lastPolledAt: row.last_polled_at, intervalSeconds: row.interval_seconds }
    },
    (changes) =>
      db.transaction().execute(async (trx) => {
        for (const [id, p] of changes) await pollWriteBack.execute(trx, p.lastPolledAt, p.intervalSeconds, id)
      }),
    options.onBackgroundError ?? (() => {}),
  )
  ctx.onClose(() => pollTimes.flush())
  return pollTimes
}

/** A device grant row as a record, with the poll state held in memory when it is newer. */
export function toDeviceGrantRecord(row: Selectable<DeviceGrantsTable>, pollTimes: PollTimes): DeviceGrantRecord {
  return withPollState(toDeviceGrant(row), pollTimes)
}

/** `record` with the poll state held in memory when there is one (newer than the row); changes `record`. */
function withPollState(record: DeviceGrantRecord, pollTimes: PollTimes): DeviceGrantRecord {
  const poll = pollTimes.current(record.id)
  if (poll) {
    record.lastPolledAt = poll.lastPolledAt
    record.intervalSeconds = poll.intervalSeconds
  }
  return record
}

export class KyselyDeviceGrantStore implements DeviceGrantStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>
  readonly #tokens: TokenWriter
  /** Where polls are decided: in memory (SQLite) or in the shared ephemeral store (PostgreSQL). */
  readonly #pollTimes: PollTimes
  /** Pending device grants known to this instance (several instances; see `../pending-grant-cache.ts`). */
  readonly #pending: PendingGrantCache | undefined
  /** PostgreSQL: concurrent reads by id coalesced into one statement per event-loop turn. */
  readonly #byId: BatchedRead<DeviceGrantRow> | undefined
  /** Hot-path statements compiled once (see {@link PreparedQuery}). */
  readonly #hot: {
    deviceGrantById: PreparedQuery<DeviceGrantRow>
    deviceGrantByLegacyHash: PreparedQuery<DeviceGrantRow>
    deviceGrantInsert: PreparedInsert<Insertable<DeviceGrantsTable>>
    storageClassInsert: PreparedQuery<unknown>
  }

  /**
   * @param tokens Writes the token family of a redemption in the redeeming transaction.
   * @param pollTimes In-memory poll times (see {@link createPollTimes}) or the shared ones of
   *   several instances (`SharedPollTimes`, see `kysely/ephemeral.ts`).
   * @param pending This instance's cache of pending device grants, if it keeps one (PostgreSQL).
   */
  constructor(ctx: KyselyContext, tokens: TokenWriter, pollTimes: PollTimes, pending?: PendingGrantCache) {
    this.#ctx = ctx
    this.#db = ctx.db
    this.#tokens = tokens
    this.#pollTimes = pollTimes
    this.#pending = pending
    const db = ctx.db
    this.#hot = {
      // Columns by name, not `*`, so that these run as named statements on PostgreSQL (prepared.ts).
      deviceGrantById: new PreparedQuery(1, (id) => db.selectFrom('device_grants').select(DEVICE_GRANT_COLUMNS).where('id', '=', id)),
      // `device_code_hash = ?` implies `device_code_hash IS NOT NULL`, the partial index's condition,
      // so SQLite and PostgreSQL search that index (test/migrations-device-code.test.ts checks the plans).
      deviceGrantByLegacyHash: new PreparedQuery(1, (hash) =>
        db.selectFrom('device_grants').select(DEVICE_GRANT_COLUMNS).where('device_code_hash', '=', hash),
      ),
      deviceGrantInsert: new PreparedInsert((row: Insertable<DeviceGrantsTable>) => db.insertInto('device_grants').values(row)),
      // The same statement as `KyselyStorageClassStore.declareStorageClass`, for the device
      // authorization path (see createDeviceGrant).
      storageClassInsert: new PreparedQuery(4, (id, clientId, storageClass, declaredAt) =>
        db
          .insertInto('grant_storage_classes')
          .values({ device_grant_id: id!, client_id: clientId!, storage_class: storageClass!, declared_at: sql<number>`${declaredAt}`, redeclared_at: null })
          .onConflict((oc) => oc.column('device_grant_id').doNothing()),
      ),
    }
    if (ctx.kind === 'postgres') {
      this.#byId = new BatchedRead(
        async (ids) => (await db.executeQuery<DeviceGrantRow>(CompiledQuery.raw(DEVICE_GRANTS_BY_IDS_SQL, [padForGenericPlan(ids)]))).rows,
        (row) => row.id,
      )
    }
    // Redeemed grants stay: their token family points at them.
    ctx.onPurge(async (now) => {
      await this.#db
        .deleteFrom('device_grants')
        .where('status', '<>', 'redeemed')
        .where('expires_at', '<', now - DEVICE_GRANT_RETENTION_SECONDS)
        .execute()
    })
  }

  createDeviceGrant(grant: DeviceGrantRecord, storageClass?: StorageClass): Promise<void> {
    let row: DeviceGrantsTable
    try {
      row = deviceGrantRow(grant)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#ctx.guard(async () => {
      await this.#hot.deviceGrantInsert.execute(this.#db, row)
      // Same guard, so the same group commit on SQLite: one commit wait, not two.
      if (storageClass !== undefined) await this.#hot.storageClassInsert.execute(this.#db, grant.id, grant.clientId, storageClass, grant.createdAt)
    })
  }

  /**
   * A key `<id>.<secret hash>` is looked up by `id` (the primary key), and the row matches only
   * when its whole key equals `deviceCodeHash`, compared in constant time: a real id with a wrong
   * secret costs the same read and comparison as the right one, and is not found. Any other key
   * (a code issued before that format) is looked up in the partial unique index of
   * `device_code_hash`.
   *
   * With a cache of pending grants (several instances), a code known to be pending is answered
   * from it without a read (after the same comparison); its status may then be older than the row
   * by the staleness window of `../pending-grant-cache.ts` (an approval is never taken from the
   * cache). Its poll fields may be older too; polls are decided by `registerPoll`, not from them.
   * Codes of the format before are not cached (they are few, and gone once they expire).
   */
  findDeviceGrantByDeviceCodeHash(deviceCodeHash: string): Promise<DeviceGrantRecord | undefined> {
    const at = deviceCodeHash.indexOf(DEVICE_CODE_KEY_SEPARATOR)
    if (at < 0) return this.#findByLegacyHash(deviceCodeHash)
    const id = deviceCodeHash.slice(0, at)
    const cached = this.#pending?.get(id)
    if (cached !== undefined)
      return Promise.resolve(constantTimeEqual(cached.deviceCodeHash, deviceCodeHash) ? withPollState({ ...cached }, this.#pollTimes) : undefined)
    return this.#ctx.guard(async () => {
      const ticket = this.#pending?.ticket()
      const row = this.#byId ? await this.#byId.load(id) : (await this.#hot.deviceGrantById.execute(this.#db, id))[0]
      if (row === undefined) return undefined
      const record = toDeviceGrant(row)
      if (!constantTimeEqual(record.deviceCodeHash, deviceCodeHash)) return undefined
      this.#seedPollTimes(row)
      if (ticket === undefined) return withPollState(record, this.#pollTimes)
      // The cache keeps `record`: the caller gets a copy.
      this.#pending!.offer(ticket, record)
      return withPollState({ ...record }, this.#pollTimes)
    })
  }

  /** The device grant of a `device_code` issued before the `<id>.<secret>` format, by its hash. */
  #findByLegacyHash(deviceCodeHash: string): Promise<DeviceGrantRecord | undefined> {
    return this.#ctx.guard(async () => {
      const [row] = await this.#hot.deviceGrantByLegacyHash.execute(this.#db, deviceCodeHash)
      if (row === undefined) return undefined
      this.#seedPollTimes(row)
      return withPollState(toDeviceGrant(row), this.#pollTimes)
    })
  }

  /** The poll path: a pending code is registered next; its poll state is in this row already. */
  #seedPollTimes(row: DeviceGrantRow): void {
    if (row.status === 'pending') this.#pollTimes.seed?.(row.id, { lastPolledAt: row.last_polled_at, intervalSeconds: row.interval_seconds })
  }

  findDeviceGrantByUserCode(userCode: string): Promise<DeviceGrantRecord | undefined> {
    return this.#ctx.guard(async () => {
      const row = await this.#db
        .selectFrom('device_grants')
        .selectAll()
        .where('user_code', '=', userCode)
        .executeTakeFirst()
      return row && toDeviceGrantRecord(row, this.#pollTimes)
    })
  }

  /**
   * RFC 8628 §3.5 `slow_down`, atomically: decided in memory (one process owns the database) or
   * in the shared ephemeral store of several instances, off the durable commit path; the rows get
   * the result within a second.
   * @throws {Error} when no device grant has this id.
   */
  registerPoll(id: string, now: number): Promise<{ tooFast: boolean; intervalSeconds: number }> {
    return this.#ctx.guard(() => this.#pollTimes.register(id, now))
  }

  decideDeviceGrant(
    id: string,
    decision: 'approved' | 'denied',
    subject: string,
    now: number,
    reviewer?: string,
  ): Promise<boolean> {
    return this.#ctx.guard(async () => {
      let update = this.#db
        .updateTable('device_grants')
        .set({ status: decision, subject, decided_at: now })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .where('expires_at', '>', now)
      if (reviewer !== undefined) update = update.where((eb) => unclaimedBy(eb, reviewer, now))
      const result = await update.executeTakeFirst()
      // This instance sees its own decision at once; the others when the notification arrives.
      if (result.numUpdatedRows > 0n) this.#pending?.forget(id)
      return result.numUpdatedRows > 0n
    })
  }

  /** One conditional update: `SET review_claim = ?, review_claim_until = ? WHERE pending AND (free OR mine OR run out)`. */
  claimDeviceGrantReview(id: string, reviewer: string, until: number, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .updateTable('device_grants')
        .set({ review_claim: reviewer, review_claim_until: until })
        .where('id', '=', id)
        .where('status', '=', 'pending')
        .where('expires_at', '>', now)
        .where((eb) => unclaimedBy(eb, reviewer, now))
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    })
  }

  moveDeviceGrantReviewClaims(from: string, to: string, now: number): Promise<number> {
    return this.#ctx.guard(async () => {
      const result = await this.#db
        .updateTable('device_grants')
        .set({ review_claim: to })
        .where('review_claim', '=', from)
        .where('status', '=', 'pending')
        .where('review_claim_until', '>', now)
        .executeTakeFirst()
      return Number(result.numUpdatedRows)
    })
  }

  redeemDeviceGrant(id: string, now: number, tokens: TokenBundle): Promise<boolean> {
    return this.#ctx.guard(() =>
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
        await this.#tokens.insertBundle(trx, tokens)
        return true
      }),
    )
  }

  listDeviceGrants(filter: DeviceGrantFilter, limit: number): Promise<DeviceGrantRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .selectFrom('device_grants')
        .selectAll()
        .where((eb) => deviceGrantFilterExpression(eb, filter))
        .orderBy('created_at')
        .orderBy('id')
        .limit(limit)
        .execute()
      return rows.map((row) => toDeviceGrantRecord(row, this.#pollTimes))
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
    return this.#ctx.guard(() =>
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
    return this.#ctx.guard(async () => {
      const row = await this.#db
        .selectFrom('device_grants')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('status', '=', 'pending')
        .where('expires_at', '>', now)
        .executeTakeFirstOrThrow()
      return Number(row.n)
    })
  }
}

// --- row mapping ---

/** Separates the id from the secret's hash in a device code's lookup key (`<id>.<hash>`). */
const DEVICE_CODE_KEY_SEPARATOR = '.'

/**
 * The row of a record. Its `deviceCodeHash` `<id>.<hash>` is kept as `hash` in
 * `device_secret_hash` (the row is found by `id`); a key without the separator whole in
 * `device_code_hash`.
 * @throws {TypeError} for a key with the separator whose part before it is not `g.id`.
 */
function deviceGrantRow(g: DeviceGrantRecord): DeviceGrantsTable {
  const at = g.deviceCodeHash.indexOf(DEVICE_CODE_KEY_SEPARATOR)
  if (at >= 0 && g.deviceCodeHash.slice(0, at) !== g.id)
    throw new TypeError(`device grant ${JSON.stringify(g.id)}: its device code key must start with its id and "${DEVICE_CODE_KEY_SEPARATOR}"`)
  return {
    id: g.id,
    device_code_hash: at < 0 ? g.deviceCodeHash : null,
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
    review_claim: null,
    review_claim_until: null,
    device_secret_hash: at < 0 ? null : g.deviceCodeHash.slice(at + 1),
  }
}

function toDeviceGrant(row: Selectable<DeviceGrantsTable>): DeviceGrantRecord {
  return {
    id: row.id,
    // Rows written before migration 021 by hand or by a store of the release before may hold the
    // whole key `<id>.<hash>` in `device_code_hash`: the same key either way.
    deviceCodeHash: row.device_secret_hash === null ? (row.device_code_hash ?? '') : row.id + DEVICE_CODE_KEY_SEPARATOR + row.device_secret_hash,
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

/** No live claim of another reviewer on the row: unclaimed, claimed by `reviewer`, or run out. */
function unclaimedBy(eb: ExpressionBuilder<DevicegateDatabase, 'device_grants'>, reviewer: string, now: number): Expression<SqlBool> {
  return eb.or([eb('review_claim', 'is', null), eb('review_claim', '=', reviewer), eb('review_claim_until', '<=', now)])
}
