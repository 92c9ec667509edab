/**
 * Migrations of signals (src/signals/): `011_signals`, the tables of what leaves the server and
 * the OpenID Connect authentication context of device approvals. Bodies only: the order lives in
 * ../migrations.ts.
 *
 * - `oidc_auth_context`: per device authorization, the `nonce` sent with it and, once redeemed,
 *   how the approver authenticated (`auth_time`, `amr`, `acr`), for ID Tokens, userinfo and
 *   access tokens (OpenID Connect Core 1.0 §2).
 * - `signal_outbox`: one row per event that must leave the server and has not yet been fanned out
 *   to its destinations (a queue: fan-out deletes the row in the transaction that writes the
 *   deliveries, so it needs no index but its key), in `seq` order. Rows for
 *   grant revocations, device retirements, anomalies and administrator actions are written by
 *   **triggers** on `grants`, `devices`, `anomalies` and `audit_events`, so they are committed in
 *   the same transaction as the change, whichever code path made it (logout, admin, reuse
 *   detection, anomaly, device retirement, SCIM, Shared Signals, review decisions, the CLI).
 * - `signal_destinations`: Shared Signals streams and webhook endpoints, with delivery state
 *   (backoff, lease, pause).
 * - `signal_subjects`: subjects added to or removed from a stream (SSF 1.0 §8.1.3).
 * - `signal_deliveries`: one row per (destination, event): the signed SET or webhook body, its
 *   status and attempts; delivered in `event_seq` order per destination.
 *
 * Both dialects: SQLite triggers; PostgreSQL PL/pgSQL trigger functions, created in the current
 * schema. A trigger writes only the event type, time and the changed row's key.
 */
import { sql, type Kysely, type Migration } from 'kysely'
import { isPostgres } from './dialect.js'

interface TriggerSpec {
  name: string
  table: string
  /** `AFTER UPDATE OF col` or `AFTER INSERT`. */
  timing: string
  /** Condition on OLD/NEW. */
  when: string
  type: string
  /** SQL for the type instead of the constant `type` (e.g. `NEW.type`). */
  typeSql?: string
  occurredAt: string
  /** The changed row's key; the signals store reads the rest of the row when it fans the event out. */
  ref: string
}

// One small row per change: a trigger runs once per revoked family, so a mass revocation (100,000
// families in one UPDATE) must stay cheap — no random id, no JSON, one index.
const TRIGGERS: TriggerSpec[] = [
  { name: 'grants_revoked_signal', table: 'grants', timing: 'AFTER UPDATE OF revoked_at', when: 'OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL', type: 'grant.revoked', occurredAt: 'NEW.revoked_at', ref: 'NEW.id' },
  { name: 'devices_retired_signal', table: 'devices', timing: 'AFTER UPDATE OF retired_at', when: 'OLD.retired_at IS NULL AND NEW.retired_at IS NOT NULL', type: 'device.retired', occurredAt: 'NEW.retired_at', ref: 'NEW.jkt' },
  { name: 'anomalies_signal', table: 'anomalies', timing: 'AFTER INSERT', when: 'TRUE', type: 'anomaly.raised', occurredAt: 'NEW.time', ref: 'NEW.id' },
  // Administrator actions: the admin.action events and whatever an administrator did (a central
  // revocation is audited as token.revoked with actor admin:<client>).
  { name: 'audit_admin_signal', table: 'audit_events', timing: 'AFTER INSERT', when: "NEW.type = 'admin.action' OR NEW.actor LIKE 'admin:%'", type: 'admin.action', occurredAt: 'NEW.time', ref: 'CAST(NEW.seq AS TEXT)' },
]

async function createTriggers(db: Kysely<any>, specs: readonly TriggerSpec[]): Promise<void> {
  const pg = isPostgres(db)
  for (const t of specs) {
    const insert = `INSERT INTO signal_outbox (type, occurred_at, ref) VALUES (${t.typeSql ?? `'${t.type}'`}, ${t.occurredAt}, ${t.ref});`
    if (pg) {
      await sql
        .raw(`CREATE OR REPLACE FUNCTION ${t.name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${insert} RETURN NULL; END $$`)
        .execute(db)
      await sql.raw(`CREATE TRIGGER ${t.name} ${t.timing} ON ${t.table} FOR EACH ROW WHEN (${t.when}) EXECUTE FUNCTION ${t.name}_fn()`).execute(db)
    } else {
      await sql.raw(`CREATE TRIGGER ${t.name} ${t.timing} ON ${t.table} FOR EACH ROW WHEN ${t.when} BEGIN ${insert} END`).execute(db)
    }
  }
}

async function dropTriggers(db: Kysely<any>, specs: readonly TriggerSpec[]): Promise<void> {
  const pg = isPostgres(db)
  for (const t of specs) {
    await sql.raw(`DROP TRIGGER IF EXISTS ${t.name}${pg ? ` ON ${t.table}` : ''}`).execute(db)
    if (pg) await sql.raw(`DROP FUNCTION IF EXISTS ${t.name}_fn()`).execute(db)
  }
}

export const signals: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    const pg = isPostgres(db)
    await db.schema
      .createTable('oidc_auth_context')
      .addColumn('device_grant_id', 'text', (c) => c.primaryKey())
      .addColumn('nonce', 'text')
      .addColumn('auth_time', 'bigint')
      .addColumn('amr', 'text')
      .addColumn('acr', 'text')
      .execute()

    await db.schema
      .createTable('signal_outbox')
      .addColumn('seq', pg ? 'bigserial' : 'integer', (c) => (pg ? c.primaryKey() : c.primaryKey().autoIncrement()))
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('occurred_at', 'bigint', (c) => c.notNull())
      // The changed row: grant id, device jkt, anomaly id, audit seq.
      .addColumn('ref', 'text')
      // A destination id when the event is for one destination only (SSF verification).
      .addColumn('target', 'text')
      // JSON facts the row does not hold (token-claims-change, verification), or null.
      .addColumn('payload', 'text')
      .execute()

    await db.schema
      .createTable('signal_destinations')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('owner', 'text')
      .addColumn('config', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('status_reason', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('next_attempt_at_ms', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('failing_since', 'bigint')
      .addColumn('lease_owner', 'text')
      .addColumn('lease_until_ms', 'bigint', (c) => c.notNull().defaultTo(0))
      .execute()
    await db.schema.createIndex('signal_destinations_owner_idx').on('signal_destinations').columns(['kind', 'owner']).execute()

    await db.schema
      .createTable('signal_subjects')
      .addColumn('destination_id', 'text', (c) => c.notNull())
      .addColumn('subject_key', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('included', 'integer', (c) => c.notNull())
      .addColumn('changed_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('signal_subjects_pk', ['destination_id', 'subject_key'])
      .execute()

    await db.schema
      .createTable('signal_deliveries')
      .addColumn('destination_id', 'text', (c) => c.notNull())
      .addColumn('event_seq', 'bigint', (c) => c.notNull())
      .addColumn('jti', 'text', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('last_error', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('last_attempt_at', 'bigint')
      .addColumn('delivered_at', 'bigint')
      .addPrimaryKeyConstraint('signal_deliveries_pk', ['destination_id', 'event_seq'])
      .execute()
    await db.schema.createIndex('signal_deliveries_status_idx').on('signal_deliveries').columns(['destination_id', 'status', 'event_seq']).execute()
    await db.schema.createIndex('signal_deliveries_jti_idx').on('signal_deliveries').columns(['destination_id', 'jti']).unique().execute()

    await createTriggers(db, TRIGGERS)
  },
  async down(db: Kysely<any>): Promise<void> {
    await dropTriggers(db, TRIGGERS)
    for (const table of ['signal_deliveries', 'signal_subjects', 'signal_destinations', 'signal_outbox', 'oidc_auth_context'])
      await db.schema.dropTable(table).ifExists().execute()
  },
}

// The access-review audit types as this migration knows them (frozen with it; the store's list
// is REVIEW_SIGNAL_TYPES in signals.ts): a round opened, its reminder due, an item decided (by a
// reviewer or by the deadline's default action), a round closed.
const REVIEW_AUDIT_TYPES = ['review.round_opened', 'review.reminder_due', 'review.item_decided', 'review.round_closed']

const REVIEW_TRIGGERS: TriggerSpec[] = [
  {
    name: 'audit_review_signal',
    table: 'audit_events',
    timing: 'AFTER INSERT',
    when: `NEW.type IN (${REVIEW_AUDIT_TYPES.map((t) => `'${t}'`).join(', ')})`,
    type: 'review.*',
    typeSql: 'NEW.type',
    occurredAt: 'NEW.time',
    ref: 'CAST(NEW.seq AS TEXT)',
  },
]

/**
 * Migration `015_signals_review_events`: a trigger on `audit_events` writes an outbox row for
 * every access-review event (issue 15 §1: reminders go out through the webhooks), in the
 * transaction that writes the audit record (as administrator actions, see `011_signals`); the
 * outbox type is the audit type.
 */
export const reviewEvents: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await createTriggers(db, REVIEW_TRIGGERS)
  },
  async down(db: Kysely<any>): Promise<void> {
    await dropTriggers(db, REVIEW_TRIGGERS)
  },
}

/**
 * Migration `016_signals_secrets`: an SSF push stream's `authorization_header` leaves the
 * stream's `config` JSON for its own column, `signal_destinations.secret`, which holds it only
 * sealed (AES-256-GCM under the key-encryption key, like private signing keys). The migration
 * has no key, so it moves an existing header as `plain:<value>`; the first start with a key
 * seals it (one compare-and-set per row, `signals/secrets.ts`), as older plaintext signing keys
 * are sealed.
 */
export const secrets: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.alterTable('signal_destinations').addColumn('secret', 'text').execute()
    const rows = (await db.selectFrom('signal_destinations').select(['id', 'config']).where('kind', '=', 'ssf_stream').execute()) as { id: string; config: string }[]
    for (const row of rows) {
      let config: Record<string, unknown>
      try {
        config = JSON.parse(row.config) as Record<string, unknown>
      } catch {
        continue
      }
      if (!('authorizationHeader' in config)) continue
      const { authorizationHeader, ...rest } = config
      await db
        .updateTable('signal_destinations')
        .set({ config: JSON.stringify(rest), secret: typeof authorizationHeader === 'string' && authorizationHeader.length > 0 ? `plain:${authorizationHeader}` : null })
        .where('id', '=', row.id)
        .execute()
    }
  },
  async down(db: Kysely<any>): Promise<void> {
    // Sealed headers cannot be put back without the key: streams lose them (receivers set them again).
    await db.schema.alterTable('signal_destinations').dropColumn('secret').execute()
  },
}

/**
 * Migration `019_signals_review_trigger_or` (performance, issue 17), SQLite only: the condition of
 * `audit_review_signal` is written as equalities joined by OR instead of `NEW.type IN (…)`. SQLite
 * runs a trigger's condition as a sub-program per inserted row, and there an IN list builds a
 * temporary index of its values on every row: measured, an audit record insert cost 5.0 µs with
 * the IN list against 3.1 µs with the equalities (2.5 µs with no trigger). The condition means the
 * same (`type` is NOT NULL text, both forms compare with its BINARY collation), so the same audit
 * records get an outbox row. The trigger is created again last, as 015 created it: SQLite fires the
 * trigger created last first, so a record that gets both rows still gets the review event's row
 * before the administrator action's.
 * PostgreSQL evaluates an IN list without that cost: its trigger stays as it is.
 */
export const reviewTriggerOr: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    if (isPostgres(db)) return
    await dropTriggers(db, REVIEW_TRIGGERS)
    await createTriggers(
      db,
      REVIEW_TRIGGERS.map((t) => ({ ...t, when: REVIEW_AUDIT_TYPES.map((type) => `NEW.type = '${type}'`).join(' OR ') })),
    )
  },
  async down(db: Kysely<any>): Promise<void> {
    if (isPostgres(db)) return
    await dropTriggers(db, REVIEW_TRIGGERS)
    await createTriggers(db, REVIEW_TRIGGERS)
  },
}
