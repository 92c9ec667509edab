/**
 * Each PostgreSQL instance's cache of pending device grants, so that a poll of a code known to be
 * pending (RFC 8628 §3.5: `authorization_pending` / `slow_down`) needs no database read.
 *
 * Only `pending` records are kept, and only while the instance listens for changes: a change of a
 * device grant's status (approval, denial, redemption, by any instance or by hand) makes the
 * database send a notification on commit (trigger of migration 020, channel
 * {@link DEVICE_GRANT_CHANNEL}), and each instance forgets that grant when it arrives
 * (`postgres-listen.ts`). A record read while its grant was forgotten is not cached (the read may
 * hold the status before the change); changes of other grants do not hold a read back. When the
 * listening connection is lost, the whole cache is dropped and nothing is cached until it listens
 * again.
 *
 * Staleness window: a poll on another instance may still answer `authorization_pending` or
 * `slow_down` for a code approved or denied there, from the commit until that instance has read
 * the notification (normally milliseconds; at most the health check's period plus its timeout
 * when the connection dies silently, see `postgres-listen.ts`; and never longer than
 * {@link PENDING_GRANT_MAX_AGE_MS}). The client's next poll sees the decision. Tokens are never
 * issued from the cache: an approved code is always read from, and redeemed in, the database, so
 * exactly-once redemption does not depend on it.
 */
import type { DeviceGrantRecord } from './device-grants.js'

/** The notification channel of device grant status changes; payload `<schema> <device grant id>`. */
export const DEVICE_GRANT_CHANNEL = 'devicegate_device_grants'

/** Longest a record is served from the cache before it is read again, in milliseconds. */
export const PENDING_GRANT_MAX_AGE_MS = 30_000

/** Most records kept; the oldest go first. About 0.5 KB each. */
export const PENDING_GRANT_MAX_ENTRIES = 50_000

/**
 * Most ids whose last forget is remembered (to refuse the reads of them begun before it); about
 * 100 bytes each. When one more is forgotten, the oldest is let go and every read begun before
 * its forget is refused, whatever its id.
 */
export const PENDING_GRANT_MAX_FORGOTTEN = 4_096

interface Entry {
  record: DeviceGrantRecord
  /** `Date.now()` when it was read. */
  readAt: number
}

export class PendingGrantCache {
  readonly #byId = new Map<string, Entry>()
  readonly #maxEntries: number
  readonly #maxAgeMs: number
  readonly #clock: () => number
  readonly #maxForgotten: number
  #live = false
  /** Bumped by every forget, start and stop; a ticket is its value when the read began. */
  #epoch = 0
  /**
   * Id → epoch of its last forget, oldest first: a read of that id whose ticket is older may hold
   * its status before the change. At most `#maxForgotten` ids.
   */
  readonly #forgotten = new Map<string, number>()
  /** Tickets older than this are refused for every id (start, stop, forgotten ids let go). */
  #floor = 0

  /**
   * @param opts.maxEntries Most records kept (default {@link PENDING_GRANT_MAX_ENTRIES}).
   * @param opts.maxAgeMs Longest a record is served, milliseconds (default {@link PENDING_GRANT_MAX_AGE_MS}).
   * @param opts.clock Milliseconds now (default `Date.now`).
   * @param opts.maxForgotten Most forgotten ids remembered (default {@link PENDING_GRANT_MAX_FORGOTTEN}).
   */
  constructor(opts: { maxEntries?: number; maxAgeMs?: number; clock?: () => number; maxForgotten?: number } = {}) {
    this.#maxEntries = opts.maxEntries ?? PENDING_GRANT_MAX_ENTRIES
    this.#maxForgotten = Math.max(1, opts.maxForgotten ?? PENDING_GRANT_MAX_FORGOTTEN)
    this.#maxAgeMs = opts.maxAgeMs ?? PENDING_GRANT_MAX_AGE_MS
    this.#clock = opts.clock ?? Date.now
  }

  /** Whether changes are being listened for (records are cached only then). */
  get live(): boolean {
    return this.#live
  }

  /** Records held. */
  get size(): number {
    return this.#byId.size
  }

  /** Forgotten ids remembered (at most `opts.maxForgotten`). */
  get forgottenSize(): number {
    return this.#forgotten.size
  }

  /**
   * The pending record of the device grant with this id, if cached and fresh. Do not modify it.
   * The caller still checks the presented device code against the record's `deviceCodeHash`.
   */
  get(id: string): DeviceGrantRecord | undefined {
    const entry = this.#byId.get(id)
    if (entry === undefined) return undefined
    if (this.#clock() - entry.readAt >= this.#maxAgeMs) {
      this.#byId.delete(id)
      return undefined
    }
    return entry.record
  }

  /**
   * Take before reading a device grant from the database; give it back to {@link offer} with the
   * record read. Undefined when nothing may be cached (not listening).
   */
  ticket(): number | undefined {
    return this.#live ? this.#epoch : undefined
  }

  /**
   * Caches `record` if it is pending, and neither its grant was forgotten nor the listening
   * restarted or stopped since `ticket` was taken (a notification may have overtaken the read).
   * Forgets of other grants do not matter.
   */
  offer(ticket: number | undefined, record: DeviceGrantRecord): void {
    if (ticket === undefined || ticket < this.#floor || !this.#live || record.status !== 'pending') return
    const forgotAt = this.#forgotten.get(record.id)
    if (forgotAt !== undefined && forgotAt > ticket) return
    this.#byId.delete(record.id)
    if (this.#byId.size >= this.#maxEntries) {
      const oldest = this.#byId.keys().next().value
      if (oldest !== undefined) this.#byId.delete(oldest)
    }
    this.#byId.set(record.id, { record, readAt: this.#clock() })
  }

  /** Forgets the device grant with this id (its status changed). */
  forget(id: string): void {
    this.#epoch++
    this.#byId.delete(id)
    // Re-inserted, so that the map stays in epoch order and its first id is the oldest forget.
    this.#forgotten.delete(id)
    if (this.#forgotten.size >= this.#maxForgotten) {
      const [oldest, at] = this.#forgotten.entries().next().value!
      this.#forgotten.delete(oldest)
      // Reads begun before that forget can no longer be told apart: refuse them all.
      this.#floor = at
    }
    this.#forgotten.set(id, this.#epoch)
  }

  /** Listening has begun: records read from now on may be cached. */
  start(): void {
    this.#restart()
    this.#live = true
  }

  /** Listening has stopped (connection lost, store closed): drops every record, caches none. */
  stop(): void {
    this.#restart()
    this.#live = false
    this.#byId.clear()
  }

  /** Every ticket taken before now is refused. */
  #restart(): void {
    this.#floor = ++this.#epoch
    this.#forgotten.clear()
  }
}
