/**
 * Storage of DPoP proof identifiers already seen (RFC 9449 §11.1 replay detection): the
 * `dpop_jtis` table, UNLOGGED on PostgreSQL, or Redis (see `ephemeral.ts` for what a crash of
 * either loses). The nonce key (RFC 9449 §8) is a server secret (`keys-and-secrets.ts`).
 * Kysely implementation: `kysely/dpop-replay.ts`.
 */

/** DPoP replay detection across instances; expired identifiers are deleted by `purgeExpired` (Redis: expire). */
export interface DpopReplayStore {
  /**
   * Remembers a proof identifier until `expiresAt` (epoch seconds; `now` is the current time,
   * from which a time-to-live is derived where the store expires keys itself). Returns false
   * when it was already seen (a replay), atomically across instances.
   */
  rememberDpopJti(key: string, expiresAt: number, now: number): Promise<boolean>
}
