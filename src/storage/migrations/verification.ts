/**
 * Migrations of the verification pages (src/verification/, src/web/): user-code entry limits and review claims.
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { type Kysely, type Migration } from 'kysely'

/**
 * Sliding-window rate limits (user-code entry, RFC 8628 §5.1): one row per slot of a key, holding
 * when it was last taken; see `rate-slots.ts`.
 */
export const rateSlots: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('rate_slots')
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('slot', 'integer', (c) => c.notNull())
      .addColumn('taken_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('rate_slots_pk', ['key', 'slot'])
      .execute()
    await db.schema.createIndex('rate_slots_taken_at_idx').on('rate_slots').column('taken_at').execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropTable('rate_slots').ifExists().execute()
  },
}
/**
 * A pending device authorization is claimed by the browser session that reviews it: only that
 * session may decide it while the claim lasts (see `claimDeviceGrantReview`).
 */
export const reviewClaims: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('device_grants').addColumn('review_claim', 'text').execute()
    await db.schema.alterTable('device_grants').addColumn('review_claim_until', 'bigint').execute()
    await db.schema.createIndex('device_grants_review_claim_idx').on('device_grants').column('review_claim').execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropIndex('device_grants_review_claim_idx').ifExists().execute()
    await db.schema.alterTable('device_grants').dropColumn('review_claim_until').execute()
    await db.schema.alterTable('device_grants').dropColumn('review_claim').execute()
  },
}
