/**
 * Migrations of Access reviews (src/reviews/).
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { type Kysely, type Migration } from 'kysely'

/**
 * Access reviews: campaigns of device-issued grants. Definitions made through the
 * admin API (configuration campaigns live in the file), their rounds and the items decided.
 */
export const reviews: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('review_campaigns')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('definition_json', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .execute()
    await db.schema
      .createTable('review_rounds')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('campaign_id', 'text', (c) => c.notNull())
      .addColumn('number', 'integer', (c) => c.notNull())
      .addColumn('opened_at', 'bigint', (c) => c.notNull())
      .addColumn('deadline_at', 'bigint', (c) => c.notNull())
      .addColumn('closed_at', 'bigint')
      .addColumn('close_reason', 'text')
      .addColumn('reminded_at', 'bigint')
      .addUniqueConstraint('review_rounds_campaign_number_uq', ['campaign_id', 'number'])
      .execute()
    await db.schema.createIndex('review_rounds_open_idx').on('review_rounds').columns(['closed_at', 'deadline_at']).execute()
    await db.schema
      .createTable('review_items')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('round_id', 'text', (c) => c.notNull())
      .addColumn('grant_id', 'text', (c) => c.notNull())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('subject', 'text')
      .addColumn('reviewers_json', 'text', (c) => c.notNull())
      .addColumn('default_action', 'text', (c) => c.notNull())
      .addColumn('facts_json', 'text', (c) => c.notNull())
      .addColumn('decision', 'text')
      .addColumn('decided_by', 'text')
      .addColumn('decided_at', 'bigint')
      .addColumn('decided_via', 'text')
      .addColumn('justification', 'text')
      .addColumn('revoked_at', 'bigint')
      .addUniqueConstraint('review_items_round_grant_uq', ['round_id', 'grant_id'])
      .execute()
    await db.schema.createIndex('review_items_round_idx').on('review_items').columns(['round_id', 'decision']).execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropTable('review_items').ifExists().execute()
    await db.schema.dropTable('review_rounds').ifExists().execute()
    await db.schema.dropTable('review_campaigns').ifExists().execute()
  },
}
