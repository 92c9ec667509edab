/**
 * Migrations of People and groups (src/identity/).
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { type Kysely, type Migration } from 'kysely'

/**
 * Identity: people and groups (configured, signed in upstream, provisioned by SCIM),
 * sign-in transactions with upstream OpenID Connect providers, the `jti`s of Security Event
 * Tokens already processed (RFC 8417 §2.2; retransmissions are acknowledged, applied once), and
 * device compliance reported by Shared Signals transmitters. See `src/identity/`.
 */
export const identity: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('people')
      // Stable local identifier, the `sub` of tokens: the username for configured people, a
      // random UUID for people created by SCIM or an upstream sign-in (never reassigned).
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_name', 'text', (c) => c.notNull())
      .addColumn('display_name', 'text')
      .addColumn('email', 'text')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('source', 'text', (c) => c.notNull())
      // JSON array: groups from configuration or the upstream provider's claim.
      .addColumn('groups_json', 'text', (c) => c.notNull())
      .addColumn('risk', 'integer', (c) => c.notNull())
      .addColumn('upstream_issuer', 'text')
      .addColumn('upstream_sub', 'text')
      .addColumn('external_id', 'text')
      .addColumn('manager', 'text')
      .addColumn('password_hash', 'text')
      .addColumn('password_changed_at', 'bigint')
      // JSON object: the other SCIM attributes as last written (name, emails, title, …).
      .addColumn('scim_json', 'text')
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('people_upstream_idx').on('people').columns(['upstream_issuer', 'upstream_sub']).unique().execute()
    await db.schema.createIndex('people_user_name_idx').on('people').column('user_name').execute()
    await db.schema.createIndex('people_external_id_idx').on('people').column('external_id').execute()
    await db.schema.createIndex('people_email_idx').on('people').column('email').execute()
    await db.schema
      .createTable('people_groups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('display_name', 'text', (c) => c.notNull().unique())
      .addColumn('external_id', 'text')
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute()
    await db.schema
      .createTable('people_group_members')
      .addColumn('group_id', 'text', (c) => c.notNull())
      .addColumn('person_id', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('people_group_members_pk', ['group_id', 'person_id'])
      .execute()
    await db.schema.createIndex('people_group_members_person_idx').on('people_group_members').column('person_id').execute()
    await db.schema
      .createTable('upstream_logins')
      .addColumn('state_hash', 'text', (c) => c.primaryKey())
      .addColumn('provider', 'text', (c) => c.notNull())
      .addColumn('nonce', 'text', (c) => c.notNull())
      .addColumn('code_verifier', 'text', (c) => c.notNull())
      .addColumn('return_to', 'text', (c) => c.notNull())
      .addColumn('step_up', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute()
    await db.schema
      .createTable('security_events_received')
      .addColumn('issuer', 'text', (c) => c.notNull())
      .addColumn('jti', 'text', (c) => c.notNull())
      .addColumn('received_at', 'bigint', (c) => c.notNull())
      .addColumn('event_types', 'text', (c) => c.notNull())
      .addColumn('effect', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('security_events_received_pk', ['issuer', 'jti'])
      .execute()
    await db.schema
      .createTable('device_compliance')
      .addColumn('device_id', 'text', (c) => c.primaryKey())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('issuer', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    for (const t of ['device_compliance', 'security_events_received', 'upstream_logins', 'people_group_members', 'people_groups', 'people'])
      await db.schema.dropTable(t).ifExists().execute()
  },
}
