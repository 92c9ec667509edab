/**
 * Storage of the signals domain (tables of migration `011_signals`, see `migrations/signals.ts`):
 * the outbox, destinations (Shared Signals streams, webhook endpoints), stream subjects and
 * deliveries. Implemented in `kysely/signals.ts`.
 *
 * Times: `*_at` columns are epoch seconds; `*_at_ms` columns (backoff and lease deadlines, which
 * need sub-second steps) are epoch milliseconds.
 */

/** Access-review audit events that are also outbox events (migration `015_signals_review_events`). */
export const REVIEW_SIGNAL_TYPES = ['review.round_opened', 'review.reminder_due', 'review.item_decided', 'review.round_closed'] as const

/** One event waiting in (or fanned out from) the outbox. */
export interface OutboxEvent {
  /** Position in the outbox: deliveries to one destination follow it. */
  seq: number
  /** Unique id, `evt_<seq>` (the base of SET `jti`s and `webhook-id`s). */
  id: string
  /**
   * `grant.revoked`, `user.revoked` (every family of `subject` at once, see
   * `GrantInventoryStore.revokeGrantsWhere`), `device.retired`, `anomaly.raised`, `admin.action`,
   * `token.claims_changed`, `ssf.verification`, or an access-review event (`review.round_opened`,
   * `review.reminder_due`, `review.item_decided`, `review.round_closed`: payload `{ seq, details }`
   * of the audit record).
   */
  type: string
  /** Epoch seconds. */
  occurredAt: number
  clientId: string | null
  subject: string | null
  grantId: string | null
  /** A destination id when the event is for that destination only. */
  target: string | null
  payload: Record<string, unknown>
}

/**
 * An event to append from application code (the triggers append the others): `ref` is the grant
 * id for `token.claims_changed`; the store fills in client, subject and grant when it reads it.
 */
export interface NewOutboxEvent {
  type: string
  occurredAt: number
  ref: string | null
  target: string | null
  payload: Record<string, unknown>
}

export type DestinationKind = 'ssf_stream' | 'webhook'
/** SSF 1.0 §8.1.2 stream status; webhooks use `enabled` and `paused`. */
export type DestinationStatus = 'enabled' | 'paused' | 'disabled'

/** A Shared Signals stream or a webhook endpoint, with its delivery state. */
export interface DestinationRecord {
  id: string
  kind: DestinationKind
  /** The receiver's client id (streams); null for configured webhooks. */
  owner: string | null
  /** Kind-specific configuration (JSON object). */
  config: Record<string, unknown>
  status: DestinationStatus
  statusReason: string | null
  createdAt: number
  updatedAt: number
  /** Earliest next push attempt, epoch ms (0: now). */
  nextAttemptAtMs: number
  /** Start of the current run of failed attempts (epoch seconds), or null. */
  failingSince: number | null
  /**
   * A secret the destination needs (an SSF push stream's `authorization_header`), sealed by the
   * signals domain with the server's key encryption (`signals/secrets.ts`) before the store sees
   * it; `plain:`-prefixed plaintext only between migration `016_signals_secrets` and the first
   * start with a key-encryption key. Null or absent: none. Never part of `config`.
   */
  secret?: string | null
}

export type DeliveryStatus = 'pending' | 'delivered' | 'acknowledged' | 'rejected'

/** One event rendered for one destination. */
export interface DeliveryRecord {
  destinationId: string
  eventSeq: number
  /** SET `jti` or `webhook-id`: the same on every attempt, so receivers de-duplicate. */
  jti: string
  /** The signed SET or the webhook body, byte for byte what is sent. */
  payload: string
  status: DeliveryStatus
  attempts: number
  lastError: string | null
  createdAt: number
  lastAttemptAt: number | null
  deliveredAt: number | null
}

/** A subject added to or removed from a stream (SSF 1.0 §8.1.3). */
export interface StreamSubjectRecord {
  /** Canonical JSON of the subject identifier. */
  key: string
  subject: Record<string, unknown>
  included: boolean
}

/** Storage of the signals domain; see the module comment. */
export interface SignalOutboxStore {
  /** Appends an event to the outbox. */
  appendSignalEvent(event: NewOutboxEvent): Promise<void>
  /** Events not yet fanned out, oldest first, with the facts of the rows they name. */
  listPendingSignalEvents(limit: number): Promise<OutboxEvent[]>
  /**
   * Writes the deliveries of a batch of events and removes the events from the outbox, in one
   * transaction. A delivery that exists already (another instance fanned out the same event) is kept.
   */
  fanOutSignalEvents(seqs: readonly number[], deliveries: readonly Omit<DeliveryRecord, 'status' | 'attempts' | 'lastError' | 'lastAttemptAt' | 'deliveredAt'>[]): Promise<void>

  createSignalDestination(record: DestinationRecord): Promise<void>
  findSignalDestination(id: string): Promise<DestinationRecord | undefined>
  listSignalDestinations(filter: { kind?: DestinationKind; owner?: string }): Promise<DestinationRecord[]>
  /** Changes configuration, secret and/or status. @returns false when unknown. */
  updateSignalDestination(id: string, patch: { config?: Record<string, unknown>; secret?: string | null; status?: DestinationStatus; statusReason?: string | null }, now: number): Promise<boolean>
  /**
   * Replaces a destination's stored secret only while it still equals `expected` (one
   * conditional UPDATE): sealing plaintext after the migration, re-sealing after a KEK rotation.
   * @returns whether the row changed.
   */
  replaceSignalDestinationSecret(id: string, expected: string, next: string): Promise<boolean>
  /** Deletes a destination with its subjects and deliveries. @returns false when unknown. */
  deleteSignalDestination(id: string): Promise<boolean>

  setStreamSubject(destinationId: string, subject: StreamSubjectRecord, now: number): Promise<void>
  listStreamSubjects(destinationId: string): Promise<StreamSubjectRecord[]>

  /**
   * Takes (or renews) the right to push to a destination until `untilMs`, unless another owner
   * holds it: one conditional UPDATE, so one instance pushes per destination and order holds.
   */
  acquireDestinationLease(destinationId: string, owner: string, nowMs: number, untilMs: number): Promise<boolean>
  releaseDestinationLease(destinationId: string, owner: string): Promise<void>
  /** Enabled destinations of `kind` whose next attempt is due and that have pending deliveries. */
  listDueSignalDestinations(kind: DestinationKind, nowMs: number): Promise<DestinationRecord[]>
  /** Pending deliveries of a destination in event order. */
  listPendingSignalDeliveries(destinationId: string, limit: number): Promise<DeliveryRecord[]>
  /** Marks deliveries done (`delivered`, `acknowledged`, `rejected`). @returns how many changed. */
  completeSignalDeliveries(destinationId: string, jtis: readonly string[], status: Exclude<DeliveryStatus, 'pending'>, now: number, error?: string): Promise<number>
  /** Records a failed push attempt and when to try again; starts the failing run if none. */
  recordSignalDeliveryFailure(destinationId: string, eventSeq: number, error: string, now: number, nextAttemptAtMs: number): Promise<void>
  /** Records a successful push: ends the failing run. */
  recordSignalDeliverySuccess(destinationId: string, eventSeq: number, now: number): Promise<void>
  /** Deliveries of a destination, newest first. */
  listSignalDeliveries(destinationId: string, query: { status?: DeliveryStatus; limit: number }): Promise<DeliveryRecord[]>
  /** Puts a delivery back to pending and makes its destination due now. @returns false when unknown. */
  retrySignalDelivery(destinationId: string, eventSeq: number): Promise<boolean>
  /** Deletes finished deliveries created before `before` (epoch seconds). */
  purgeSignals(before: number): Promise<void>
}
