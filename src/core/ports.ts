/**
 * Ports the pure core needs from the outside world. Core code never calls `Date.now()` or
 * `node:crypto` itself; the composition root passes these in, and tests pass fakes.
 */

/** Wall clock in epoch seconds (integer). */
export interface Clock {
  /** Current time in whole epoch seconds. */
  nowSeconds(): number
}

/** Source of cryptographic randomness. */
export interface Random {
  /** `byteLength` bytes from a CSPRNG. */
  bytes(byteLength: number): Uint8Array
  /** A uniformly random integer in `[0, maxExclusive)` without modulo bias. */
  int(maxExclusive: number): number
}
