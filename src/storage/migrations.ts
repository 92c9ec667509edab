/**
 * Schema migrations shared by the SQLite and PostgreSQL adapters.
 *
 * Written once with Kysely's schema builder, using only types both databases understand:
 * `text` for identifiers, hashes, status and JSON text; `bigint` for epoch seconds (SQLite gives
 * it INTEGER affinity; the PostgreSQL pool parses int8 back to `number`); `integer` for small
 * counts (`interval_seconds`, `hits`). Every lookup column of the hot path is indexed.
 *
 * Migrations are append-only: never edit a released one, add the next. They are one ordered list
 * (each release's migration touches several domains); the tables by domain, and the migrations
 * that created or changed them:
 *
 * - device grants (`device-grants.ts`): `device_grants` — 0001; `resources` 002
 * - token families (`token-families.ts`): `grants`, `access_tokens`, `refresh_tokens` — 0001;
 *   `resources` 002; revocation-feed indexes 002; `last_used_at` / `last_used_ip` 003; index 004;
 *   `refresh_tokens.rotated_jkt` / `replaced_by` 006
 * - web sessions (`web-sessions.ts`): `web_sessions` — 0001; `mfa_at` 004
 * - rate counters (`rate-counters.ts`): `rate_counters` — 0001
 * - keys and secrets (`keys-and-secrets.ts`): `signing_keys` — 0001; `server_secrets` — 002
 * - DPoP replay (`dpop-replay.ts`): `dpop_jtis` — 0001; UNLOGGED on PostgreSQL 008
 * - ephemeral state of several instances (`ephemeral.ts`): `device_poll_times` (PostgreSQL only,
 *   UNLOGGED) — 008
 * - trusted devices (`trusted-devices.ts`): `devices` — 002
 * - audit log (`audit-log.ts`): `audit_events`, `audit_head`, `audit_checkpoints` — 003, 007 (record seals)
 * - governance records (`governance-records.ts`): `anomalies`, `principal_overrides` — 003
 * - conditional approval (`conditional-approval.ts`): `device_grant_policy`, `totp_secrets` — 004
 * - storage classes (`storage-classes.ts`): `grant_storage_classes` — 013
 * - access reviews (`access-reviews.ts`): `review_campaigns`, `review_rounds`, `review_items` — 014
 * - governance console (`console-views.ts`): `console_anomaly_acks` — 012; indexes for its lists
 *   and charts on `device_grants`, `device_grant_policy`, `audit_events`, `anomalies` — 012
 * - people (`people.ts`): `people`, `people_groups`, `people_group_members`, `upstream_logins`,
 *   `security_events_received`, `device_compliance` — 010
 * - rate slots (`rate-slots.ts`): `rate_slots` — 005_rate_slots
 *
 * A new domain appends its own migration at the end and adds its line here.
 */
import { Migrator, PostgresAdapter, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely'
import { signalsMigration, signalsReviewEventsMigration, signalsSecretsMigration } from './signals-migration.js'

/** All migrations in order. Keys sort lexicographically; Kysely applies them in that order. */
export const migrations: Record<string, Migration> = {
  '0001_initial': {
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
  },
  /**
   * DPoP and audience restriction: server-wide secrets (the DPoP nonce key, RFC 9449
   * §8), resource indicators on device grants, families and access tokens (RFC 8707), the trusted
   * device registry keyed by DPoP key thumbprint (RFC 7638), and indexes for the revocation feed.
   */
  '002_dpop_resources_devices': {
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
  },
  /**
   * Governance: the hash-chained audit log with its chain-head row (the row every
   * appender locks, so appends are serialised across instances) and signed checkpoints; anomalies
   * with a de-duplication key; administrator overrides of configured users and clients
   * (disabled / deleted); last use of each token family; indexes for inventory and revocation.
   */
  '003_governance': {
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
  },
  /**
   * Conditional approval: when the approver completed MFA in a sign-in session, the
   * posture and explained policy decision of each device authorization (matched rules, reason
   * codes, IP/country/ASN of both sides), and TOTP enrolments of built-in users (RFC 6238; the
   * secret must be readable to verify codes, so it is stored as is — protect the database).
   */
  '004_policy_mfa': {
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
  },
  /**
   * Sliding-window rate limits (user-code entry, RFC 8628 §5.1): one row per slot of a key, holding
   * when it was last taken; see `rate-slots.ts`.
   */
  '005_rate_slots': {
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
  },
  /**
   * A pending device authorization is claimed by the browser session that reviews it: only that
   * session may decide it while the claim lasts (see `claimDeviceGrantReview`).
   */
  '005_review_claims': {
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
  },
  /**
   * Refresh retries (RFC 9700 §4.14.2 with a rotation leeway): who rotated a refresh token
   * (`rotated_jkt`, the DPoP key of that request) and the token that replaced it (`replaced_by`),
   * so a sender-constrained retry within the grace period is recognised and answered instead of
   * being taken for reuse.
   */
  '006_refresh_rotation_grace': {
    async up(db: Kysely<any>): Promise<void> {
      // One column per statement: SQLite's ALTER TABLE adds one at a time.
      await db.schema.alterTable('refresh_tokens').addColumn('rotated_jkt', 'text').execute()
      await db.schema.alterTable('refresh_tokens').addColumn('replaced_by', 'text').execute()
    },
    async down(db: Kysely<any>): Promise<void> {
      await db.schema.alterTable('refresh_tokens').dropColumn('replaced_by').execute()
      await db.schema.alterTable('refresh_tokens').dropColumn('rotated_jkt').execute()
    },
  },
  /**
   * Audit (hardening): a keyed seal per audit record (`<key id>.<HMAC-SHA256 over seq.hash>`), so
   * `audit verify` names the first rewritten record even when the chain was re-linked after it.
   * Nullable: older records have none.
   */
  '007_audit_record_mac': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema.alterTable('audit_events').addColumn('mac', 'text').execute()
    },
    async down(db: Kysely<any>): Promise<void> {
      await db.schema.alterTable('audit_events').dropColumn('mac').execute()
    },
  },
  /**
   * Ephemeral state of several instances off the durable commit path (`ephemeral.ts`), PostgreSQL
   * only (SQLite keeps poll times in the process, and its commits are cheap): the RFC 8628 §3.5
   * poll times get their own UNLOGGED table, and the RFC 9449 §11.1 `dpop_jtis` become UNLOGGED.
   * Writes to UNLOGGED tables skip the WAL and so wait for no flush; PostgreSQL empties them after
   * a crash and does not replicate them (README "Ephemeral state" says what that loses).
   */
  '008_ephemeral_unlogged': {
    async up(db: Kysely<any>): Promise<void> {
      if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return
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
  },
  /**
   * Identity: people and groups (configured, signed in upstream, provisioned by SCIM),
   * sign-in transactions with upstream OpenID Connect providers, the `jti`s of Security Event
   * Tokens already processed (RFC 8417 §2.2; retransmissions are acknowledged, applied once), and
   * device compliance reported by Shared Signals transmitters. See `src/identity/`.
   */
  '010_identity': {
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
  },
  // Signals (OpenID Connect context, outbox, Shared Signals streams, webhooks): signals-migration.ts.
  '011_signals': signalsMigration,
  /**
   * Governance console: acknowledgements of anomalies (who, when, a note), and indexes
   * for the console's list pages and hourly charts (decisions by time, audit events by grant).
   */
  '012_console': {
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
  },
  '013_storage_class': {
    // Storage rules: the token storage a client declared (`storage_class`) for each device
    // authorization, kept with the grant and updated when a refresh declares it again.
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
  },
  '014_reviews': {
    // Access reviews: campaigns of device-issued grants. Definitions made through the
    // admin API (configuration campaigns live in the file), their rounds and the items decided.
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
  },
  '015_signals_review_events': signalsReviewEventsMigration,
  '016_signals_secrets': signalsSecretsMigration,
}

const provider: MigrationProvider = { getMigrations: async () => migrations }

/**
 * Applies every pending migration. Idempotent, and safe when several instances start at once
 * (Kysely takes a lock row in `kysely_migration_lock`).
 *
 * @param options.migrationTableSchema PostgreSQL only: the schema holding Kysely's bookkeeping
 *   tables. Pass the connection's `current_schema()` so that `kysely_migration` tables in other
 *   schemas of the same database are not mistaken for ours.
 * @throws the first migration error, unchanged (adapters map it to a store error).
 */
export async function migrateToLatest(
  db: Kysely<any>,
  options: { migrationTableSchema?: string } = {},
): Promise<void> {
  const migrator = new Migrator({
    db,
    provider,
    ...(options.migrationTableSchema ? { migrationTableSchema: options.migrationTableSchema } : {}),
  })
  const { error } = await migrator.migrateToLatest()
  if (error !== undefined) throw error
}
