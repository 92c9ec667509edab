/**
 * Migrations of the governance console (src/console/).
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { type Kysely, type Migration } from 'kysely'

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
