/**
 * The user-code entry limiter (RFC 8628 §5.1): sliding windows over store-held slots, so the limit
 * holds for ANY span of `windowSeconds` (a fixed window aligned to the clock lets one source make
 * twice the limit across a boundary), on every instance sharing the database, across restarts.
 *
 * Each entry first TAKES a slot of every key it counts against (atomic, see `RateSlotStore`), so
 * concurrent requests cannot all pass a check and then all fail; a lookup that finds a live code
 * gives its slots back. A blocked entry is answered before any lookup, so while blocked a correct
 * code gets the same answer as a wrong one.
 *
 * Keys (every one of `take` must have a free slot; every one of `check` must not be full):
 *
 * | who | take | check |
 * |---|---|---|
 * | signed out | session, source, server | — |
 * | signed in, typed | session, account, signed-in source | — |
 * | signed in, link | session, signed-in source | account |
 *
 * - The source is the browser's address: IPv4 whole, IPv6 by its /`ipv6PrefixLength` network
 *   (default /64: one subscriber or host gets one /64, so per-address keys would give it 2^64
 *   budgets), IPv4-mapped IPv6 (`::ffff:192.0.2.1`) as IPv4.
 * - Signed in, typed: the account and the signed-in source budget replace the signed-out source
 *   budget, so an anonymous guesser behind a shared NAT cannot lock out colleagues who sign in;
 *   the signed-in source budget bounds a source with many accounts.
 * - Signed in, followed link (`GET /device?user_code=…`, also the way back from the 429 page's
 *   sign-in link): taken per session and signed-in source, not per account, so crafted links sent
 *   to a victim cannot exhaust the victim's account; still checked per account, so links are no
 *   way around it.
 * - Server: failed signed-out entries of the whole server. Beyond it, code entry needs sign-in
 *   (answered `signInRequired`) and `user_code.entry_budget_exhausted` is recorded (at most once
 *   per window per instance), which raises the `user_code_guessing` anomaly (`source: server`).
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-5.1
 */
import type { EventSink } from '../core/events.js'
import { networkOf } from '../governance/network.js'
import type { RateSlotStore } from '../storage/rate-slots.js'
import type { WebSession } from './sessions.js'

/** How a code reached the server: typed into the form (POST) or in a followed link (GET). */
export type CodeSource = 'typed' | 'link'

/** Who is entering a code, for the limiter. */
export interface CodeEntrySource {
  session: WebSession
  /** The browser's address. */
  ip: string
  source: CodeSource
}

/** The limits; see the module comment. Counts are failed entries, times seconds. */
export interface CodeEntryLimits {
  /** Per session, per signed-out source and per account, in one window. Default: 5. */
  maxFailures: number
  /** Length of the sliding window in seconds. Default: 600 (a device code's usual life). */
  windowSeconds: number
  /**
   * Per source address for signed-in sessions (all accounts together). Default: 10 — twice the
   * per-account limit, so one account guessing behind a shared address (NAT, proxy) does not lock
   * out colleagues who sign in there, while a source with many accounts stays bounded.
   */
  signedInSourceMaxFailures: number
  /** Failed signed-out entries of the whole server per window. Default: 500. */
  serverMaxFailures: number
  /** IPv6 sources are keyed by this prefix length, 32–128. Default: 64. */
  ipv6PrefixLength: number
}

/** Outcome of {@link CodeEntryLimiter.admit}. */
export type Admission =
  | {
      kind: 'blocked'
      /** Seconds until an attempt frees (for Retry-After, RFC 6585 §4). */
      retryAfterSeconds: number
      /** The server-wide budget is spent: only signed-in entry continues. */
      signInRequired: boolean
    }
  | {
      kind: 'admitted'
      /** Attempts left to this person (session, source or account, whichever is lowest) if this one fails. */
      attemptsLeft: number
      /** Gives the taken slots back: the entry was not a failure. */
      release(): Promise<void>
    }

/** The code-entry limiter: `admit` before a lookup; `countFailure` for a failure found later. */
export interface CodeEntryLimiter {
  admit(source: CodeEntrySource, now: number): Promise<Admission>
  /**
   * Counts one failed entry after an admitted lookup turned out to fail (a wrong confirmation of a
   * found code). @returns attempts left, as in {@link Admission}.
   */
  countFailure(source: CodeEntrySource, now: number): Promise<number>
}

/**
 * The key of a source address: `192.0.2.1/32` (IPv4, also when IPv4-mapped), `2001:db8:1:2::/64`
 * (IPv6 at `ipv6PrefixLength`); anything else as given.
 */
export function sourceKeyOf(ip: string, ipv6PrefixLength: number): string {
  return networkOf(ip, 32, ipv6PrefixLength) ?? ip
}

interface Key {
  key: string
  limit: number
  /** Counted in the attempts left shown to the person (not the server budget). */
  personal: boolean
}

/** The keys an entry takes and checks; see the module comment. */
export function codeEntryKeys(from: CodeEntrySource, limits: CodeEntryLimits): { take: Key[]; check: Key[] } {
  const { session, ip, source } = from
  const src = sourceKeyOf(ip, limits.ipv6PrefixLength)
  const bySession: Key = { key: `code_entry:session:${session.record.idHash}`, limit: limits.maxFailures, personal: true }
  const bySource: Key = { key: `code_entry:source:${src}`, limit: limits.maxFailures, personal: true }
  if (session.user === undefined) {
    const server: Key = { key: 'code_entry:server', limit: limits.serverMaxFailures, personal: false }
    return { take: [bySession, bySource, server], check: [] }
  }
  const byUser: Key = { key: `code_entry:user:${session.user.username}`, limit: limits.maxFailures, personal: true }
  const bySignedInSource: Key = { key: `code_entry:signed_in_source:${src}`, limit: limits.signedInSourceMaxFailures, personal: true }
  if (source === 'link') return { take: [bySession, bySignedInSource], check: [byUser] }
  return { take: [bySession, byUser, bySignedInSource], check: [] }
}

/** Builds the sliding-window limiter over `slots`. */
export function createCodeEntryLimiter(slots: RateSlotStore, limits: CodeEntryLimits, events?: EventSink): CodeEntryLimiter {
  const { windowSeconds } = limits
  /** When this instance last recorded the server budget as spent (epoch seconds). */
  let budgetReportedAt = Number.NEGATIVE_INFINITY

  async function reportBudgetSpent(from: CodeEntrySource, retryAfterSeconds: number, now: number): Promise<void> {
    if (now < budgetReportedAt + windowSeconds) return
    budgetReportedAt = now
    await events?.record({
      type: 'user_code.entry_budget_exhausted',
      actor: null,
      ip: from.ip,
      details: { limit: limits.serverMaxFailures, windowSeconds, retryAfterSeconds },
    })
  }

  async function take(from: CodeEntrySource, now: number): Promise<Admission> {
    const { take: taking, check } = codeEntryKeys(from, limits)
    const checked = await Promise.all(check.map((k) => slots.readRateSlots(k.key, k.limit, windowSeconds, now)))
    const checkBlocked = checked.flatMap((u) => (u.retryAfterSeconds === undefined ? [] : [u.retryAfterSeconds]))
    if (checkBlocked.length > 0) return { kind: 'blocked', retryAfterSeconds: Math.max(...checkBlocked), signInRequired: false }
    const taken = await Promise.all(taking.map(async (k) => ({ k, result: await slots.takeRateSlot(k.key, k.limit, windowSeconds, now) })))
    const giveBack = () =>
      Promise.all(taken.flatMap(({ k, result }) => (result.taken ? [slots.releaseRateSlot(k.key, result.slot, now)] : []))).then(() => {})
    const refused = taken.filter((t) => !t.result.taken)
    if (refused.length > 0) {
      await giveBack()
      const retryAfterSeconds = Math.max(...refused.map((t) => (t.result.taken ? 0 : t.result.retryAfterSeconds)))
      const signInRequired = refused.some((t) => !t.k.personal)
      if (signInRequired) await reportBudgetSpent(from, retryAfterSeconds, now)
      return { kind: 'blocked', retryAfterSeconds, signInRequired }
    }
    const attemptsLeft = Math.min(...taken.filter((t) => t.k.personal).map((t) => (t.result.taken ? t.k.limit - t.result.used : 0)))
    return { kind: 'admitted', attemptsLeft, release: giveBack }
  }

  return {
    admit: take,
    async countFailure(from, now) {
      const admission = await take(from, now)
      return admission.kind === 'admitted' ? admission.attemptsLeft : 0
    },
  }
}
