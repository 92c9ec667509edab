/**
 * Migrations of the governance console (src/console/).
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { sql, type Kysely, type Migration } from 'kysely'

/**
 * Governance console: acknowledgements of anomalies (who, when, a note), and indexes
 * for the console's list pages and hourly charts (decisions by time, audit events by grant).
 */
export const consoleViews: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('console_anomaly_acks')
      .addColumn('anomaly_id', 'text', (c) => c.primaryKey())
      .addColumn('acknowledged_at', 'bigint', (c) => c.notNull())
      .addColumn('acknowledged_by', 'text', (c) => c.notNull())
      .addColumn('note', 'text', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('device_grants_decided_at_idx').on('device_grants').column('decided_at').execute()
    await db.schema.createIndex('device_grant_policy_decided_at_idx').on('device_grant_policy').column('decided_at').execute()
    await db.schema.createIndex('audit_events_grant_id_idx').on('audit_events').column('grant_id').execute()
    await db.schema.createIndex('anomalies_grant_id_idx').on('anomalies').column('grant_id').execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    for (const index of ['anomalies_grant_id_idx', 'audit_events_grant_id_idx', 'device_grant_policy_decided_at_idx', 'device_grants_decided_at_idx'])
      await db.schema.dropIndex(index).ifExists().execute()
    await db.schema.dropTable('console_anomaly_acks').ifExists().execute()
  },
}

/** The indexes {@link partialIndexes} narrows: table and column of each (one column each). */
const NULL_UNTIL_SET_INDEXES = [
  { name: 'device_grants_decided_at_idx', table: 'device_grants', column: 'decided_at' },
  { name: 'device_grants_review_claim_idx', table: 'device_grants', column: 'review_claim' },
  { name: 'audit_events_grant_id_idx', table: 'audit_events', column: 'grant_id' },
] as const

/**
 * Write path (performance, issue 17): three indexes whose column is NULL when the row is written
 * on the hot path become partial (`WHERE <column> IS NOT NULL`), so a device authorization and
 * its audit record no longer write them: `device_grants.decided_at` and `review_claim` (set at
 * approval / review claim, NULL at creation), `audit_events.grant_id` (NULL for the events of a
 * device authorization). Every query on these columns compares them (`decided_at >= ?`,
 * `review_claim = ?`, `grant_id = ?`), which implies `IS NOT NULL`, so SQLite and PostgreSQL
 * still use the index (test/migrations-partial-indexes.test.ts checks the query plans).
 */
export const partialIndexes: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    for (const i of NULL_UNTIL_SET_INDEXES) {
      await db.schema.dropIndex(i.name).ifExists().execute()
      await db.schema.createIndex(i.name).on(i.table).column(i.column).where(sql.ref(i.column), 'is not', null).execute()
    }
  },
  async down(db: Kysely<any>): Promise<void> {
    for (const i of NULL_UNTIL_SET_INDEXES) {
      await db.schema.dropIndex(i.name).ifExists().execute()
      await db.schema.createIndex(i.name).on(i.table).column(i.column).execute()
    }
  },
}
