/**
 * User-code entry and its limits (RFC 8628 §5.1): the limiter admits an entry before any lookup
 * (taking its slots), so while a source is blocked a correct code gets the same answer as a wrong
 * one; failed entries (unknown, malformed, expired codes and codes someone else decided) keep their
 * slots, a found code gives them back. The limiter itself: `code-entry-limiter.ts`.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-5.1
 */
import type { Client, ClientDirectory } from '../core/model.js'
import type { EventSink } from '../core/events.js'
import { normalizeUserCode } from '../core/user-code.js'
import type { DeviceGrantRecord, Store } from '../storage/store.js'
import type { CodeEntryLimiter, CodeEntrySource } from './code-entry-limiter.js'
import type { VerificationLogger } from './logger.js'

export type { CodeEntryLimiter, CodeEntrySource, CodeSource } from './code-entry-limiter.js'

/**
 * Why a code cannot be reviewed or decided; each is a failed code entry for RFC 8628 §5.1. A code
 * this session's person decided is not a problem: it shows that decision again (double click, Back).
 */
export type CodeProblem = 'invalid' | 'expired' | 'used'

/** Seconds until the current fixed window (aligned to multiples of its length) ends. */
export function secondsLeftInWindow(windowSeconds: number, now: number): number {
  return Math.max(1, windowSeconds - (now % windowSeconds))
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
  /** Too many failed entries (RFC 8628 §5.1); `signInRequired` when the server-wide budget is spent. */
  | { kind: 'blocked'; retryAfterSeconds: number; signInRequired: boolean }
  | AlreadyDecided
  /** `attemptsLeft`: failed entries this person may still make in the window. */
  | { kind: 'problem'; problem: CodeProblem; attemptsLeft: number }
  | { kind: 'client_unavailable' }
  /**
   * Another browser session has this code's review open (claimed, see `approval.ts`): this one may
   * not review or decide it until the claim runs out, in at most `claimSeconds`. Nothing changed.
   */
  | { kind: 'claimed_elsewhere'; claimSeconds: number }

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
      const admission = await limiter.admit(from, now)
      if (admission.kind === 'blocked') {
        logger.warn(
          { event: 'verification.code_entry_blocked', ip, subject: username, signInRequired: admission.signInRequired },
          'user-code entry blocked by rate limit',
        )
        return { kind: 'blocked', retryAfterSeconds: admission.retryAfterSeconds, signInRequired: admission.signInRequired }
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
      // Only a failed entry keeps its slots.
      if (problem === undefined) await admission.release()
      if (decidedByYou !== undefined && grant !== undefined) {
        logger.info(
          { event: 'verification.already_decided', grantId: grant.id, outcome: decidedByYou, subject: username, ip },
          'user-code entry for a code this user already decided',
        )
        return alreadyDecided(deps.clients, grant, decidedByYou, requested)
      }
      if (problem !== undefined || grant === undefined) {
        logger.info(
          { event: 'verification.code_entry_failed', reason: problem, grantId: grant?.id, ip, subject: username },
          'user-code entry failed',
        )
        return { kind: 'problem', problem: problem ?? 'invalid', attemptsLeft: admission.attemptsLeft }
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
