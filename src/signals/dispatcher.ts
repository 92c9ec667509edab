/**
 * The outbox dispatcher: turns outbox events into deliveries and pushes them.
 *
 * Guarantees:
 * - **Nothing lost.** Events are rows committed with the change that caused them (triggers, see
 *   `storage/migrations/signals.ts`); fan-out writes the deliveries and marks the events in one
 *   transaction; a delivery stays `pending` until the receiver accepted it. A crash at any point
 *   leaves rows that the next run (after a restart, or on another instance) picks up.
 * - **At least once.** A push whose answer was lost is sent again, with the same `jti` /
 *   `webhook-id` and the same bytes, so receivers de-duplicate.
 * - **In order per destination.** Pending deliveries go out in outbox order; a failed push stops
 *   its destination until the retry (head-of-line), and a lease (one conditional UPDATE) lets one
 *   instance push per destination at a time.
 * - **Backoff.** After the n-th failed attempt in a row the destination waits
 *   `min(maxBackoffMs, baseBackoffMs · 2^(n−1))`, halved at random ("equal jitter": between half
 *   and all of it), so receivers coming back are not hit by every sender at once.
 */
import type { Logger } from 'pino'
import type { Clock, Random } from '../core/ports.js'
import type { DeliveryRecord, DestinationKind, DestinationRecord, OutboxEvent, SignalOutboxStore } from '../storage/store.js'

/** What a push attempt came to. */
export type PushOutcome =
  | { ok: true }
  /** The receiver refused this event for good (e.g. RFC 8935 §2.3 `invalid_request`): not retried. */
  | { ok: false; permanent: true; error: string }
  | { ok: false; permanent: false; error: string }

/** One kind of destination (Shared Signals streams, webhooks). */
export interface DestinationHandler {
  readonly kind: DestinationKind
  /**
   * Renders an event for a destination: the `jti` and the exact bytes to deliver, or null when
   * the destination does not take this event (event type not requested, subject removed, stream
   * disabled).
   */
  render(destination: DestinationRecord, event: OutboxEvent): Promise<{ jti: string; payload: string } | null>
  /** Whether the dispatcher pushes this destination's deliveries (false: they wait to be polled). */
  isPush(destination: DestinationRecord): boolean
  /** Sends one delivery. Never throws: failures are outcomes. */
  push(destination: DestinationRecord, delivery: DeliveryRecord): Promise<PushOutcome>
  /** Called after a failed attempt, with the length of the failing run in seconds (pausing). */
  afterFailure?(destination: DestinationRecord, failingForSeconds: number): Promise<void>
}

/** Tuning of {@link SignalDispatcher}; every field has a default. */
export interface DispatcherOptions {
  /** How often the outbox is read when nothing woke the dispatcher, in ms. Default: 500. */
  pollIntervalMs?: number
  /** First retry delay in ms. Default: 1000. */
  baseBackoffMs?: number
  /** Longest retry delay in ms. Default: 300000 (5 minutes). */
  maxBackoffMs?: number
  /**
   * How long a push lease is held, in ms; renewed before a push that it would not outlast (by the
   * push timeout plus one second). A crashed instance's lease delays its destinations this long.
   * Default: the push timeout + 5000.
   */
  leaseMs?: number
  /** Events fanned out per transaction. Default: 200. */
  batchSize?: number
  /** Timeout of one push, in ms. Default: 10000. */
  pushTimeoutMs?: number
}

/** The retry delay after `attempts` failures in a row (see the module comment), in ms. */
export function backoffMs(attempts: number, base: number, max: number, random: () => number): number {
  const full = Math.min(max, base * 2 ** Math.max(0, Math.min(attempts - 1, 30)))
  return Math.round(full / 2 + random() * (full / 2))
}

/** Reads the outbox, fans events out to destinations and pushes deliveries; see the module comment. */
export class SignalDispatcher {
  readonly #store: SignalOutboxStore
  readonly #handlers: ReadonlyMap<DestinationKind, DestinationHandler>
  readonly #clock: Clock
  readonly #random: Random
  readonly #logger: Logger
  readonly #nowMs: () => number
  readonly #options: Required<DispatcherOptions>
  readonly #owner: string
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #again = false
  /** The last fan-out started (they run one at a time), and how many are queued or running. */
  #fanOutTail: Promise<unknown> = Promise.resolve()
  #fanOutsQueued = 0
  /** The background loop is off (before start, after stop). */
  #stopped = true
  /** stop() was called: a push loop in progress ends after its current push. */
  #closing = false

  constructor(deps: {
    store: SignalOutboxStore
    handlers: readonly DestinationHandler[]
    clock: Clock
    random: Random
    logger: Logger
    /** Epoch ms for backoff and leases; default Date.now. */
    nowMs?: () => number
    options?: DispatcherOptions
  }) {
    this.#store = deps.store
    this.#handlers = new Map(deps.handlers.map((h) => [h.kind, h]))
    this.#clock = deps.clock
    this.#random = deps.random
    this.#logger = deps.logger
    this.#nowMs = deps.nowMs ?? Date.now
    const o = deps.options ?? {}
    this.#options = {
      pollIntervalMs: o.pollIntervalMs ?? 500,
      baseBackoffMs: o.baseBackoffMs ?? 1000,
      maxBackoffMs: o.maxBackoffMs ?? 300_000,
      leaseMs: o.leaseMs ?? (o.pushTimeoutMs ?? 10_000) + 5_000,
      batchSize: o.batchSize ?? 200,
      pushTimeoutMs: o.pushTimeoutMs ?? 10_000,
    }
    this.#owner = Buffer.from(deps.random.bytes(9)).toString('base64url')
  }

  /** Timeout of one push, in ms (for handlers). */
  get pushTimeoutMs(): number {
    return this.#options.pushTimeoutMs
  }

  /** Starts the background loop. */
  start(): void {
    this.#stopped = false
    this.#closing = false
    this.#schedule(0)
  }

  /** Stops the loop and waits for a run in progress. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#closing = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#running
  }

  /** Runs soon (e.g. right after a change wrote to the outbox). */
  wake(): void {
    if (this.#stopped) return
    if (this.#running) this.#again = true
    else this.#schedule(0)
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#running = this.runOnce()
        .catch((err: unknown) => this.#logger.warn({ err }, 'signal dispatch failed'))
        .finally(() => {
          this.#running = undefined
          const again = this.#again
          this.#again = false
          this.#schedule(again ? 0 : this.#options.pollIntervalMs)
        })
    }, delayMs)
    this.#timer.unref()
  }

  /**
   * One pass: fan out a batch of pending events, push every due destination, and again until the
   * outbox is empty. Pushing after each batch (not after the whole backlog) lets the first events
   * of a mass revocation (10,000 families: 10,000 signed SETs per stream) reach receivers while
   * the rest are still being rendered.
   */
  async runOnce(): Promise<void> {
    for (;;) {
      const handled = await this.fanOut()
      await this.pushDue()
      if (handled < this.#options.batchSize || this.#closing) return
    }
  }

  /**
   * Fans out one batch of outbox events. Calls are serialized (the loop and RFC 8936 polls both
   * call it): a second caller waits and takes the next batch, so no event is rendered and signed
   * twice. @returns how many events it handled.
   */
  fanOut(): Promise<number> {
    this.#fanOutsQueued++
    const run = this.#fanOutTail.then(() => this.#fanOutBatch()).finally(() => this.#fanOutsQueued--)
    this.#fanOutTail = run.catch(() => undefined)
    return run
  }

  /**
   * For RFC 8936 polls: when a fan-out is already running (the loop after a mass revocation), waits
   * for it instead of queueing another batch behind it — what it fans out is enough to answer the
   * poll; otherwise fans out one batch.
   */
  async fanOutSome(): Promise<void> {
    if (this.#fanOutsQueued > 0) await this.#fanOutTail
    else await this.fanOut()
  }

  async #fanOutBatch(): Promise<number> {
    const events = await this.#store.listPendingSignalEvents(this.#options.batchSize)
    if (events.length === 0) return 0
    const destinations = await this.#store.listSignalDestinations({})
    const now = this.#clock.nowSeconds()
    const deliveries = []
    for (const event of events) {
      for (const destination of destinations) {
        if (event.target !== null && event.target !== destination.id) continue
        if (destination.status === 'disabled') continue
        const handler = this.#handlers.get(destination.kind)
        if (!handler) continue
        const rendered = await handler.render(destination, event)
        if (rendered) deliveries.push({ destinationId: destination.id, eventSeq: event.seq, jti: rendered.jti, payload: rendered.payload, createdAt: now })
      }
    }
    await this.#store.fanOutSignalEvents(
      events.map((e) => e.seq),
      deliveries,
    )
    return events.length
  }

  /** Pushes the pending deliveries of every due push destination, in order. */
  async pushDue(): Promise<void> {
    for (const handler of this.#handlers.values()) {
      const due = await this.#store.listDueSignalDestinations(handler.kind, this.#nowMs())
      await Promise.all(due.filter((d) => handler.isPush(d)).map((d) => this.#pushDestination(handler, d)))
    }
  }

  async #pushDestination(handler: DestinationHandler, destination: DestinationRecord): Promise<void> {
    const nowMs = this.#nowMs()
    let leaseUntil = nowMs + this.#options.leaseMs
    if (!(await this.#store.acquireDestinationLease(destination.id, this.#owner, nowMs, leaseUntil))) return
    try {
      for (;;) {
        const batch = await this.#store.listPendingSignalDeliveries(destination.id, 50)
        if (batch.length === 0) return
        for (const delivery of batch) {
          if (this.#closing) return
          // The lease must outlast this push (its timeout, plus a second): renewed only when it
          // would not, instead of one UPDATE per push.
          const leaseAt = this.#nowMs()
          if (leaseUntil - leaseAt < this.#options.pushTimeoutMs + 1000) {
            leaseUntil = leaseAt + this.#options.leaseMs
            if (!(await this.#store.acquireDestinationLease(destination.id, this.#owner, leaseAt, leaseUntil))) return
          }
          const outcome = await handler.push(destination, delivery)
          const now = this.#clock.nowSeconds()
          if (outcome.ok) {
            await this.#store.recordSignalDeliverySuccess(destination.id, delivery.eventSeq, now)
            continue
          }
          if (outcome.permanent) {
            this.#logger.warn({ destinationId: destination.id, jti: delivery.jti, error: outcome.error }, 'signal refused by the receiver')
            await this.#store.completeSignalDeliveries(destination.id, [delivery.jti], 'rejected', now, outcome.error)
            continue
          }
          const wait = backoffMs(delivery.attempts + 1, this.#options.baseBackoffMs, this.#options.maxBackoffMs, () => this.#random.int(1_000_000) / 1_000_000)
          await this.#store.recordSignalDeliveryFailure(destination.id, delivery.eventSeq, outcome.error, now, this.#nowMs() + wait)
          this.#logger.info({ destinationId: destination.id, jti: delivery.jti, attempts: delivery.attempts + 1, retryInMs: wait, error: outcome.error }, 'signal push failed; will retry')
          const failingSince = destination.failingSince ?? now
          await handler.afterFailure?.(destination, now - failingSince)
          if (wait > 0) setTimeout(() => this.wake(), wait + 5).unref()
          return
        }
      }
    } finally {
      await this.#store.releaseDestinationLease(destination.id, this.#owner)
    }
  }
}
