/**
 * Schema migrations shared by the SQLite and PostgreSQL adapters: the ONE ordered list.
 *
 * Written once with Kysely's schema builder, using only types both databases understand:
 * `text` for identifiers, hashes, status and JSON text; `bigint` for epoch seconds (SQLite gives
 * it INTEGER affinity; the PostgreSQL pool parses int8 back to `number`); `integer` for small
 * counts (`interval_seconds`, `hits`). Every lookup column of the hot path is indexed.
 *
 * Each migration's body lives in the file of the domain it serves, `migrations/<domain>.ts`; this
 * file only says in which order they run. Migrations are append-only: never edit, reorder or
 * rename a landed one (databases in the field recorded these keys in `kysely_migration`; the SQL
 * each one runs is pinned by test/migrations-list.test.ts). To add one, see the end of the list.
 *
 * The tables by domain, and the migrations that created or changed them:
 *
 * - device grants (`device-grants.ts`): `device_grants` — 0001; `resources` 002; review claims
 *   005_review_claims; the status-change notification trigger (PostgreSQL) 020; `device_secret_hash`,
 *   `device_code_hash` nullable and its unique index partial 021
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
 * - audit log (`audit-log.ts`): `audit_events`, `audit_head`, `audit_checkpoints` — 003, 007 (record seals),
 *   017 (`seq` the rowid on SQLite)
 * - governance records (`governance-records.ts`): `anomalies`, `principal_overrides` — 003
 * - conditional approval (`conditional-approval.ts`): `device_grant_policy`, `totp_secrets` — 004
 * - storage classes (`storage-classes.ts`): `grant_storage_classes` — 013
 * - access reviews (`access-reviews.ts`): `review_campaigns`, `review_rounds`, `review_items` — 014
 * - governance console (`console-views.ts`): `console_anomaly_acks` — 012; indexes for its lists
 *   and charts on `device_grants`, `device_grant_policy`, `audit_events`, `anomalies` — 012; three
 *   of them partial 018
 * - people (`people.ts`): `people`, `people_groups`, `people_group_members`, `upstream_logins`,
 *   `security_events_received`, `device_compliance` — 010
 * - signals (`signals.ts`, `oidc-context.ts`): `oidc_auth_context`, `signal_outbox`,
 *   `signal_destinations`, `signal_subjects`, `signal_deliveries` and their triggers — 011; the
 *   access-review trigger on `audit_events` 015, its condition without an IN list on SQLite 019
 * - rate slots (`rate-slots.ts`): `rate_slots` — 005_rate_slots
 *
 * A new domain appends its own migration at the end and adds its line here.
 */
import { Migrator, type Kysely, type Migration, type MigrationProvider } from 'kysely'
import * as consoleDomain from './migrations/console.js'
import * as governance from './migrations/governance.js'
import * as identity from './migrations/identity.js'
import * as policy from './migrations/policy.js'
import * as protocol from './migrations/protocol.js'
import * as reviews from './migrations/reviews.js'
import * as signals from './migrations/signals.js'
import * as verification from './migrations/verification.js'

/**
 * All migrations in order. Keys sort lexicographically; Kysely applies them in that order, and
 * records each key it applied: a key, once landed, never changes.
 */
export const migrations: Record<string, Migration> = {
  '0001_initial': protocol.initial,
  '002_dpop_resources_devices': protocol.dpopResourcesDevices,
  '003_governance': governance.governance,
  '004_policy_mfa': policy.policyMfa,
  '005_rate_slots': verification.rateSlots,
  '005_review_claims': verification.reviewClaims,
  '006_refresh_rotation_grace': protocol.refreshRotationGrace,
  '007_audit_record_mac': governance.auditRecordMac,
  '008_ephemeral_unlogged': protocol.ephemeralUnlogged,
  '010_identity': identity.identity,
  '011_signals': signals.signals,
  '012_console': consoleDomain.consoleViews,
  '013_storage_class': policy.storageClass,
  '014_reviews': reviews.reviews,
  '015_signals_review_events': signals.reviewEvents,
  '016_signals_secrets': signals.secrets,
  '017_audit_seq_rowid': governance.auditSeqRowid,
  '018_partial_indexes': consoleDomain.partialIndexes,
  '019_signals_review_trigger_or': signals.reviewTriggerOr,
  '020_device_grant_changes': protocol.deviceGrantChanges,
  '021_device_code_by_id': protocol.deviceCodeById,
  // ── Append new migrations HERE, one line each, the next number after the last key above:
  //    '0NN_<name>': <domain>.<name>,
  //    with the body `export const <name>: Migration = { up, down }` at the end of
  //    migrations/<domain>.ts (a new file for a new domain). Never edit a line above this one.
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
