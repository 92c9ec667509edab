/**
 * Row types of every table, grouped by the domain that owns them (see migrations.ts for the
 * schema; all times are epoch seconds), and the encodings shared by several tables.
 */

// --- device grants (device-grants.ts) ---

export interface DeviceGrantsTable {
  id: string
  /**
   * The lookup key of a `device_code` issued before the `<id>.<secret>` format (the SHA-256 hex of
   * the whole code), under a unique index of the rows that have one; null since migration 021 for
   * codes of that format, whose secret's hash is in `device_secret_hash`.
   */
  device_code_hash: string | null
  user_code: string
  client_id: string
  scope: string
  status: string
  created_at: number
  expires_at: number
  interval_seconds: number
  last_polled_at: number | null
  subject: string | null
  decided_at: number | null
  request_ip: string
  request_user_agent: string | null
  dpop_jkt: string | null
  grant_id: string | null
  /** Added by migration 002: RFC 8707 resources, space-delimited. */
  resources: string | null
  /** Added by migration 005_review_claims: the browser session reviewing it (a hash), and until when. */
  review_claim: string | null
  review_claim_until: number | null
  /**
   * Added by migration 021: for a `device_code` `<id>.<secret>`, the SHA-256 hex of the secret (the
   * row is found by `id`, its primary key; no index holds this column); null for a code of the
   * format before.
   */
  device_secret_hash: string | null
}

// --- token families (token-families.ts; grant-inventory.ts reads them too) ---

export interface GrantsTable {
  id: string
  client_id: string
  subject: string | null
  scope: string
  created_at: number
  revoked_at: number | null
  device_grant_id: string | null
  expires_at: number | null
  dpop_jkt: string | null
  /** Added by migration 002. */
  resources: string | null
  /** Added by migration 003: last use reported by refresh or introspection. */
  last_used_at: number | null
  last_used_ip: string | null
}

export interface AccessTokensTable {
  token_hash: string
  jti: string
  grant_id: string
  client_id: string
  subject: string | null
  scope: string
  issued_at: number
  expires_at: number
  revoked_at: number | null
  format: string
  dpop_jkt: string | null
  /** Added by migration 002. */
  resources: string | null
}

export interface RefreshTokensTable {
  token_hash: string
  id: string
  grant_id: string
  client_id: string
  subject: string | null
  scope: string
  issued_at: number
  expires_at: number | null
  rotated_at: number | null
  revoked_at: number | null
  dpop_jkt: string | null
  /** DPoP key thumbprint of the request that rotated the token (null: none, or not rotated). */
  rotated_jkt: string | null
  /** Id of the refresh token that replaced this one. */
  replaced_by: string | null
}

// --- web sessions (web-sessions.ts) ---

export interface WebSessionsTable {
  id_hash: string
  csrf_token: string
  subject: string | null
  auth_time: number | null
  /** Added by migration 004. */
  mfa_at: number | null
  created_at: number
  expires_at: number
}

// --- conditional approval (conditional-approval.ts) ---

/** Conditional approval per device authorization (migration 004). */
export interface DeviceGrantPolicyTable {
  device_grant_id: string
  posture_json: string | null
  decision: string | null
  explanation_json: string | null
  decided_at: number | null
}

/** TOTP enrolments of built-in users (migration 004). */
export interface TotpSecretsTable {
  username: string
  secret: string
  created_at: number
}

// --- rate counters (rate-counters.ts) ---

export interface RateCountersTable {
  key: string
  window_seconds: number
  window_start: number
  hits: number
  expires_at: number
}

// --- rate slots (rate-slots.ts) ---

/** Sliding-window rate-limit slots (migration 005_rate_slots). */
export interface RateSlotsTable {
  key: string
  slot: number
  /** When the slot was last taken, epoch seconds; 0 = never, or given back. */
  taken_at: number
}

// --- signing keys and server secrets (keys-and-secrets.ts) ---

export interface SigningKeysTable {
  kid: string
  alg: string
  public_jwk: string
  private_jwk: string
  created_at: number
  retired_at: number | null
  publish_until: number | null
}

export interface ServerSecretsTable {
  name: string
  value: string
  created_at: number
}

// --- DPoP replay (dpop-replay.ts) ---

export interface DpopJtisTable {
  jti: string
  expires_at: number
}

/** PostgreSQL only, UNLOGGED (migration 008): poll times decided off the commit path (../ephemeral.ts). */
export interface DevicePollTimesTable {
  id: string
  last_polled_at: number
  interval_seconds: number
  /** The last poll was too fast (RFC 8628 §3.5 `slow_down`); returned by the deciding upsert. */
  too_fast: boolean
  /** The device grant's `expires_at`: the entry is purged after it. */
  expires_at: number
}

// --- trusted devices (trusted-devices.ts) ---

export interface DevicesTable {
  jkt: string
  label: string
  registered_at: number
  registered_by: string | null
  retired_at: number | null
}

// --- audit log (audit-log.ts) ---

/** Migration 003: the hash-chained audit log. */
export interface AuditEventsTable {
  seq: number
  time: number
  type: string
  actor: string | null
  client_id: string | null
  subject: string | null
  ip: string | null
  grant_id: string | null
  details: string
  prev_hash: string
  hash: string
  /** Keyed seal (migration 007_audit_record_mac); null before it or without a key. */
  mac: string | null
}

export interface AuditHeadTable {
  id: number
  seq: number
  hash: string
}

export interface AuditCheckpointsTable {
  seq: number
  hash: string
  time: number
  signature: string
}

// --- governance records (governance-records.ts) ---

export interface AnomaliesTable {
  id: string
  kind: string
  time: number
  dedupe_key: string | null
  client_id: string | null
  subject: string | null
  grant_id: string | null
  ip: string | null
  action: string
  details: string
}

export interface PrincipalOverridesTable {
  kind: string
  id: string
  state: string
  changed_at: number
  changed_by: string | null
}

// --- signals and OpenID Connect (migration 011_signals) ---

/** The outbox: one row per event that must leave the server (written by triggers and the signals domain). */
export interface SignalOutboxTable {
  seq: number
  type: string
  occurred_at: number
  ref: string | null
  target: string | null
  payload: string | null
}

/** Shared Signals streams and webhook endpoints with their delivery state. */
export interface SignalDestinationsTable {
  id: string
  kind: string
  owner: string | null
  config: string
  status: string
  status_reason: string | null
  created_at: number
  updated_at: number
  next_attempt_at_ms: number
  failing_since: number | null
  lease_owner: string | null
  lease_until_ms: number
  /** Sealed receiver secret (migration 016_signals_secrets); see DestinationRecord.secret. */
  secret: string | null
}

/** Subjects added to or removed from a stream (SSF 1.0 §8.1.3). */
export interface SignalSubjectsTable {
  destination_id: string
  subject_key: string
  subject: string
  included: number
  changed_at: number
}

/** One event rendered for one destination. */
export interface SignalDeliveriesTable {
  destination_id: string
  event_seq: number
  jti: string
  payload: string
  status: string
  attempts: number
  last_error: string | null
  created_at: number
  last_attempt_at: number | null
  delivered_at: number | null
}

/** OpenID Connect authentication context per device authorization. */
export interface OidcAuthContextTable {
  device_grant_id: string
  nonce: string | null
  auth_time: number | null
  amr: string | null
  acr: string | null
}

// --- the whole schema ---

/** Added by migration 010_identity: people (identity domain). */
export interface PeopleTable {
  id: string
  user_name: string
  display_name: string | null
  email: string | null
  status: string
  source: string
  groups_json: string
  risk: number
  upstream_issuer: string | null
  upstream_sub: string | null
  external_id: string | null
  manager: string | null
  password_hash: string | null
  password_changed_at: number | null
  scim_json: string | null
  version: number
  created_at: number
  updated_at: number
}

export interface PeopleGroupsTable {
  id: string
  display_name: string
  external_id: string | null
  version: number
  created_at: number
  updated_at: number
}

/** The identity domain's tables (migration 010_identity). */
export interface IdentityTables {
  people: PeopleTable
  people_groups: PeopleGroupsTable
  people_group_members: { group_id: string; person_id: string }
  upstream_logins: {
    state_hash: string
    provider: string
    nonce: string
    code_verifier: string
    return_to: string
    step_up: number
    created_at: number
    expires_at: number
  }
  security_events_received: { issuer: string; jti: string; received_at: number; event_types: string; effect: string }
  device_compliance: { device_id: string; status: string; issuer: string; updated_at: number }
}

/** Every table, as Kysely sees it. A new domain adds its tables here and in migrations.ts. */
/** Migration 012 (governance console): who acknowledged an anomaly, when, and why. */
export interface ConsoleAnomalyAcksTable {
  anomaly_id: string
  acknowledged_at: number
  acknowledged_by: string
  note: string
}

export interface DevicegateDatabase extends IdentityTables {
  audit_events: AuditEventsTable
  audit_head: AuditHeadTable
  audit_checkpoints: AuditCheckpointsTable
  anomalies: AnomaliesTable
  principal_overrides: PrincipalOverridesTable
  device_grants: DeviceGrantsTable
  grants: GrantsTable
  access_tokens: AccessTokensTable
  refresh_tokens: RefreshTokensTable
  web_sessions: WebSessionsTable
  rate_counters: RateCountersTable
  rate_slots: RateSlotsTable
  signing_keys: SigningKeysTable
  dpop_jtis: DpopJtisTable
  device_poll_times: DevicePollTimesTable
  device_grant_policy: DeviceGrantPolicyTable
  totp_secrets: TotpSecretsTable
  server_secrets: ServerSecretsTable
  devices: DevicesTable
  grant_storage_classes: GrantStorageClassesTable
  review_campaigns: ReviewCampaignsTable
  review_rounds: ReviewRoundsTable
  review_items: ReviewItemsTable
  console_anomaly_acks: ConsoleAnomalyAcksTable
  signal_outbox: SignalOutboxTable
  signal_destinations: SignalDestinationsTable
  signal_subjects: SignalSubjectsTable
  signal_deliveries: SignalDeliveriesTable
  oidc_auth_context: OidcAuthContextTable
}

/** RFC 8707 resources as stored: space-delimited (an absolute URI contains no space), null for none. */
export function joinResources(resources: readonly string[] | undefined): string | null {
  return resources && resources.length > 0 ? resources.join(' ') : null
}

export function splitResources(value: string | null): { resources?: string[] } {
  return value ? { resources: value.split(' ') } : {}
}

/** Declared token storage per device authorization (migration 013_storage_class). */
export interface GrantStorageClassesTable {
  device_grant_id: string
  client_id: string
  storage_class: string
  declared_at: number
  redeclared_at: number | null
}

/** Access-review campaigns created through the admin API (migration 014_reviews). */
export interface ReviewCampaignsTable {
  id: string
  definition_json: string
  created_at: number
  created_by: string
}

export interface ReviewRoundsTable {
  id: string
  campaign_id: string
  number: number
  opened_at: number
  deadline_at: number
  closed_at: number | null
  close_reason: string | null
  reminded_at: number | null
}

export interface ReviewItemsTable {
  id: string
  round_id: string
  grant_id: string
  client_id: string
  subject: string | null
  reviewers_json: string
  default_action: string
  facts_json: string
  decision: string | null
  decided_by: string | null
  decided_at: number | null
  decided_via: string | null
  justification: string | null
  revoked_at: number | null
}
