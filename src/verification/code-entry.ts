/**
 * User-code entry and its limits (RFC 8628 §5.1): the limiter is checked before any lookup, so
 * while a source is blocked a correct code gets the same answer as a wrong one; failed entries
 * (unknown, malformed, expired codes and codes someone else decided) count against the source.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-5.1
 */
import type { Client, ClientDirectory } from '../core/model.js'
import type { EventSink } from '../core/events.js'
import { normalizeUserCode } from '../core/user-code.js'
import type { DeviceGrantRecord, Store } from '../storage/store.js'
import type { VerificationLogger } from './logger.js'
import type { WebSession } from './sessions.js'

/** How a code reached the server: typed into the form (POST) or in a followed link (GET). */
export type CodeSource = 'typed' | 'link'

/**
 * Why a code cannot be reviewed or decided; each is a failed code entry for RFC 8628 §5.1. A code
 * this session's person decided is not a problem: it shows that decision again (double click, Back).
 */
export type CodeProblem = 'invalid' | 'expired' | 'used'

/** Who is entering a code, for the limiter. */
export interface CodeEntrySource {
  session: WebSession
  /** The browser's address. */
  ip: string
  source: CodeSource
}

/**
 * The code-entry limiter: `check` before a lookup, `countFailure` after a failed one. One
 * implementation today (fixed windows over store counters); a hardened one (sliding windows,
 * IPv6 /64 keys, a server-wide budget) replaces {@link createCodeEntryLimiter} behind this shape.
 */
export interface CodeEntryLimiter {
  /** @returns Retry-After seconds when the source is blocked, otherwise undefined. */
  check(source: CodeEntrySource, now: number): Promise<number | undefined>
  countFailure(source: CodeEntrySource, now: number): Promise<void>
}

/** Seconds until the current fixed window (aligned to multiples of its length) ends. */
export function secondsLeftInWindow(windowSeconds: number, now: number): number {
  return Math.max(1, windowSeconds - (now % windowSeconds))
}

/**
 * Counters that limit failed code entries from one source: `check` keys are read before a lookup
 * (any one at the limit blocks), `count` keys are incremented after a failed one.
 *
 * - Signed out: per session and per client IP, because a fresh cookie is free.
 * - Signed in, typed: per session and per user account instead of per IP. A signed-in user is
 *   accountable by account, and an IP-wide lock would let one attacker behind a shared NAT or
 *   proxy lock out every colleague behind the same address; signing in is how such a colleague
 *   escapes the IP-wide limit (the pages offer it).
 * - Signed in, followed link (`GET /device?user_code=…`): counted per session and per IP, not
 *   against the account, so crafted links sent to a victim cannot lock the victim's account.
 *   Checked also per IP (and per account), or a signed-in guesser could use links and sign in
 *   again for a fresh session every few tries; a blocked link still leaves typing the code.
 */
export function codeEntryKeys({ session, ip, source }: CodeEntrySource): { check: string[]; count: string[] } {
  const bySession = `code_entry:session:${session.record.idHash}`
  const byIp = `code_entry:ip:${ip}`
  if (session.user === undefined) return { check: [bySession, byIp], count: [bySession, byIp] }
  const byUser = `code_entry:user:${session.user.username}`
  if (source === 'link') return { check: [bySession, byIp, byUser], count: [bySession, byIp] }
  return { check: [bySession, byUser], count: [bySession, byUser] }
}

/**
 * Fixed-window limiter over store counters: at most `maxFailures` failed entries per key per
 * `windowSeconds` window; keys from {@link codeEntryKeys}. Reads and increments run in parallel.
 */
export function createCodeEntryLimiter(store: Store, maxFailures: number, windowSeconds: number): CodeEntryLimiter {
  return {
    async check(source, now) {
      const keys = codeEntryKeys(source).check
      const counts = await Promise.all(keys.map((k) => store.readCounter(k, windowSeconds, now)))
      return counts.some((c) => c >= maxFailures) ? secondsLeftInWindow(windowSeconds, now) : undefined
    },
    async countFailure(source, now) {
      await Promise.all(codeEntryKeys(source).count.map((k) => store.incrementCounter(k, windowSeconds, now)))
    },
  }
}

/** The decision recorded for a grant that is no longer pending. */
export function recordedOutcome(grant: DeviceGrantRecord): 'approved' | 'denied' | undefined {
  if (grant.status === 'approved' || grant.status === 'redeemed') return 'approved'
  if (grant.status === 'denied') return 'denied'
  return undefined
}

function classify(grant: DeviceGrantRecord | undefined, now: number): CodeProblem | undefined {
  if (grant === undefined) return 'invalid'
  if (grant.status !== 'pending') return 'used'
  if (grant.expiresAt <= now) return 'expired'
  return undefined
}

/** A code this session's person already decided, to show again. */
export interface AlreadyDecided {
  kind: 'already_decided'
  grant: DeviceGrantRecord
  outcome: 'approved' | 'denied'
  /** The client's name, or its id when the client is gone. */
  clientName: string
  /** The submission asked for the other decision (which is not recorded): a 409. */
  conflicts: boolean
}

/** Outcome of {@link CodeEntry.lookUp} when the code cannot be reviewed. */
export type CodeLookupFailure =
  | { kind: 'blocked'; retryAfterSeconds: number }
  | AlreadyDecided
  | { kind: 'problem'; problem: CodeProblem }
  | { kind: 'client_unavailable' }

/** Outcome of {@link CodeEntry.lookUp}. */
export type CodeLookup = CodeLookupFailure | { kind: 'found'; grant: DeviceGrantRecord; client: Client }

export interface CodeEntryDeps {
  store: Store
  clients: ClientDirectory
  limiter: CodeEntryLimiter
  events?: EventSink | undefined
  logger: VerificationLogger
}

/** The already-decided answer for `grant`, decided by this session's person. */
export function alreadyDecided(
  clients: ClientDirectory,
  grant: DeviceGrantRecord,
  outcome: 'approved' | 'denied',
  requested?: 'approved' | 'denied',
): AlreadyDecided {
  const clientName = clients.get(grant.clientId)?.name ?? grant.clientId
  return { kind: 'already_decided', grant, outcome, clientName, conflicts: requested !== undefined && requested !== outcome }
}

export function createCodeEntry(deps: CodeEntryDeps) {
  const { store, limiter, logger } = deps
  return {
    limiter,
    /**
     * The limiter check, the lookup and the failure count for one submitted code (RFC 8628 §5.1);
     * records `user_code.looked_up` for every lookup that ran.
     *
     * @param raw The code as submitted (any case, dashes, spaces).
     * @param requested The decision being submitted, if any (for the "already decided" answer).
     */
    async lookUp(from: CodeEntrySource, raw: string, now: number, requested?: 'approved' | 'denied'): Promise<CodeLookup> {
      const { session, ip } = from
      const username = session.user?.username ?? null
      const retryAfterSeconds = await limiter.check(from, now)
      if (retryAfterSeconds !== undefined) {
        logger.warn({ event: 'verification.code_entry_blocked', ip, subject: username }, 'user-code entry blocked by rate limit')
        return { kind: 'blocked', retryAfterSeconds }
      }
      const canonical = normalizeUserCode(raw)
      const grant = canonical === undefined ? undefined : await store.findDeviceGrantByUserCode(canonical)
      const decidedByYou = grant !== undefined && username !== null && grant.subject === username ? recordedOutcome(grant) : undefined
      const problem = decidedByYou === undefined ? classify(grant, now) : undefined
      await deps.events?.record({
        type: 'user_code.looked_up',
        actor: username,
        clientId: grant?.clientId ?? null,
        subject: username,
        ip,
        details: {
          outcome: problem ?? 'found',
          deviceGrantId: grant?.id ?? null,
          session: session.record.idHash.slice(0, 16),
          ...(decidedByYou === undefined ? {} : { alreadyDecided: decidedByYou }),
        },
      })
      if (decidedByYou !== undefined && grant !== undefined) {
        logger.info(
          { event: 'verification.already_decided', grantId: grant.id, outcome: decidedByYou, subject: username, ip },
          'user-code entry for a code this user already decided',
        )
        return alreadyDecided(deps.clients, grant, decidedByYou, requested)
      }
      if (problem !== undefined || grant === undefined) {
        await limiter.countFailure(from, now)
        logger.info(
          { event: 'verification.code_entry_failed', reason: problem, grantId: grant?.id, ip, subject: username },
          'user-code entry failed',
        )
        return { kind: 'problem', problem: problem ?? 'invalid' }
      }
      const client = deps.clients.get(grant.clientId)
      if (client === undefined || client.disabled) {
        logger.warn(
          { event: 'verification.client_unavailable', grantId: grant.id, clientId: grant.clientId },
          'client of device grant is unavailable',
        )
        return { kind: 'client_unavailable' }
      }
      return { kind: 'found', grant, client }
    },
  }
}

export type CodeEntry = ReturnType<typeof createCodeEntry>
