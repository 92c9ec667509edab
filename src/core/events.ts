/**
 * Domain events: the one small interface through which protocol handlers and pages report what
 * happened. The governance layer implements it (audit log, anomaly detectors, metrics); unit
 * tests leave it out (no-op).
 *
 * Event types are `noun.verb` in the past tense. Most are state changes and are written to the
 * audit log. {@link SIGNAL_EVENT_TYPES} are observations on hot paths (a poll answered
 * `slow_down`, a token presented): they feed detectors and are never written one per request.
 */

/** Every event type devicegate emits. */
export const EVENT_TYPES = [
  'device_authorization.requested',
  'user_code.looked_up',
  /** The server-wide budget of failed signed-out code entries is spent (RFC 8628 §5.1). */
  'user_code.entry_budget_exhausted',
  'session.signed_in',
  'session.sign_in_failed',
  'device_code.approved',
  'device_code.denied',
  'device_code.replayed',
  'policy.decided',
  'token.issued',
  'token.refreshed',
  'token.revoked',
  'refresh_token.reuse_detected',
  'dpop_proof.rejected',
  'anomaly.raised',
  'admin.action',
  // access reviews; `review.reminder_due` is the hook for webhook reminders
  'review.campaign_created',
  'review.round_opened',
  'review.item_decided',
  'review.reminder_due',
  'review.round_closed',
  // governance console
  'session.signed_out',
  /** A console session ended by its inactivity timeout or absolute lifetime (NIST SP 800-63B-4 §2.2.3). */
  'session.expired',
  'anomaly.acknowledged',
  'policy.reloaded',
  'console.access_denied',
  // identity
  'person.created',
  'person.updated',
  'person.status_changed',
  'person.password_changed',
  'group.created',
  'group.updated',
  'group.deleted',
  'session.upstream_failed',
  'security_event.received',
  'webhook.paused',
  'global_revocation.requested',
  // signals (not audited one by one)
  'device_code.polled_too_fast',
  'token.used',
] as const
export type EventType = (typeof EVENT_TYPES)[number]

/** Observations that feed detectors and metrics only; see the module comment. */
export const SIGNAL_EVENT_TYPES: ReadonlySet<EventType> = new Set<EventType>(['device_code.polled_too_fast', 'token.used'])

/**
 * One event. Identifiers only: never a token, code, secret or password value (the audit log
 * strips detail keys that name one).
 */
export interface DomainEvent {
  type: EventType
  /** Who acted: a username, `client:<id>`, `admin:<client id>`, `system`. */
  actor?: string | null
  clientId?: string | null
  subject?: string | null
  /** Address of the request that caused the event. */
  ip?: string | null
  /** Token family id (`grants.id`). */
  grantId?: string | null
  /** Further facts, JSON-serialisable (e.g. `{ scope, deviceGrantId, reason }`). */
  details?: Record<string, unknown>
}

/** Receives domain events. Implementations never throw: failures are logged. */
export interface EventSink {
  /** Resolves once the event is durable where it must be (the audit log) and detectors ran. */
  record(event: DomainEvent): Promise<void>
}

/** An {@link EventSink} that drops everything (unit tests, tools). */
export const NO_EVENTS: EventSink = { record: async () => {} }
