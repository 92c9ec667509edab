/**
 * Storage of DPoP proof identifiers already seen (RFC 9449 §11.1 replay detection): the
 * `dpop_jtis` table. The nonce key (RFC 9449 §8) is a server secret (`keys-and-secrets.ts`).
 * Kysely implementation: `kysely/dpop-replay.ts`.
 */

/** DPoP replay detection across instances; expired identifiers are deleted by `purgeExpired`. */
export interface DpopReplayStore {
  /**
   * Remembers a proof identifier until `expiresAt`. Returns false when it was already seen
   * (a replay), atomically across instances.
   */
  rememberDpopJti(key: string, expiresAt: number): Promise<boolean>
}
