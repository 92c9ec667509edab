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

/** What {@link GovernanceEvents.record} returns when there is nothing to wait for. */
const SETTLED: Promise<void> = Promise.resolve()

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

  /**
   * Appends `event` to the audit log (unless it is a signal) and runs the listeners in order, each
   * after the promise of the one before settles. Without a promise to wait for — a signal (one per
   * slow_down poll and per introspection) whose listeners all answer synchronously — it returns an
   * already settled promise, without starting an async function.
   */
  record(event: DomainEvent): Promise<void> {
    let written: Promise<void> | undefined
    try {
      written = this.#audit !== undefined && !SIGNAL_EVENT_TYPES.has(event.type) ? this.#audit.append(event) : undefined
    } catch (err) {
      // As from an async function: refused, no listener run.
      return Promise.reject(err)
    }
    const listeners = this.#listeners
    for (let i = 0; i < listeners.length; i++) {
      let pending: void | Promise<unknown>
      try {
        pending = listeners[i]!(event)
      } catch (err) {
        this.#onError(err, event)
        continue
      }
      if (pending !== undefined) return this.#finish(event, pending, i + 1, written)
    }
    return written ?? SETTLED
  }

  /** The rest of {@link record} once listener `next - 1` returned `pending`: waits for it, runs the others, then the audit write. */
  async #finish(event: DomainEvent, pending: Promise<unknown>, next: number, written: Promise<void> | undefined): Promise<void> {
    try {
      await pending
    } catch (err) {
      this.#onError(err, event)
    }
    const listeners = this.#listeners
    for (let i = next; i < listeners.length; i++) {
      try {
        const later = listeners[i]!(event)
        if (later !== undefined) await later
      } catch (err) {
        this.#onError(err, event)
      }
    }
    await written
  }
}
