/**
 * Ephemeral state of several instances on PostgreSQL: RFC 8628 §3.5 poll times and RFC 9449
 * §11.1 DPoP `jti` replay entries, kept off the durable commit path.
 *
 * Both are written on hot paths (every poll; every DPoP proof) and both are worthless a minute
 * later, so a commit that waits for the WAL flush buys nothing. Two places hold them:
 *
 * - `redis` (`storage.ephemeral.url: redis://…`), the recommended one: one Lua script per poll,
 *   one `SET NX EX` per proof; the database sees only the batched poll write-back. Measured
 *   (`bench/ephemeral.mjs`): 40 µs of CPU per poll decision in all, against 327 µs on UNLOGGED
 *   tables and 534 µs on the old durable path.
 * - `unlogged` (the default when no Redis is configured): UNLOGGED tables in the same database
 *   (`device_poll_times`, `dpop_jtis`; migration `008_ephemeral_unlogged`). A transaction that
 *   writes only unlogged tables writes no WAL and does not wait for a flush; a poll is one
 *   statement. Nothing else to run.
 *
 * Either way a poll's decision is atomic across instances (one statement / one script), and the
 * decided `(last poll, interval)` is written back to the `device_grants` row within a second, in
 * one batched UPDATE that only moves the values forward ({@link SharedPollTimes}).
 *
 * What a crash of the ephemeral store loses (see README "Several instances"):
 * - poll times: the state is rebuilt from the row, at most one second old: a client polling too
 *   fast gets at most one `authorization_pending` where it would have got `slow_down`, and an
 *   interval grown by `slow_down` may fall back by the increments of that last second. Harmless:
 *   RFC 8628 §3.5 rate limiting is advisory for well-behaved clients.
 * - DPoP jtis: every entry. A proof captured before the crash can be replayed once more, only
 *   while its `iat` is still accepted: at most 65 s (`DPOP_MAX_AGE_SECONDS` 60 +
 *   `DPOP_MAX_SKEW_SECONDS` 5, `protocol/dpop.ts`) after it was made, and only at the same method and URI (`htm`, `htu`), with
 *   the same access token (`ath`), and, with nonces required, within the nonce's 60–120 s.
 *   PostgreSQL truncates UNLOGGED tables after a crash and a promoted standby starts with them
 *   empty (they are not replicated); Redis without persistence loses them on any restart.
 * - DPoP nonces are stateless (an HMAC of the time slot, `protocol/dpop-nonce.ts`): nothing lost.
 * - Fixed-window rate-limit counters (sign-in, TOTP failures), kept in Redis when it is the
 *   backend (`RedisEphemeralStore` implements `RateCounterStore`; on UNLOGGED they stay in the
 *   durable `rate_counters` table): the current window's counts, one fresh budget per restart.
 *
 * Exactly-once redemption of device codes, refresh rotation and revocation stay durable
 * PostgreSQL transactions; nothing here is consulted for them.
 */

/** A poll decision (RFC 8628 §3.5). */
export interface PollDecision {
  /** The previous poll was less than the interval ago; the interval grew by 5 s. */
  tooFast: boolean
  /** The interval in force after this poll, seconds. */
  intervalSeconds: number
}

/** Where the ephemeral state lives: see the file comment. */
export type EphemeralBackend = { kind: 'unlogged' } | { kind: 'redis'; url: string; keyPrefix: string }

/** The shared, non-durable store of poll times and DPoP jtis of one PostgreSQL-backed process. */
export interface EphemeralStore {
  /** `unlogged` or `redis`. */
  readonly kind: EphemeralBackend['kind']
  /**
   * Decides one poll of device grant `id` at `now` (epoch seconds) atomically across instances:
   * too fast when `now < last poll + interval`; then the interval grows by 5 s. Either way the
   * last poll becomes `now`. A grant seen for the first time (or after its entry was evicted or
   * lost) starts from its `device_grants` row.
   * @returns undefined when no device grant has this id.
   */
  decidePoll(id: string, now: number): Promise<PollDecision | undefined>
  /**
   * Remembers a DPoP proof identifier until `expiresAt` (epoch seconds, `now` the current time);
   * false when it was already there (a replay). Atomic across instances.
   */
  rememberJti(key: string, expiresAt: number, now: number): Promise<boolean>
  /** Releases connections. */
  close(): Promise<void>
}
