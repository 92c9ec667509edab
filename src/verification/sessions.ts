/**
 * Web sessions of the verification pages: a random cookie value (only its SHA-256 stored), a
 * synchronizer CSRF token, and — once signed in — the person and when they signed in and
 * completed the second factor.
 *
 * `establishSession` is the one way a person becomes signed in: password sign-in and upstream
 * OpenID Connect sign-in (`src/identity/upstream-routes.ts`) both call it, so session rotation (no
 * fixation), the review claims moving with the browser, and the `session.signed_in` audit event
 * happen the same way whatever the method.
 */
import type { User, UserDirectory } from '../core/model.js'
import type { EventSink } from '../core/events.js'
import type { Random } from '../core/ports.js'
import type { Store, WebSessionRecord } from '../storage/store.js'
import { randomToken, sha256Hex } from '../system.js'
import type { VerificationLogger } from './logger.js'

/** A live session and, when signed in and the account still enabled, its person. */
export interface WebSession {
  record: WebSessionRecord
  user: User | undefined
}

/** A session with a signed-in person. */
export type SignedInSession = WebSession & { user: User }

/** A new session and the cookie value to send (the value itself is never stored). */
export interface NewSession {
  session: WebSession
  cookieValue: string
}

/** A session established for a person, and where the browser goes next (a path on this server). */
export interface EstablishedSession extends NewSession {
  session: SignedInSession
  /** `/device`, or `/device?user_code=…&typed=…` to come back to the code's review. */
  returnTo: string
}

/** Longest cookie value looked up; longer ones are no session. */
const MAX_COOKIE_LENGTH = 256

export interface SessionDeps {
  store: Store
  random: Random
  users: UserDirectory
  events?: EventSink | undefined
  logger: VerificationLogger
  /** Sign-in sessions last this long, in seconds. */
  sessionTtlSeconds: number
}

/** MFA counts only when done in this sign-in (the session is rotated at sign-in). */
export function isMfaDone(record: WebSessionRecord): boolean {
  return record.mfaAt != null && record.authTime !== null && record.mfaAt >= record.authTime
}

/**
 * Proof that a code reached the sign-in form by typing (a POST with this session's CSRF token),
 * for clients whose policy refuses verification_uri_complete: bound to the new session's secret
 * CSRF token, so a link cannot carry it. Given for every code signed in with, whatever its client,
 * so the redirect does not tell whether the code exists (RFC 8628 §5.1).
 */
export function typedCodeProof(record: WebSessionRecord, userCode: string): string {
  return sha256Hex(`typed:${record.csrfToken}:${userCode}`).slice(0, 32)
}

/** Sessions over the store; one store round-trip per load, create or delete. */
export function createSessions(deps: SessionDeps) {
  const { store } = deps

  /**
   * Creates a session (anonymous, or signed in at `now`). Stores only the hash of the value.
   * @param mfaDone The person completed a second factor in this sign-in (recorded as `mfaAt: now`).
   */
  async function start(now: number, user?: User, mfaDone = false): Promise<NewSession> {
    const cookieValue = randomToken(deps.random)
    const record: WebSessionRecord = {
      idHash: sha256Hex(cookieValue),
      csrfToken: randomToken(deps.random),
      subject: user?.username ?? null,
      authTime: user === undefined ? null : now,
      ...(user !== undefined && mfaDone ? { mfaAt: now } : {}),
      createdAt: now,
      expiresAt: now + deps.sessionTtlSeconds,
    }
    await store.createWebSession(record)
    return { session: { record, user }, cookieValue }
  }

  return {
    start,

    /**
     * The live session of a cookie value, or undefined (no, malformed, unknown or expired cookie).
     * A person disabled after signing in is treated as signed out from the next request on.
     */
    async load(cookieValue: string | undefined, now: number): Promise<WebSession | undefined> {
      if (cookieValue === undefined || cookieValue.length === 0 || cookieValue.length > MAX_COOKIE_LENGTH) return undefined
      const record = await store.findWebSession(sha256Hex(cookieValue), now)
      if (record === undefined || record.expiresAt <= now) return undefined
      let user: User | undefined
      if (record.subject !== null) {
        const found = deps.users.get(record.subject)
        if (found !== undefined && !found.disabled) user = found
      }
      return { record, user }
    },

    /**
     * Signs a person in: a new session (new cookie value and CSRF token) replaces `replacing`, so
     * a session fixed before sign-in is worth nothing after it; records `session.signed_in`.
     *
     * @param person Already authenticated by the caller (password, upstream provider…).
     * @param options.userCode Canonical user code to return to; the return path then carries
     *   {@link typedCodeProof} unless `codeFromLink`, so only call without it for a code that
     *   reached the server typed in a POST.
     * @param options.codeFromLink The code came in a link (`GET /device/sign-in?user_code=…`): the
     *   return path carries no typed-code proof, so it is treated as verification_uri_complete.
     * @param options.ip The browser's address, for the audit event.
     * @param options.mfa The sign-in itself included a second factor (an upstream provider's `amr` /
     *   `acr`): it counts as this session's MFA for step-up policies. Default: false.
     * @param options.details How the person signed in (`via`, provider, `amr`…), added to the
     *   `session.signed_in` audit event and the log line; never secrets.
     */
    async establishSession(
      person: User,
      now: number,
      options: {
        replacing?: WebSession | undefined
        userCode?: string | undefined
        codeFromLink?: boolean | undefined
        ip: string
        mfa?: boolean | undefined
        details?: Record<string, unknown> | undefined
      },
    ): Promise<EstablishedSession> {
      const fresh = await start(now, person, options.mfa === true)
      if (options.replacing !== undefined) {
        // A signed-in browser signing in again (an upstream step-up comes back this way) keeps the
        // reviews it holds: the claim belongs to the browser, and the new session is that browser.
        if (options.replacing.user !== undefined)
          await store.moveDeviceGrantReviewClaims(reviewerOf(options.replacing), reviewerOf(fresh.session), now)
        await store.deleteWebSession(options.replacing.record.idHash)
      }
      deps.logger.info({ event: 'verification.signed_in', ...options.details, subject: person.username, ip: options.ip }, 'signed in')
      await deps.events?.record({
        type: 'session.signed_in',
        actor: person.username,
        subject: person.username,
        ip: options.ip,
        ...(options.details !== undefined ? { details: options.details } : {}),
      })
      // The proof goes with every code, without looking the code up: this lookup would sit outside
      // the code-entry limiter, and a redirect that differed by the code's client would tell
      // whether the code exists (RFC 8628 §5.1). `GET /device` checks it only where policy needs it.
      const returnTo =
        options.userCode === undefined
          ? '/device'
          : options.codeFromLink === true
            ? `/device?user_code=${options.userCode}`
            : `/device?user_code=${options.userCode}&typed=${typedCodeProof(fresh.session.record, options.userCode)}`
      return { session: { record: fresh.session.record, user: person }, cookieValue: fresh.cookieValue, returnTo }
    },

    /** Ends a session (sign-out); its cookie value is worthless from now on. */
    async end(session: WebSession, ip: string): Promise<void> {
      await store.deleteWebSession(session.record.idHash)
      deps.logger.info({ event: 'verification.signed_out', subject: session.user?.username ?? null, ip }, 'signed out')
    },

    /** Records that the session's person completed the second factor at `now`. */
    async markMfaDone(session: SignedInSession, now: number): Promise<SignedInSession> {
      await store.markWebSessionMfa(session.record.idHash, now)
      return { ...session, record: { ...session.record, mfaAt: now } }
    },
  }
}

export type Sessions = ReturnType<typeof createSessions>

/**
 * The review-claim id of a browser session (see `DeviceGrantStore.claimDeviceGrantReview`):
 * derived from the session's stored hash, so the device grant row does not hold the session
 * table's key.
 */
export function reviewerOf(session: { record: WebSessionRecord }): string {
  return reviewClaimId(session.record.idHash)
}

/** {@link reviewerOf} from a session's stored id hash. */
export function reviewClaimId(sessionIdHash: string): string {
  return sha256Hex(`review:${sessionIdHash}`)
}
