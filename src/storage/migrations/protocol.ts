/**
 * Migrations of the device flow and its tokens (src/core/, src/protocol/): device authorizations, token families, web sessions, rate counters, signing keys and server secrets, DPoP replay, trusted devices, refresh rotation, the ephemeral state of several instances, and the device grant change notifications.
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { PostgresAdapter, sql, type Kysely, type Migration, type SqlBool } from 'kysely'
import { isPostgres } from './dialect.js'

export const initial: Migration = {
  // Kysely recommends `Kysely<any>` in migrations: they must not depend on today's types.
  async up(db: Kysely<any>): Promise<void> {
    // RFC 8628 §3.1–3.5: one row per device authorization request.
    await db.schema
      .createTable('device_grants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('device_code_hash', 'text', (c) => c.notNull().unique())
      .addColumn('user_code', 'text', (c) => c.notNull().unique())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('interval_seconds', 'integer', (c) => c.notNull())
      .addColumn('last_polled_at', 'bigint')
      .addColumn('subject', 'text')
      .addColumn('decided_at', 'bigint')
      .addColumn('request_ip', 'text', (c) => c.notNull())
      .addColumn('request_user_agent', 'text')
      .addColumn('dpop_jkt', 'text')
      // No foreign key: the grant row is written after this one is marked redeemed.
      .addColumn('grant_id', 'text')
      .execute()

    // Token families (RFC 9700 §4.14.2). Revocation is judged here, through a join.
    await db.schema
      .createTable('grants')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('subject', 'text')
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('revoked_at', 'bigint')
      .addColumn('device_grant_id', 'text')
      .addColumn('expires_at', 'bigint')
      .addColumn('dpop_jkt', 'text')
      .execute()
    await db.schema.createIndex('grants_subject_idx').on('grants').column('subject').execute()
    await db.schema.createIndex('grants_client_id_idx').on('grants').column('client_id').execute()

    await db.schema
      .createTable('access_tokens')
      .addColumn('token_hash', 'text', (c) => c.primaryKey())
      .addColumn('jti', 'text', (c) => c.notNull())
      .addColumn('grant_id', 'text', (c) => c.notNull().references('grants.id'))
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('subject', 'text')
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('issued_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('revoked_at', 'bigint')
      .addColumn('format', 'text', (c) => c.notNull())
      .addColumn('dpop_jkt', 'text')
      .execute()
    await db.schema
      .createIndex('access_tokens_grant_id_idx')
      .on('access_tokens')
      .column('grant_id')
      .execute()

    await db.schema
      .createTable('refresh_tokens')
      .addColumn('token_hash', 'text', (c) => c.primaryKey())
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('grant_id', 'text', (c) => c.notNull().references('grants.id'))
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('subject', 'text')
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('issued_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint')
      .addColumn('rotated_at', 'bigint')
      .addColumn('revoked_at', 'bigint')
      .addColumn('dpop_jkt', 'text')
      .execute()
    await db.schema
      .createIndex('refresh_tokens_grant_id_idx')
      .on('refresh_tokens')
      .column('grant_id')
      .execute()

    await db.schema
      .createTable('web_sessions')
      .addColumn('id_hash', 'text', (c) => c.primaryKey())
      .addColumn('csrf_token', 'text', (c) => c.notNull())
      .addColumn('subject', 'text')
      .addColumn('auth_time', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute()

    // Fixed-window counters: one row per (key, window length, window start).
    await db.schema
      .createTable('rate_counters')
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('window_seconds', 'integer', (c) => c.notNull())
      .addColumn('window_start', 'bigint', (c) => c.notNull())
      .addColumn('hits', 'integer', (c) => c.notNull())
      // window_start + window_seconds, so purging is a plain range delete.
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('rate_counters_pk', ['key', 'window_seconds', 'window_start'])
      .execute()

    await db.schema
      .createTable('signing_keys')
      .addColumn('kid', 'text', (c) => c.primaryKey())
      .addColumn('alg', 'text', (c) => c.notNull())
      .addColumn('public_jwk', 'text', (c) => c.notNull())
      .addColumn('private_jwk', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('retired_at', 'bigint')
      .addColumn('publish_until', 'bigint')
      .execute()

    // RFC 9449 §11.1 replay cache.
    await db.schema
      .createTable('dpop_jtis')
      .addColumn('jti', 'text', (c) => c.primaryKey())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    for (const table of [
      'dpop_jtis',
      'signing_keys',
      'rate_counters',
      'web_sessions',
      'refresh_tokens',
      'access_tokens',
      'grants',
      'device_grants',
    ]) {
      await db.schema.dropTable(table).ifExists().execute()
    }
  },
}
/**
 * DPoP and audience restriction: server-wide secrets (the DPoP nonce key, RFC 9449
 * §8), resource indicators on device grants, families and access tokens (RFC 8707), the trusted
 * device registry keyed by DPoP key thumbprint (RFC 7638), and indexes for the revocation feed.
 */
export const dpopResourcesDevices: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('server_secrets')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute()
    // RFC 8707 resource indicators, space-delimited absolute URIs (a URI has no spaces); null = none.
    await db.schema.alterTable('device_grants').addColumn('resources', 'text').execute()
    await db.schema.alterTable('grants').addColumn('resources', 'text').execute()
    await db.schema.alterTable('access_tokens').addColumn('resources', 'text').execute()
    await db.schema
      .createTable('devices')
      .addColumn('jkt', 'text', (c) => c.primaryKey())
      .addColumn('label', 'text', (c) => c.notNull())
      .addColumn('registered_at', 'bigint', (c) => c.notNull())
      .addColumn('registered_by', 'text')
      .addColumn('retired_at', 'bigint')
      .execute()
    await db.schema.createIndex('grants_dpop_jkt_idx').on('grants').column('dpop_jkt').execute()
    await db.schema.createIndex('grants_revoked_at_idx').on('grants').column('revoked_at').execute()
    await db.schema.createIndex('access_tokens_revoked_at_idx').on('access_tokens').column('revoked_at').execute()
    await db.schema.createIndex('access_tokens_dpop_jkt_idx').on('access_tokens').column('dpop_jkt').execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    for (const index of ['access_tokens_dpop_jkt_idx', 'access_tokens_revoked_at_idx', 'grants_revoked_at_idx', 'grants_dpop_jkt_idx'])
      await db.schema.dropIndex(index).ifExists().execute()
    await db.schema.dropTable('devices').ifExists().execute()
    await db.schema.alterTable('access_tokens').dropColumn('resources').execute()
    await db.schema.alterTable('grants').dropColumn('resources').execute()
    await db.schema.alterTable('device_grants').dropColumn('resources').execute()
    await db.schema.dropTable('server_secrets').ifExists().execute()
  },
}
/**
 * Refresh retries (RFC 9700 §4.14.2 with a rotation leeway): who rotated a refresh token
 * (`rotated_jkt`, the DPoP key of that request) and the token that replaced it (`replaced_by`),
 * so a sender-constrained retry within the grace period is recognised and answered instead of
 * being taken for reuse.
 */
export const refreshRotationGrace: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    // One column per statement: SQLite's ALTER TABLE adds one at a time.
    await db.schema.alterTable('refresh_tokens').addColumn('rotated_jkt', 'text').execute()
    await db.schema.alterTable('refresh_tokens').addColumn('replaced_by', 'text').execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('refresh_tokens').dropColumn('replaced_by').execute()
    await db.schema.alterTable('refresh_tokens').dropColumn('rotated_jkt').execute()
  },
}
/**
 * Ephemeral state of several instances off the durable commit path (`ephemeral.ts`), PostgreSQL
 * only (SQLite keeps poll times in the process, and its commits are cheap): the RFC 8628 §3.5
 * poll times get their own UNLOGGED table, and the RFC 9449 §11.1 `dpop_jtis` become UNLOGGED.
 * Writes to UNLOGGED tables skip the WAL and so wait for no flush; PostgreSQL empties them after
 * a crash and does not replicate them (README "Ephemeral state" says what that loses).
 */
export const ephemeralUnlogged: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return
    // The statement's text (its inner indentation too) is pinned byte for byte by
    // test/migrations-list.test.ts: landed migrations must run the SQL they always ran.
    await sql`create unlogged table device_poll_times (
        id text primary key,
        last_polled_at bigint not null,
        interval_seconds integer not null,
        too_fast boolean not null,
        expires_at bigint not null
      )`.execute(db)
    await sql`create index device_poll_times_expires_at_idx on device_poll_times (expires_at)`.execute(db)
    await sql`alter table dpop_jtis set unlogged`.execute(db)
  },
  async down(db: Kysely<any>): Promise<void> {
    if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return
    await sql`alter table dpop_jtis set logged`.execute(db)
    await sql`drop table if exists device_poll_times`.execute(db)
  },
}

/**
 * PostgreSQL only: a change of a device grant's status (approval, denial, redemption; by any
 * instance or by hand) is announced on the channel `devicegate_device_grants` with the payload
 * `<schema> <device grant id>`, sent when the transaction commits, so that every instance's cache
 * of pending device grants forgets it (`../pending-grant-cache.ts`, `../postgres-listen.ts`).
 * Updates that leave the status alone (poll times, review claims) fire nothing. SQLite: nothing
 * (one process owns the database and reads it on every poll).
 */
export const deviceGrantChanges: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    if (!isPostgres(db)) return
    await sql`create function device_grant_status_changed() returns trigger language plpgsql as $$
begin
  perform pg_notify('devicegate_device_grants', tg_table_schema || ' ' || new.id);
  return null;
end
$$`.execute(db)
    await sql`create trigger device_grants_status_changed after update of status on device_grants
      for each row when (old.status is distinct from new.status) execute function device_grant_status_changed()`.execute(db)
  },
  async down(db: Kysely<any>): Promise<void> {
    if (!isPostgres(db)) return
    await sql`drop trigger if exists device_grants_status_changed on device_grants`.execute(db)
    await sql`drop function if exists device_grant_status_changed()`.execute(db)
  },
}

/** The columns of `device_grants` before {@link deviceCodeById}, in their order (SQLite rebuild). */
const DEVICE_GRANT_COLUMNS_BEFORE_021 = [
  'id', 'device_code_hash', 'user_code', 'client_id', 'scope', 'status', 'created_at', 'expires_at', 'interval_seconds',
  'last_polled_at', 'subject', 'decided_at', 'request_ip', 'request_user_agent', 'dpop_jkt', 'grant_id', 'resources',
  'review_claim', 'review_claim_until',
] as const

/** SQL condition: the row's `device_code_hash` is `<id>.<hash>`, the key of a code `<id>.<secret>`. */
const KEYED_BY_ID = sql<SqlBool>`substr(device_code_hash, 1, length(id) + 1) = id || '.'`

/**
 * Device codes found by the device grant's id (RFC 8628 §3.4; write path of a device
 * authorization): a code `<id>.<secret>` is looked up by `<id>`, the primary key, and its key
 * compared whole in constant time, so its secret's hash needs no index of its own. It moves to a
 * new column, `device_secret_hash` (the SHA-256 hex of the secret, no index); `device_code_hash`
 * keeps only the keys of codes issued before that format (the SHA-256 hex of the whole code) and is
 * null otherwise, and its unique index becomes partial (`WHERE device_code_hash IS NOT NULL`): a
 * device authorization writes one B-tree less. A lookup `device_code_hash = ?` implies the
 * condition, so it still searches that index. Rows whose `device_code_hash` is `<id>.<hash>` are
 * converted (their codes keep working, and a replayed redeemed code is still recognised).
 *
 * The table stays a rowid table on SQLite: as WITHOUT ROWID (one B-tree instead of the table and
 * its primary key's index) a device authorization wrote about 10 % more bytes and took more CPU,
 * measured (bench/device-grant-writes.mjs), as every other index of the table then holds the
 * 26-character id instead of the rowid, and the rows are wide.
 *
 * SQLite cannot drop a column's UNIQUE constraint nor its NOT NULL, so the table is rebuilt
 * (https://www.sqlite.org/lang_altertable.html#otheralter) in one transaction: new table, rows
 * copied and converted, old table dropped, new one renamed, its indexes re-created.
 *
 * During a rolling upgrade of several instances on PostgreSQL, an instance of the release before
 * cannot find the codes an upgraded instance issued (it looks them up by `device_code_hash`):
 * upgrade them together. Upgraded instances do find the codes the others issued.
 */
export const deviceCodeById: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    if (!isPostgres(db)) return rebuildDeviceGrants(db, 'up')
    await db.schema.alterTable('device_grants').addColumn('device_secret_hash', 'text').execute()
    await db.schema.alterTable('device_grants').alterColumn('device_code_hash', (c) => c.dropNotNull()).execute()
    await db.schema.alterTable('device_grants').dropConstraint('device_grants_device_code_hash_key').execute()
    await db
      .updateTable('device_grants')
      .set({ device_secret_hash: sql`substr(device_code_hash, length(id) + 2)`, device_code_hash: null })
      .where(KEYED_BY_ID)
      .execute()
    await db.schema
      .createIndex('device_grants_device_code_hash_idx')
      .unique()
      .on('device_grants')
      .column('device_code_hash')
      .where(sql.ref('device_code_hash'), 'is not', null)
      .execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    if (!isPostgres(db)) return rebuildDeviceGrants(db, 'down')
    await db
      .updateTable('device_grants')
      .set({ device_code_hash: sql`id || '.' || device_secret_hash` })
      .where('device_secret_hash', 'is not', null)
      .execute()
    await db.schema.dropIndex('device_grants_device_code_hash_idx').ifExists().execute()
    await db.schema.alterTable('device_grants').addUniqueConstraint('device_grants_device_code_hash_key', ['device_code_hash']).execute()
    await db.schema.alterTable('device_grants').alterColumn('device_code_hash', (c) => c.setNotNull()).execute()
    await db.schema.alterTable('device_grants').dropColumn('device_secret_hash').execute()
  },
}

/**
 * SQLite's table rebuild of `device_grants` for {@link deviceCodeById}: `up` to the new layout
 * (`device_code_hash` nullable and indexed only where set, `device_secret_hash` added), `down`
 * back to the layout before (`device_code_hash` not null and unique, holding `<id>.<hash>` again).
 * One transaction; the other indexes (and any trigger) are re-created from `sqlite_master`.
 * @throws {Error} when the table's columns are not those the direction starts from.
 */
async function rebuildDeviceGrants(db: Kysely<any>, direction: 'up' | 'down'): Promise<void> {
  const expected = direction === 'up' ? [...DEVICE_GRANT_COLUMNS_BEFORE_021] : [...DEVICE_GRANT_COLUMNS_BEFORE_021, 'device_secret_hash']
  const columns = (await sql<{ name: string }>`SELECT name FROM pragma_table_info('device_grants') ORDER BY cid`.execute(db)).rows.map((c) => c.name)
  if (columns.join() !== expected.join()) throw new Error(`device_grants: expected the columns ${expected.join(', ')}, found: ${columns.join(', ')}`)
  const objects = (
    await sql<{ name: string; sql: string }>`SELECT name, sql FROM sqlite_master WHERE tbl_name = 'device_grants' AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name`.execute(db)
  ).rows.filter((o) => o.name !== 'device_grants_device_code_hash_idx')
  // One transaction (in the store, a savepoint of its shared transaction): all of it or nothing.
  await db.transaction().execute(async (trx) => {
    let table = trx.schema
      .createTable('device_grants_rebuilt')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('device_code_hash', 'text', (c) => (direction === 'up' ? c : c.notNull().unique()))
      .addColumn('user_code', 'text', (c) => c.notNull().unique())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('interval_seconds', 'integer', (c) => c.notNull())
      .addColumn('last_polled_at', 'bigint')
      .addColumn('subject', 'text')
      .addColumn('decided_at', 'bigint')
      .addColumn('request_ip', 'text', (c) => c.notNull())
      .addColumn('request_user_agent', 'text')
      .addColumn('dpop_jkt', 'text')
      .addColumn('grant_id', 'text')
      .addColumn('resources', 'text')
      .addColumn('review_claim', 'text')
      .addColumn('review_claim_until', 'bigint')
    if (direction === 'up') table = table.addColumn('device_secret_hash', 'text')
    await table.execute()
    const rest = sql.join(DEVICE_GRANT_COLUMNS_BEFORE_021.slice(2).map((c) => sql.ref(c)))
    if (direction === 'up')
      await sql`INSERT INTO device_grants_rebuilt (id, device_code_hash, ${rest}, device_secret_hash)
        SELECT id, CASE WHEN ${KEYED_BY_ID} THEN NULL ELSE device_code_hash END, ${rest},
          CASE WHEN ${KEYED_BY_ID} THEN substr(device_code_hash, length(id) + 2) END
        FROM device_grants ORDER BY id`.execute(trx)
    else
      await sql`INSERT INTO device_grants_rebuilt (id, device_code_hash, ${rest})
        SELECT id, coalesce(device_code_hash, id || '.' || device_secret_hash), ${rest} FROM device_grants ORDER BY id`.execute(trx)
    await sql`DROP TABLE device_grants`.execute(trx)
    await sql`ALTER TABLE device_grants_rebuilt RENAME TO device_grants`.execute(trx)
    for (const o of objects) await sql.raw(o.sql).execute(trx)
    if (direction === 'up')
      await trx.schema
        .createIndex('device_grants_device_code_hash_idx')
        .unique()
        .on('device_grants')
        .column('device_code_hash')
        .where(sql.ref('device_code_hash'), 'is not', null)
        .execute()
  })
}
