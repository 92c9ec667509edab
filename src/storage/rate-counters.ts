/**
 * Storage of the shared fixed-window counters behind rate limits (e.g. user-code entry,
 * RFC 8628 §5.1), shared by every instance: the `rate_counters` table. Kysely implementation:
 * `kysely/rate-counters.ts`.
 */

/** Fixed-window counters; windows that are over are deleted by `purgeExpired`. */
export interface RateCounterStore {
  /**
   * Adds one to the counter `key` in the fixed window that contains `now` and returns the new
   * count. Windows are `windowSeconds` long, aligned to multiples of it.
   */
  incrementCounter(key: string, windowSeconds: number, now: number): Promise<number>
  /** Reads the counter `key` in the current window (0 when absent). */
  readCounter(key: string, windowSeconds: number, now: number): Promise<number>
}

/**
 * Start (epoch seconds) of the aligned fixed window of `windowSeconds` that contains `now`.
 * @throws {TypeError} when `windowSeconds` is not a positive integer.
 */
export function windowStartOf(windowSeconds: number, now: number): number {
  if (!Number.isInteger(windowSeconds) || windowSeconds <= 0) {
    throw new TypeError(`windowSeconds must be a positive integer, got ${windowSeconds}`)
  }
  return Math.floor(now / windowSeconds) * windowSeconds
}
