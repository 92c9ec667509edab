/**
 * Migrations of Conditional approval (src/policy/): MFA in sign-in sessions, posture and decisions, TOTP, storage classes.
 *
 * Bodies only: the order lives in ../migrations.ts. Never edit a landed migration; append a new one.
 */
import { type Kysely, type Migration } from 'kysely'

/**
 * Conditional approval: when the approver completed MFA in a sign-in session, the
 * posture and explained policy decision of each device authorization (matched rules, reason
 * codes, IP/country/ASN of both sides), and TOTP enrolments of built-in users (RFC 6238; the
 * secret must be readable to verify codes, so it is stored as is — protect the database).
 */
export const policyMfa: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('web_sessions').addColumn('mfa_at', 'bigint').execute()
    await db.schema
      .createTable('device_grant_policy')
      .addColumn('device_grant_id', 'text', (c) => c.primaryKey())
      .addColumn('posture_json', 'text')
      .addColumn('decision', 'text')
      .addColumn('explanation_json', 'text')
      .addColumn('decided_at', 'bigint')
      .execute()
    await db.schema
      .createTable('totp_secrets')
      .addColumn('username', 'text', (c) => c.primaryKey())
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('grants_subject_client_idx').on('grants').columns(['subject', 'client_id']).execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropIndex('grants_subject_client_idx').ifExists().execute()
    await db.schema.dropTable('totp_secrets').ifExists().execute()
    await db.schema.dropTable('device_grant_policy').ifExists().execute()
    await db.schema.alterTable('web_sessions').dropColumn('mfa_at').execute()
  },
}
/**
 * Storage rules: the token storage a client declared (`storage_class`) for each device
 * authorization, kept with the grant and updated when a refresh declares it again.
 */
export const storageClass: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable('grant_storage_classes')
      .addColumn('device_grant_id', 'text', (c) => c.primaryKey())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('storage_class', 'text', (c) => c.notNull())
      .addColumn('declared_at', 'bigint', (c) => c.notNull())
      .addColumn('redeclared_at', 'bigint')
      .execute()
    await db.schema.createIndex('grant_storage_classes_client_idx').on('grant_storage_classes').columns(['client_id', 'declared_at']).execute()
  },
  async down(db: Kysely<any>): Promise<void> {
    await db.schema.dropTable('grant_storage_classes').ifExists().execute()
  },
}
