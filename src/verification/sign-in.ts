/**
 * Password sign-in for approvers, and its limits: failed sign-ins are limited per client IP and
 * username (guessing one account's password) and per client IP (one password sprayed over many
 * usernames); either at its limit blocks, even for the right password.
 */
import type { UserDirectory } from '../core/model.js'
import type { EventSink } from '../core/events.js'
import { normalizeUserCode } from '../core/user-code.js'
import type { Store } from '../storage/store.js'
import { sha256Hex } from '../system.js'
import { secondsLeftInWindow } from './code-entry.js'
import type { VerificationLogger } from './logger.js'
import type { EstablishedSession, Sessions, WebSession } from './sessions.js'

/** Failed sign-ins allowed per client IP and username in one window. */
export const SIGN_IN_MAX_FAILURES = 10
/**
 * Failed sign-ins allowed per client IP over all usernames in one window, so one address cannot
 * spray a password across many accounts (each IP+username pair stays under its own limit). High
 * enough that honest typos of everyone behind one shared NAT do not reach it; an attacker who does
 * reach it blocks sign-in from that address only, for one window.
 */
export const SIGN_IN_MAX_FAILURES_PER_IP = 100
/** Window of the sign-in limiter in seconds. */
export const SIGN_IN_WINDOW_SECONDS = 600

/** Longest username and password considered; longer input is a failed sign-in (bounds argon2 work). */
export const MAX_USERNAME_LENGTH = 256
const MAX_PASSWORD_LENGTH = 1024

/** Outcome of {@link SignIn.signIn}. */
export type SignInOutcome =
  | { kind: 'blocked'; retryAfterSeconds: number }
  /** Wrong username or password (or blank, or too long); counted. `username` is cut to length. */
  | { kind: 'failed'; userCode: string | undefined; username: string }
  | { kind: 'signed_in'; established: EstablishedSession }

export interface SignInDeps {
  store: Store
  users: UserDirectory
  sessions: Sessions
  events?: EventSink | undefined
  logger: VerificationLogger
}

export function createSignIn(deps: SignInDeps) {
  const { store, logger } = deps
  return {
    /**
     * Checks a username and password and, when right, establishes a new session replacing
     * `session` (no fixation). Records `session.sign_in_failed` or `session.signed_in`.
     *
     * @param input.userCode The code the form carried (as submitted); the person returns to it.
     * @param input.codeFromLink The form got the code from a link (`GET /device/sign-in?user_code=…`),
     *   not from a typed entry: the return path is then a link's (no typed-code proof).
     */
    async signIn(
      input: { session: WebSession; username: string; password: string; userCode: string | undefined; codeFromLink?: boolean | undefined; ip: string },
      now: number,
    ): Promise<SignInOutcome> {
      const { username, password, ip } = input
      const canonical = input.userCode === undefined ? undefined : normalizeUserCode(input.userCode)
      const limits = [
        { key: `sign_in:${ip}:${sha256Hex(username)}`, max: SIGN_IN_MAX_FAILURES },
        { key: `sign_in_ip:${ip}`, max: SIGN_IN_MAX_FAILURES_PER_IP },
      ]
      const counts = await Promise.all(limits.map((l) => store.readCounter(l.key, SIGN_IN_WINDOW_SECONDS, now)))
      const blockedBy = limits.find((l, i) => (counts[i] ?? 0) >= l.max)
      if (blockedBy !== undefined) {
        logger.warn(
          { event: 'verification.sign_in_blocked', ip, limit: blockedBy.max === SIGN_IN_MAX_FAILURES ? 'ip_username' : 'ip' },
          'sign-in blocked by rate limit',
        )
        return { kind: 'blocked', retryAfterSeconds: secondsLeftInWindow(SIGN_IN_WINDOW_SECONDS, now) }
      }
      const user =
        username.length > 0 && username.length <= MAX_USERNAME_LENGTH && password.length > 0 && password.length <= MAX_PASSWORD_LENGTH
          ? await deps.users.authenticate(username, password)
          : undefined
      if (user === undefined) {
        await Promise.all(limits.map((l) => store.incrementCounter(l.key, SIGN_IN_WINDOW_SECONDS, now)))
        const known = username.length <= MAX_USERNAME_LENGTH && deps.users.get(username) !== undefined
        await deps.events?.record({ type: 'session.sign_in_failed', subject: known ? username : null, ip, details: { knownUser: known } })
        logger.info({ event: 'verification.sign_in_failed', ip }, 'sign-in failed')
        return { kind: 'failed', userCode: canonical, username: username.slice(0, MAX_USERNAME_LENGTH) }
      }
      // A code that reached this form typed (or after the typed-code check) returns with the
      // typed-code proof; one from a link does not.
      const established = await deps.sessions.establishSession(user, now, {
        replacing: input.session,
        userCode: canonical,
        codeFromLink: input.codeFromLink,
        ip,
        details: { via: 'password' },
      })
      return { kind: 'signed_in', established }
    },
  }
}

export type SignIn = ReturnType<typeof createSignIn>
