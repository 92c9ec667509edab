/**
 * Migrations of Governance (src/governance/): the audit log and its seals, anomalies, principal overrides, last use.
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { sql, type Kysely, type Migration } from 'kysely'
import { isPostgres } from './dialect.js'

/**
 * Governance: the hash-chained audit log with its chain-head row (the row every
 * appender locks, so appends are serialised across instances) and signed checkpoints; anomalies
 * with a de-duplication key; administrator overrides of configured users and clients
 * (disabled / deleted); last use of each token family; indexes for inventory and revocation.
 */
export const governance: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('audit_events')
      .addColumn('seq', 'bigint', (c) => c.primaryKey())
      .addColumn('time', 'bigint', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('actor', 'text')
      .addColumn('client_id', 'text')
      .addColumn('subject', 'text')
      .addColumn('ip', 'text')
      .addColumn('grant_id', 'text')
      // Canonical JSON (RFC 8785) of the details object.
      .addColumn('details', 'text', (c) => c.notNull())
      .addColumn('prev_hash', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('audit_events_time_idx').on('audit_events').column('time').execute()
    // One row (id = 1): the last appended seq and hash. Appenders update it first, which locks it.
    await db.schema
      .createTable('audit_head')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('seq', 'bigint', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .execute()
    await db.insertInto('audit_head').values({ id: 1, seq: 0, hash: '0'.repeat(64) }).execute()
    await db.schema
      .createTable('audit_checkpoints')
      .addColumn('seq', 'bigint', (c) => c.primaryKey())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('time', 'bigint', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .execute()
    await db.schema
      .createTable('anomalies')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('time', 'bigint', (c) => c.notNull())
      .addColumn('dedupe_key', 'text', (c) => c.unique())
      .addColumn('client_id', 'text')
      .addColumn('subject', 'text')
      .addColumn('grant_id', 'text')
      .addColumn('ip', 'text')
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('details', 'text', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('anomalies_time_idx').on('anomalies').column('time').execute()
    // Overrides of configured principals: kind 'user' | 'client', state 'disabled' | 'deleted'.
    await db.schema
      .createTable('principal_overrides')
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('changed_at', 'bigint', (c) => c.notNull())
      .addColumn('changed_by', 'text')
      .addPrimaryKeyConstraint('principal_overrides_pk', ['kind', 'id'])
      .execute()
    await db.schema.alterTable('grants').addColumn('last_used_at', 'bigint').execute()
    await db.schema.alterTable('grants').addColumn('last_used_ip', 'text').execute()
    await db.schema.createIndex('grants_created_at_idx').on('grants').column('created_at').execute()
    await db.schema.createIndex('grants_device_grant_id_idx').on('grants').column('device_grant_id').execute()
    await db.schema.createIndex('device_grants_created_at_idx').on('device_grants').column('created_at').execute()
    // The pending-device-codes gauge counts (status = 'pending', expires_at > now) at scrape time.
    await db.schema.createIndex('device_grants_status_expires_idx').on('device_grants').columns(['status', 'expires_at']).execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    for (const index of ['device_grants_status_expires_idx', 'device_grants_created_at_idx', 'grants_device_grant_id_idx', 'grants_created_at_idx'])
      await db.schema.dropIndex(index).ifExists().execute()
    await db.schema.alterTable('grants').dropColumn('last_used_ip').execute()
    await db.schema.alterTable('grants').dropColumn('last_used_at').execute()
    for (const table of ['principal_overrides', 'anomalies', 'audit_checkpoints', 'audit_head', 'audit_events'])
      await db.schema.dropTable(table).ifExists().execute()
  },
}
/**
 * Audit (hardening): a keyed seal per audit record (`<key id>.<HMAC-SHA256 over seq.hash>`), so
 * `audit verify` names the first rewritten record even when the chain was re-linked after it.
 * Nullable: older records have none.
 */
export const auditRecordMac: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('audit_events').addColumn('mac', 'text').execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('audit_events').dropColumn('mac').execute()
  },
}

/**
 * Audit log on SQLite (performance, issue 17): `audit_events.seq` becomes the table's rowid
 * (`INTEGER PRIMARY KEY`) instead of a `bigint` key with its own unique index. Every append wrote
 * that extra index, and an insert checked against a second unique key needs a statement journal
 * inside the shared (group-commit) transaction: measured, an appended record cost 27–48 µs of
 * SQLite CPU before and 18–22 µs after. Records, their `seq`, hashes and seals are copied
 * unchanged (the chain and `audit verify` see the same log); the other indexes and the triggers
 * on the table are re-created from their stored definitions. PostgreSQL keeps its table (a
 * `bigint` primary key there is the table's one index): nothing to do.
 *
 * A table rebuild: it copies the whole log once, inside the migration's transaction.
 */
export const auditSeqRowid: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    if (!isPostgres(db)) await rebuildAuditEvents(db, 'bigint primary key', 'integer primary key')
  },
  async down(db: Kysely<any>): Promise<void> {
    if (!isPostgres(db)) await rebuildAuditEvents(db, 'integer primary key', 'bigint primary key')
  },
}

/**
 * SQLite's table rebuild (https://www.sqlite.org/lang_altertable.html#otheralter) of
 * `audit_events` with the declaration of `seq` changed from `from` to `to`: new table, rows copied
 * in `seq` order, old table dropped (no trigger fires), new one renamed, then its indexes and
 * triggers re-created from `sqlite_master`.
 * @throws {Error} when the stored table definition does not declare `seq` as `from`.
 */
async function rebuildAuditEvents(db: Kysely<any>, from: string, to: string): Promise<void> {
  const objects = (await sql<{ type: string; sql: string }>`SELECT type, sql FROM sqlite_master WHERE tbl_name = 'audit_events' AND sql IS NOT NULL`.execute(db)).rows
  const table = objects.find((o) => o.type === 'table')
  const head = /^CREATE TABLE "audit_events" \("seq" ([a-z ]+),/i
  if (table === undefined || head.exec(table.sql)?.[1]?.toLowerCase() !== from)
    throw new Error(`audit_events: expected "seq" declared as ${from}, found: ${table?.sql ?? 'no table'}`)
  const columns = (await sql<{ name: string }>`SELECT name FROM pragma_table_info('audit_events') ORDER BY cid`.execute(db)).rows.map((c) => `"${c.name}"`).join(', ')
  await sql.raw(table.sql.replace(head, `CREATE TABLE "audit_events_rebuilt" ("seq" ${to},`)).execute(db)
  await sql.raw(`INSERT INTO "audit_events_rebuilt" (${columns}) SELECT ${columns} FROM "audit_events" ORDER BY "seq"`).execute(db)
  await sql`DROP TABLE "audit_events"`.execute(db)
  await sql`ALTER TABLE "audit_events_rebuilt" RENAME TO "audit_events"`.execute(db)
  for (const o of objects) if (o.type !== 'table') await sql.raw(o.sql).execute(db)
}
