/**
 * Sliding-window rate limits held in the database: a key owns `limit` slots, each holding the
 * time (epoch seconds) it was last taken. A slot is free when it was taken at or before
 * `now - windowSeconds`, so "at most `limit` takes in ANY span of `windowSeconds`" holds exactly —
 * unlike fixed windows aligned to the clock, which allow twice the limit across a boundary.
 *
 * Taking a slot is one conditional update (`UPDATE … SET taken_at = now WHERE key = ? AND slot = ?
 * AND taken_at = <the value just read>`), a compare-and-swap that holds when several processes or
 * instances race on one key (PostgreSQL re-checks the WHERE clause on the row it waited for;
 * SQLite serialises writers). The slot rows of a key are created on first use (`INSERT … ON
 * CONFLICT DO NOTHING`); a missing row is a free slot, so purging old rows is always safe.
 *
 * Used by the user-code entry limiter (RFC 8628 §5.1). Kysely implementation:
 * `kysely/rate-slots.ts`; rows free at every window up to a day are deleted by `purgeExpired`.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-5.1
 */
/** Outcome of {@link RateSlotStore.takeRateSlot}. */
export type SlotTake =
  /** `slot` was taken at `now`; `used` slots (this one included) are now taken in the window. */
  | { taken: true; slot: number; used: number }
  /** Every slot is taken; one frees in `retryAfterSeconds` (≥ 1). */
  | { taken: false; retryAfterSeconds: number }

/** What {@link RateSlotStore.readRateSlots} reports about one key. */
export interface SlotUsage {
  /** Slots taken within (now - windowSeconds, now]. */
  used: number
  /** Seconds until a slot frees (≥ 1) when all `limit` are taken; undefined otherwise. */
  retryAfterSeconds: number | undefined
}

/** Sliding-window rate limits; see the module comment. Times are epoch seconds. */
export interface RateSlotStore {
  /**
   * Takes one of `limit` slots of `key` when fewer than `limit` were taken within the last
   * `windowSeconds` (atomic across instances).
   * @throws {TypeError} when `limit` or `windowSeconds` is not a positive integer.
   */
  takeRateSlot(key: string, limit: number, windowSeconds: number, now: number): Promise<SlotTake>
  /** Frees a slot taken at `takenAt` (a no-op when it was taken again since). */
  releaseRateSlot(key: string, slot: number, takenAt: number): Promise<void>
  /** How many slots of `key` are taken within the window, without taking one. */
  readRateSlots(key: string, limit: number, windowSeconds: number, now: number): Promise<SlotUsage>
}
