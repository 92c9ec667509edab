/**
 * The governance implementation of {@link EventSink}: every state-change event is appended to
 * the audit log; every event (signals included) is handed to the listeners — anomaly detectors,
 * last-use tracking, metrics — in order. Listener failures are reported, never thrown: a broken
 * detector must not fail a token request.
 */
import { SIGNAL_EVENT_TYPES, type DomainEvent, type EventSink } from '../core/events.js'
import type { AuditLog } from './audit.js'

/** Reacts to an event; may record further events (e.g. `anomaly.raised`) on the same sink. */
export type EventListener = (event: DomainEvent) => void | Promise<unknown>

export class GovernanceEvents implements EventSink {
  readonly #audit: AuditLog | undefined
  readonly #listeners: EventListener[] = []
  readonly #onError: (err: unknown, event: DomainEvent) => void

  /**
   * @param audit The audit log, or undefined when `governance.audit.enabled` is false.
   * @param onError Receives listener failures (the composition root logs them).
   */
  constructor(audit: AuditLog | undefined, onError: (err: unknown, event: DomainEvent) => void = () => {}) {
    this.#audit = audit
    this.#onError = onError
  }

  /** Adds a listener; listeners run in the order added. */
  listen(listener: EventListener): this {
    this.#listeners.push(listener)
    return this
  }

  async record(event: DomainEvent): Promise<void> {
    const written = this.#audit !== undefined && !SIGNAL_EVENT_TYPES.has(event.type) ? this.#audit.append(event) : undefined
    for (const listener of this.#listeners) {
      try {
        // Most listeners are synchronous: awaiting only a returned promise spares every event a
        // microtask turn per listener (polling and introspection record one on every request).
        const pending = listener(event)
        if (pending !== undefined) await pending
      } catch (err) {
        this.#onError(err, event)
      }
    }
    await written
  }
}
