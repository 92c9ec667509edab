/**
 * The verification pages of the Device Authorization Grant (RFC 8628 §3.3): enter the code,
 * sign in, review the request, approve or deny.
 *
 * Routes (all HTML, all `Cache-Control: no-store`):
 * - `GET  /device`                  code-entry form; `?user_code=…` (verification_uri_complete,
 *                                   RFC 8628 §3.3.1) pre-fills the code and shows the sign-in or
 *                                   review page, but never decides anything by itself.
 * - `POST /device`                  `user_code`, `csrf_token` → sign-in or review page;
 *                                   with `decision=approve|deny` → records the decision.
 * - `GET  /device/sign-in`          the sign-in form without a code (sign in first, then enter it).
 * - `POST /device/sign-in`          `username`, `password`, `csrf_token`, optional `user_code`
 *                                   → 303 back to `/device[?user_code=…&typed=…]` with a new
 *                                   session (`typed`: proof the code was typed, see below).
 * - `POST /device/sign-out`         `csrf_token` → deletes the session, 303 to `/device`.
 *
 * Protections: a synchronizer CSRF token bound to the `dg_session` cookie, plus Origin (must be
 * the configured issuer's) and Sec-Fetch-Site checks (RFC 6749 §10.12); session rotation at
 * sign-in (no fixation); code-entry rate limiting before any lookup (RFC 8628 §5.1); failed
 * sign-ins limited per IP and username and per IP;
 * the review page shows app, scopes, origin IP, user agent and time of the request so a user can
 * spot remote phishing (RFC 8628 §5.4). Framing is forbidden by the HTTP layer's headers.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.3
 */
import type {} from '@fastify/cookie'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type {} from '../http/request-context.js'
import { parseScope, type Client, type User } from '../core/model.js'
import { formatUserCode, normalizeUserCode } from '../core/user-code.js'
import type { DeviceGrantRecord, WebSessionRecord } from '../storage/store.js'
import { constantTimeEqual, randomToken, sha256Hex } from '../system.js'
import type { VerificationDeps } from './deps.js'
import type { PolicyDecision, PostureFacts } from '../policy/model.js'
import { checkTotpCode, findUserTotpSecret, newTotpSecret, totpUri } from '../verification/totp.js'
import { policyDecidedEvent } from '../policy/events.js'
import {
  type SignedIn,
  formatDuration,
  renderCodeEntryPage,
  renderErrorPage,
  renderResultPage,
  renderReviewPage,
  renderSignInPage,
  renderPolicyDeniedPage,
  renderTotpEnrolPage,
  type ReviewPolicyView,
} from './templates.js'

/** Name of the verification-page session cookie. */
export const SESSION_COOKIE = 'dg_session'
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

/**
 * The challenge of every 401 page: RFC 9110 §11.6.1 and §15.5.2 require one on each 401. The pages
 * ask for credentials with an HTML form, not HTTP authentication, so the scheme is `Form`: no
 * browser implements it, so none answers with a credentials dialog (as it would for Basic), and
 * the page itself is shown.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-15.5.2
 */
export const SIGN_IN_CHALLENGE = 'Form realm="devicegate"'

/** Longest username and password considered; longer input is a failed sign-in (bounds argon2 work). */
const MAX_USERNAME_LENGTH = 256
const MAX_PASSWORD_LENGTH = 1024
/** Longest typed code kept in the field after a failed entry. */
const MAX_KEPT_CODE_LENGTH = 64

type Form = Record<string, string | string[] | undefined>

/** A live session and, when signed in and still enabled, its user. */
interface Session {
  record: WebSessionRecord
  user: User | undefined
}

/**
 * Why a code cannot be reviewed or decided; each is a failed code entry for RFC 8628 §5.1. A code
 * this session's user decided is not a problem: it shows that decision again (double click, Back).
 */
type CodeProblem = 'invalid' | 'expired' | 'used'

/** How a code reached the server: typed into the form (POST) or in a followed link (GET). */
type CodeSource = 'typed' | 'link'

/** The decision recorded for a grant that is no longer pending. */
function recordedOutcome(grant: DeviceGrantRecord): 'approved' | 'denied' | undefined {
  if (grant.status === 'approved' || grant.status === 'redeemed') return 'approved'
  if (grant.status === 'denied') return 'denied'
  return undefined
}

/**
 * Registers the verification routes. The caller has already registered @fastify/cookie,
 * @fastify/formbody and the security headers (CSP with `frame-ancestors 'none'`,
 * X-Frame-Options); see `VERIFICATION_PAGE_CSP_DIRECTIVES` in `templates.ts` for the policy
 * these pages need.
 */
export async function registerVerificationPages(
  app: FastifyInstance,
  deps: VerificationDeps,
): Promise<void> {
  const { store, clock, logger } = deps
  // Programmer misuse (not an origin) fails here, at start-up.
  const issuerOrigin = new URL(deps.issuerOrigin).origin

  // --- sessions -------------------------------------------------------------------------------

  async function loadSession(request: FastifyRequest, now: number): Promise<Session | undefined> {
    const value = request.cookies[SESSION_COOKIE]
    if (value === undefined || value.length === 0 || value.length > 256) return undefined
    const record = await store.findWebSession(sha256Hex(value), now)
    if (record === undefined || record.expiresAt <= now) return undefined
    let user: User | undefined
    if (record.subject !== null) {
      const found = deps.users.get(record.subject)
      // A user disabled after signing in is treated as signed out from the next request on.
      if (found !== undefined && !found.disabled) user = found
    }
    return { record, user }
  }

  /** Creates a session (anonymous or signed in) and sets its cookie. Stores only the hash. */
  async function startSession(reply: FastifyReply, now: number, user?: User): Promise<Session> {
    const value = randomToken(deps.random)
    const record: WebSessionRecord = {
      idHash: sha256Hex(value),
      csrfToken: randomToken(deps.random),
      subject: user?.username ?? null,
      authTime: user === undefined ? null : now,
      createdAt: now,
      expiresAt: now + deps.sessionTtlSeconds,
    }
    await store.createWebSession(record)
    reply.setCookie(SESSION_COOKIE, value, {
      httpOnly: true,
      secure: true,
      sameSite: 'lax',
      path: '/',
    })
    return { record, user }
  }

  /** What the pages need to show "Signed in as" and the Sign out button; undefined when signed out. */
  function signedInOf(session: Session): SignedIn | undefined {
    return session.user === undefined
      ? undefined
      : { username: session.user.username, csrfToken: session.record.csrfToken }
  }

  async function ensureSession(
    request: FastifyRequest,
    reply: FastifyReply,
    now: number,
  ): Promise<Session> {
    return (await loadSession(request, now)) ?? startSession(reply, now)
  }

  /**
   * Whether an `Origin` header names the configured issuer's origin. Only configuration is trusted:
   * the request's own Host (or X-Forwarded-Host) is chosen by whoever sends it, so comparing with it
   * would let a DNS-rebinding page pass. The header is parsed so that an explicit default port
   * (`http://localhost:80`) matches like the serialised origin does.
   */
  function isIssuerOrigin(origin: string): boolean {
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+$/i.test(origin)) return false
    try {
      return new URL(origin).origin === issuerOrigin
    } catch {
      return false
    }
  }

  /**
   * A state-changing POST is accepted only from this origin with this session's CSRF token
   * (RFC 6749 §10.12). The Origin header, when a browser sends it, must be the issuer's; a
   * browser's `Sec-Fetch-Site: cross-site` is refused outright. SameSite=Lax on the cookie is
   * defence in depth, not the control.
   */
  function isTrustedPost(
    request: FastifyRequest,
    session: Session | undefined,
    form: Form,
  ): boolean {
    if (session === undefined) return false
    if (request.headers['sec-fetch-site'] === 'cross-site') return false
    const origin = request.headers.origin
    // The configured issuer is the public origin (behind a TLS proxy fastify itself sees http).
    if (origin !== undefined && !isIssuerOrigin(origin)) return false
    const token = form.csrf_token
    if (typeof token !== 'string' || token.length === 0) return false
    return constantTimeEqual(token, session.record.csrfToken)
  }

  // --- rate limiting (RFC 8628 §5.1) ----------------------------------------------------------

  /**
   * Counters that limit failed code entries from one source: `check` are read before a lookup
   * (any one at the limit blocks), `count` are incremented after a failed one.
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
  function codeEntryKeys(
    request: FastifyRequest,
    session: Session,
    source: CodeSource,
  ): { check: string[]; count: string[] } {
    const bySession = `code_entry:session:${session.record.idHash}`
    const byIp = `code_entry:ip:${request.clientIp}`
    if (session.user === undefined) return { check: [bySession, byIp], count: [bySession, byIp] }
    const byUser = `code_entry:user:${session.user.username}`
    if (source === 'link') return { check: [bySession, byIp, byUser], count: [bySession, byIp] }
    return { check: [bySession, byUser], count: [bySession, byUser] }
  }

  /** Seconds until the current fixed window (aligned to multiples of its length) ends. */
  function secondsLeftInWindow(windowSeconds: number, now: number): number {
    return Math.max(1, windowSeconds - (now % windowSeconds))
  }

  /** Returns Retry-After seconds when any counter has reached `max`, otherwise undefined. */
  async function blockedFor(
    keys: readonly string[],
    max: number,
    windowSeconds: number,
    now: number,
  ): Promise<number | undefined> {
    const counts = await Promise.all(keys.map((k) => store.readCounter(k, windowSeconds, now)))
    return counts.some((c) => c >= max) ? secondsLeftInWindow(windowSeconds, now) : undefined
  }

  async function countFailure(keys: readonly string[], windowSeconds: number, now: number) {
    await Promise.all(keys.map((k) => store.incrementCounter(k, windowSeconds, now)))
  }

  // --- rendering ------------------------------------------------------------------------------

  /** Sends a page with no-store; a 401 also gets {@link SIGN_IN_CHALLENGE} (RFC 9110 §15.5.2). */
  function send(reply: FastifyReply, status: number, page: string): FastifyReply {
    if (status === 401) reply.header('www-authenticate', SIGN_IN_CHALLENGE)
    return reply
      .code(status)
      .header('cache-control', 'no-store')
      .header('pragma', 'no-cache')
      .type('text/html; charset=utf-8')
      .send(page)
  }

  function sendForbidden(reply: FastifyReply, request: FastifyRequest, reason: string) {
    logger.warn(
      { event: 'verification.request_refused', reason, ip: request.clientIp },
      'verification POST refused',
    )
    return send(
      reply,
      403,
      renderErrorPage({
        title: 'Request not accepted',
        message: 'This form could not be verified, so nothing was changed.',
        detail: 'Open the device page again and retry from there.',
      }),
    )
  }

  /**
   * 429 with Retry-After (RFC 6585 §4). For code entry (`session` given) a signed-out visitor is
   * told they can sign in to continue, since the IP-wide limit does not apply once signed in; a
   * signed-in one who followed a link is told to type the code instead.
   */
  function sendTooManyRequests(
    reply: FastifyReply,
    retryAfterSeconds: number,
    codeEntry?: { session: Session; source: CodeSource },
  ) {
    reply.header('retry-after', String(retryAfterSeconds))
    const signedIn = codeEntry === undefined ? undefined : signedInOf(codeEntry.session)
    return send(
      reply,
      429,
      renderErrorPage({
        title: 'Too many attempts',
        message: `Too many attempts. Try again in ${formatDuration(retryAfterSeconds)}.`,
        detail:
          signedIn !== undefined && codeEntry?.source === 'link'
            ? 'If you opened a link, enter the code shown on your device yourself instead.'
            : undefined,
        signedIn,
        offerSignIn: codeEntry !== undefined && signedIn === undefined,
      }),
    )
  }

  /** Code entry again, with what was typed kept (escaped by the template) when it was typed. */
  function sendCodeProblem(reply: FastifyReply, session: Session, problem: CodeProblem, typed?: string) {
    const message = {
      invalid: 'That code is not valid. Check the code shown on your device and try again.',
      expired: 'That code has expired. Start again on your device to get a new code.',
      used: 'That code has already been used. Start again on your device if you still need to sign in.',
    }[problem]
    return send(
      reply,
      400,
      renderCodeEntryPage({
        csrfToken: session.record.csrfToken,
        signedIn: signedInOf(session),
        message,
        value: typed?.slice(0, MAX_KEPT_CODE_LENGTH),
      }),
    )
  }

  /**
   * The result page again, for a code this session's user already decided: a double click on
   * Approve, Back after deciding, or a re-submitted form. 200 when nothing contradicts the recorded
   * decision; 409 when the submission asked for the other one (which is not recorded).
   */
  function sendAlreadyDecided(
    reply: FastifyReply,
    session: Session & { user: User },
    grant: DeviceGrantRecord,
    outcome: 'approved' | 'denied',
    requested?: 'approved' | 'denied',
  ) {
    const client = deps.clients.get(grant.clientId)
    return send(
      reply,
      requested === undefined || requested === outcome ? 200 : 409,
      renderResultPage({
        decision: outcome,
        clientName: client?.name ?? grant.clientId,
        signedIn: { username: session.user.username, csrfToken: session.record.csrfToken },
        alreadyDecided: true,
      }),
    )
  }

  function reviewPage(
    session: Session & { user: User },
    grant: DeviceGrantRecord,
    client: Client,
    now: number,
    policyView?: ReviewPolicyView,
  ): string {
    return renderReviewPage({
      csrfToken: session.record.csrfToken,
      signedInAs: session.user.username,
      clientName: client.name,
      userCode: grant.userCode,
      userCodeDisplay: formatUserCode(grant.userCode),
      scopes: parseScope(grant.scope).map((name) => ({
        name,
        description: Object.hasOwn(deps.scopeDescriptions, name)
          ? (deps.scopeDescriptions[name] ?? name)
          : name,
      })),
      requestedAt: grant.createdAt,
      expiresAt: grant.expiresAt,
      now,
      requestIp: grant.requestIp,
      requestUserAgent: grant.requestUserAgent,
      ...(policyView ? { policy: policyView } : {}),
    })
  }

  // --- conditional approval (issue 3) ---------------------------------------------------------

  /** MFA counts only when done in this sign-in (the session is rotated at sign-in). */
  function isMfaDone(record: WebSessionRecord): boolean {
    return record.mfaAt != null && record.authTime !== null && record.mfaAt >= record.authTime
  }

  /** Evaluates the policy for this approver approving this request now; undefined without a policy. */
  async function decideForApproval(
    request: FastifyRequest,
    session: Session & { user: User },
    grant: DeviceGrantRecord,
    client: Client,
    now: number,
  ): Promise<PolicyDecision | undefined> {
    if (!deps.policy) return undefined
    const record = await store.findDeviceGrantPolicy(grant.id)
    let posture: PostureFacts = { status: 'absent' }
    if (record?.postureJson) {
      try {
        posture = JSON.parse(record.postureJson) as PostureFacts
      } catch {
        posture = { status: 'invalid', error: 'unreadable' }
      }
    }
    return deps.policy.decide({
      phase: 'approval',
      now,
      client,
      username: session.user.username,
      mfaDone: isMfaDone(session.record),
      requestIp: grant.requestIp,
      approverIp: request.clientIp,
      posture,
      dpopJkt: grant.dpopJkt,
    })
  }

  /** Characters of the code a high-risk approval must type, or undefined for one click. */
  function confirmSuffix(client: Client): number | undefined {
    const configured = deps.policy?.settings(client.id).confirmCode
    const tier = client.riskTier ?? 'standard'
    return (configured ?? (tier === 'high' || tier === 'admin')) ? 4 : undefined
  }

  function policyView(d: PolicyDecision, client: Client, error?: string): ReviewPolicyView {
    const locationMismatch = d.proximityMismatch.includes('country') || d.proximityMismatch.includes('asn')
    const decisive = d.reasons.filter((r) => r.effect === d.decision || (d.decision === 'step_up' && r.effect === 'step_up'))
    return {
      riskTier: d.facts.client.tier,
      request: d.facts.request,
      approver: d.facts.approver ?? { ip: 'unknown', country: null, asn: null, asOrg: null },
      locationMismatch,
      decision: d.decision,
      reasonCodes: (d.decision === 'allow' ? [] : decisive).map((r) => r.code),
      message: decisive.find((r) => r.message !== undefined)?.message,
      // The proximity warning has its own, stronger box.
      warnings: d.reasons.filter((r) => r.effect === 'warn' && r.message !== undefined && !(locationMismatch && r.code === 'proximity_mismatch')).map((r) => r.message!),
      confirmSuffixLength: d.decision === 'allow' ? confirmSuffix(client) : undefined,
      error,
    }
  }

  async function renderReview(
    request: FastifyRequest,
    session: Session & { user: User },
    grant: DeviceGrantRecord,
    client: Client,
    now: number,
    error?: string,
  ): Promise<string> {
    const d = await decideForApproval(request, session, grant, client, now)
    return reviewPage(session, grant, client, now, d && policyView(d, client, error))
  }

  /**
   * Proof that a code reached the sign-in form by typing (a POST with this session's CSRF token),
   * for clients whose policy refuses verification_uri_complete: bound to the new session's secret
   * CSRF token, so a link cannot carry it. Given for every code signed in with, whatever its client,
   * so the redirect does not tell whether the code exists (RFC 8628 §5.1).
   */
  function typedCodeProof(record: WebSessionRecord, userCode: string): string {
    return sha256Hex(`typed:${record.csrfToken}:${userCode}`).slice(0, 32)
  }

  // --- code lookup ----------------------------------------------------------------------------

  function classify(grant: DeviceGrantRecord | undefined, now: number): CodeProblem | undefined {
    if (grant === undefined) return 'invalid'
    if (grant.status !== 'pending') return 'used'
    if (grant.expiresAt <= now) return 'expired'
    return undefined
  }

  /**
   * The limiter check, the lookup and the failure count for one submitted code (RFC 8628 §5.1).
   * The check runs before the lookup, so while a source is blocked a correct code gets the
   * same 429 as a wrong one. Failures are unknown, malformed and expired codes and codes decided
   * by someone else; a code this user decided shows that decision again and is not a failure.
   * When it returns undefined, the reply has been sent.
   *
   * @param source `link` for `GET /device?user_code=…`, which never counts against an account.
   * @param requested The decision being submitted, if any (for the "already decided" page).
   */
  async function lookUpCode(
    request: FastifyRequest,
    reply: FastifyReply,
    session: Session,
    raw: string,
    now: number,
    source: CodeSource = 'typed',
    requested?: 'approved' | 'denied',
  ): Promise<{ grant: DeviceGrantRecord; client: Client } | undefined> {
    const keys = codeEntryKeys(request, session, source)
    const { codeEntryMaxFailures: max, codeEntryWindowSeconds: windowSeconds } = deps
    const retryAfter = await blockedFor(keys.check, max, windowSeconds, now)
    if (retryAfter !== undefined) {
      logger.warn(
        {
          event: 'verification.code_entry_blocked',
          ip: request.clientIp,
          subject: session.user?.username ?? null,
        },
        'user-code entry blocked by rate limit',
      )
      sendTooManyRequests(reply, retryAfter, { session, source })
      return undefined
    }
    const canonical = normalizeUserCode(raw)
    const grant =
      canonical === undefined ? undefined : await store.findDeviceGrantByUserCode(canonical)
    const decidedByYou =
      grant !== undefined && session.user !== undefined && grant.subject === session.user.username
        ? recordedOutcome(grant)
        : undefined
    const problem = decidedByYou === undefined ? classify(grant, now) : undefined
    await deps.events?.record({
      type: 'user_code.looked_up',
      actor: session.user?.username ?? null,
      clientId: grant?.clientId ?? null,
      subject: session.user?.username ?? null,
      ip: request.clientIp,
      details: {
        outcome: problem ?? 'found',
        deviceGrantId: grant?.id ?? null,
        session: session.record.idHash.slice(0, 16),
        ...(decidedByYou === undefined ? {} : { alreadyDecided: decidedByYou }),
      },
    })
    if (decidedByYou !== undefined && grant !== undefined && session.user !== undefined) {
      logger.info(
        { event: 'verification.already_decided', grantId: grant.id, outcome: decidedByYou, subject: session.user.username, ip: request.clientIp },
        'user-code entry for a code this user already decided',
      )
      sendAlreadyDecided(reply, { ...session, user: session.user }, grant, decidedByYou, requested)
      return undefined
    }
    if (problem !== undefined || grant === undefined) {
      await countFailure(keys.count, windowSeconds, now)
      logger.info(
        {
          event: 'verification.code_entry_failed',
          reason: problem,
          grantId: grant?.id,
          ip: request.clientIp,
          subject: session.user?.username ?? null,
        },
        'user-code entry failed',
      )
      sendCodeProblem(reply, session, problem ?? 'invalid', source === 'typed' ? raw : undefined)
      return undefined
    }
    const client = deps.clients.get(grant.clientId)
    if (client === undefined || client.disabled) {
      logger.warn(
        { event: 'verification.client_unavailable', grantId: grant.id, clientId: grant.clientId },
        'client of device grant is unavailable',
      )
      send(
        reply,
        400,
        renderErrorPage({
          title: 'Application unavailable',
          message: 'The application that asked for access is no longer allowed to sign in.',
          signedIn: signedInOf(session),
        }),
      )
      return undefined
    }
    return { grant, client }
  }

  /** Shows the sign-in page for anonymous sessions, the review page for signed-in ones. */
  async function showCode(
    request: FastifyRequest,
    reply: FastifyReply,
    session: Session,
    raw: string,
    now: number,
    viaLink = false,
    typedProof?: string,
  ) {
    const found = await lookUpCode(request, reply, session, raw, now, viaLink ? 'link' : 'typed')
    if (found === undefined) return reply
    // Kiosk / disallow_verification_uri_complete: a code arriving in a link (a QR code, a phishing
    // message) is not shown; the approver types the code from the device they hold.
    if (
      viaLink &&
      deps.policy?.settings(found.client.id).requireTypedCode &&
      !(typedProof !== undefined && constantTimeEqual(typedProof, typedCodeProof(session.record, found.grant.userCode)))
    ) {
      logger.info({ event: 'verification.link_refused', grantId: found.grant.id, clientId: found.client.id, ip: request.clientIp }, 'verification_uri_complete refused by policy')
      return send(
        reply,
        400,
        renderCodeEntryPage({
          csrfToken: session.record.csrfToken,
          signedIn: signedInOf(session),
          message: 'For this app, type the code shown on your device yourself; links with a code are not accepted.',
        }),
      )
    }
    if (session.user === undefined) {
      return send(
        reply,
        200,
        renderSignInPage({
          csrfToken: session.record.csrfToken,
          userCode: found.grant.userCode,
          userCodeDisplay: formatUserCode(found.grant.userCode),
        }),
      )
    }
    return send(
      reply,
      200,
      await renderReview(request, { ...session, user: session.user }, found.grant, found.client, now),
    )
  }

  // --- routes ---------------------------------------------------------------------------------

  app.get('/device', async (request, reply) => {
    const now = clock.nowSeconds()
    const session = await ensureSession(request, reply, now)
    const raw = (request.query as Record<string, unknown> | undefined)?.user_code
    if (raw === undefined || raw === '') {
      return send(
        reply,
        200,
        renderCodeEntryPage({
          csrfToken: session.record.csrfToken,
          signedIn: signedInOf(session),
        }),
      )
    }
    // verification_uri_complete (RFC 8628 §3.3.1): looked up like a typed code, never approved.
    const typed = (request.query as Record<string, unknown>).typed
    return showCode(request, reply, session, typeof raw === 'string' ? raw : '', now, true, typeof typed === 'string' ? typed : undefined)
  })

  app.post('/device', async (request, reply) => {
    const now = clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(request, now)
    if (!isTrustedPost(request, session, form) || session === undefined) {
      return sendForbidden(reply, request, 'csrf')
    }
    const raw = form.user_code
    const decision = form.decision
    if (Array.isArray(raw) || Array.isArray(decision)) {
      return send(
        reply,
        400,
        renderErrorPage({
          title: 'Invalid request',
          message: 'A form field was sent more than once.',
        }),
      )
    }
    if (raw === undefined || raw.trim().length === 0) {
      return send(
        reply,
        400,
        renderCodeEntryPage({
          csrfToken: session.record.csrfToken,
          signedIn: signedInOf(session),
          message: 'Enter the code shown on your device.',
        }),
      )
    }
    if (decision === undefined) return showCode(request, reply, session, raw, now)

    if (decision !== 'approve' && decision !== 'deny') {
      return send(
        reply,
        400,
        renderErrorPage({ title: 'Invalid request', message: 'Choose Approve or Deny.' }),
      )
    }
    if (session.user === undefined) {
      const canonical = normalizeUserCode(raw)
      return send(
        reply,
        401,
        renderSignInPage({
          csrfToken: session.record.csrfToken,
          userCode: canonical,
          message: 'Sign in before approving or denying a request.',
        }),
      )
    }
    // Re-validate everything: the review page may be stale, the code may have expired or been
    // decided in another tab, and a forged submission must go through the same limiter.
    const outcome = decision === 'approve' ? 'approved' : 'denied'
    const found = await lookUpCode(request, reply, session, raw, now, 'typed', outcome)
    if (found === undefined) return reply
    const user = session.user
    const signedIn = { username: user.username, csrfToken: session.record.csrfToken }
    // Conditional approval (issue 3), decided on the server when the button is pressed: the review
    // page may be stale and a hand-made POST must not skip MFA, the confirmation or a deny.
    const policyDecision = await decideForApproval(request, { ...session, user }, found.grant, found.client, now)
    if (policyDecision)
      await deps.events?.record(
        policyDecidedEvent(policyDecision, { phase: 'approval', clientId: found.client.id, subject: user.username, ip: request.clientIp, deviceGrantId: found.grant.id }),
      )
    if (policyDecision && outcome === 'approved') {
      if (policyDecision.decision === 'step_up') {
        logger.warn({ event: 'verification.approve_without_mfa', grantId: found.grant.id, subject: user.username, ip: request.clientIp }, 'approval refused: MFA required')
        return send(reply, 403, reviewPage({ ...session, user }, found.grant, found.client, now, policyView(policyDecision, found.client, 'Complete the second factor before approving.')))
      }
      const suffix = policyDecision.decision === 'allow' ? confirmSuffix(found.client) : undefined
      if (suffix !== undefined) {
        const typedChars = typeof form.confirm_code === 'string' ? (normalizeUserCode(`XXXX${form.confirm_code}`.slice(-8).padStart(8, 'X')) ?? '') : ''
        if (!constantTimeEqual(typedChars.slice(-suffix), found.grant.userCode.slice(-suffix))) {
          await countFailure(codeEntryKeys(request, session, 'typed').count, deps.codeEntryWindowSeconds, now)
          return send(reply, 400, reviewPage({ ...session, user }, found.grant, found.client, now, policyView(policyDecision, found.client, 'The characters you typed do not match the code on your device.')))
        }
      }
    }
    if (policyDecision) {
      // The explanation is stored with the device grant, whatever was decided (issue 3 §4).
      await store.saveDeviceGrantDecision(found.grant.id, policyDecision.decision, JSON.stringify(policyDecision), now)
      if (policyDecision.decision === 'deny' && outcome === 'approved') {
        await store.decideDeviceGrant(found.grant.id, 'denied', user.username, now)
        const reasonCodes = policyDecision.reasons.filter((r) => r.effect === 'deny').map((r) => r.code)
        logger.info(
          { event: 'device_code.denied_by_policy', grantId: found.grant.id, clientId: found.client.id, subject: user.username, ip: request.clientIp, reasons: reasonCodes },
          'device authorization denied by policy',
        )
        const message = policyDecision.reasons.find((r) => r.effect === 'deny' && r.message !== undefined)?.message
        return send(reply, 403, renderPolicyDeniedPage({ clientName: found.client.name, signedIn, message, reasonCodes }))
      }
    }
    const decided = await store.decideDeviceGrant(found.grant.id, outcome, user.username, now)
    if (!decided) {
      // Lost a race with another decision or with expiry; nothing was recorded by this call. When
      // the winner was this user (a double click), show their decision; not a failed entry either way.
      const latest = await store.findDeviceGrantByUserCode(found.grant.userCode)
      const recorded = latest !== undefined && latest.subject === user.username ? recordedOutcome(latest) : undefined
      if (latest !== undefined && recorded !== undefined) return sendAlreadyDecided(reply, { ...session, user }, latest, recorded, outcome)
      return sendCodeProblem(reply, session, 'used')
    }
    logger.info(
      {
        event: `device_code.${outcome}`,
        grantId: found.grant.id,
        clientId: found.client.id,
        subject: user.username,
        ip: request.clientIp,
      },
      `device authorization ${outcome}`,
    )
    await deps.events?.record({
      type: `device_code.${outcome}`,
      actor: user.username,
      clientId: found.client.id,
      subject: user.username,
      ip: request.clientIp,
      details: { deviceGrantId: found.grant.id, scope: found.grant.scope, requestIp: found.grant.requestIp, requestedAt: found.grant.createdAt },
    })
    return send(
      reply,
      200,
      renderResultPage({
        decision: outcome,
        clientName: found.client.name,
        signedIn,
      }),
    )
  })

  // --- second factor (RFC 6238 TOTP) ----------------------------------------------------------

  /**
   * `POST /device/mfa` — `totp`, `csrf_token`, and either `user_code` (step-up during an approval:
   * back to the review page) or `next=enroll` (before re-enrolment). Records `mfa_at` on the session.
   */
  app.post('/device/mfa', async (request, reply) => {
    const now = clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(request, now)
    if (!isTrustedPost(request, session, form) || session === undefined) {
      return sendForbidden(reply, request, 'csrf')
    }
    const rawCode = typeof form.user_code === 'string' ? form.user_code : undefined
    if (session.user === undefined) {
      return send(reply, 401, renderSignInPage({ csrfToken: session.record.csrfToken, userCode: rawCode === undefined ? undefined : normalizeUserCode(rawCode), message: 'Sign in first.' }))
    }
    const user = session.user
    const found = rawCode === undefined ? undefined : await lookUpCode(request, reply, session, rawCode, now)
    if (rawCode !== undefined && found === undefined) return reply
    const secret = await findUserTotpSecret(store, user)
    if (secret === undefined) {
      // Never offer enrolment here: a password alone must not be enough to add an authenticator.
      return send(
        reply,
        403,
        renderErrorPage({
          title: 'Second factor not set up',
          message: 'This request needs a code from an authenticator app, and none is set up for your account.',
          detail: 'Ask an administrator to set one up for you (devicegate users enroll-totp). It cannot be set up during an approval.',
          signedIn: signedInOf(session),
        }),
      )
    }
    const result = await checkTotpCode(store, user.username, secret, typeof form.totp === 'string' ? form.totp : '', now)
    if (result !== 'ok') {
      logger.info({ event: 'verification.mfa_failed', subject: user.username, result, ip: request.clientIp }, 'second factor failed')
      const message = result === 'locked' ? 'Too many wrong codes. Try again later.' : 'That code is not right (or was already used). Enter the current code from your authenticator app.'
      if (found === undefined) return send(reply, result === 'locked' ? 429 : 400, renderErrorPage({ title: 'Second factor failed', message, signedIn: signedInOf(session) }))
      const d = await decideForApproval(request, { ...session, user }, found.grant, found.client, now)
      return send(reply, result === 'locked' ? 429 : 400, reviewPage({ ...session, user }, found.grant, found.client, now, d && policyView(d, found.client, message)))
    }
    await store.markWebSessionMfa(session.record.idHash, now)
    logger.info({ event: 'verification.mfa_completed', subject: user.username, ip: request.clientIp }, 'second factor completed')
    const updated = { ...session, user, record: { ...session.record, mfaAt: now } }
    if (found === undefined) return reply.code(303).header('cache-control', 'no-store').header('location', '/device/mfa/enroll').send()
    return send(reply, 200, await renderReview(request, updated, found.grant, found.client, now))
  })

  /**
   * `GET /device/mfa/enroll` — self-service re-enrolment of the authenticator, only for a session
   * that completed MFA in this sign-in; otherwise it asks for the current authenticator's code first.
   * Users with no authenticator at all are enrolled by an administrator (`devicegate users enroll-totp`).
   */
  app.get('/device/mfa/enroll', async (request, reply) => {
    const now = clock.nowSeconds()
    const session = await ensureSession(request, reply, now)
    if (session.user === undefined) return send(reply, 401, renderSignInPage({ csrfToken: session.record.csrfToken, message: 'Sign in first.' }))
    if (!isMfaDone(session.record)) {
      return send(
        reply,
        403,
        renderErrorPage({
          title: 'Confirm your current authenticator',
          message: 'Setting up a new authenticator needs a sign-in that completed the second factor.',
          detail: 'Sign in again and complete the second factor, or ask an administrator.',
          signedIn: signedInOf(session),
        }),
      )
    }
    const secret = newTotpSecret()
    return send(reply, 200, renderTotpEnrolPage({ csrfToken: session.record.csrfToken, signedInAs: session.user.username, secret, uri: totpUri(deps.totpIssuerLabel ?? 'devicegate', session.user.username, secret) }))
  })

  /** `POST /device/mfa/enroll` — `secret`, `totp`: saves the new authenticator once its code verifies. */
  app.post('/device/mfa/enroll', async (request, reply) => {
    const now = clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(request, now)
    if (!isTrustedPost(request, session, form) || session === undefined) return sendForbidden(reply, request, 'csrf')
    if (session.user === undefined || !isMfaDone(session.record)) {
      return send(reply, 403, renderErrorPage({ title: 'Not allowed', message: 'Setting up a new authenticator needs a sign-in that completed the second factor.' }))
    }
    const secret = typeof form.secret === 'string' && /^[A-Z2-7]{16,128}$/.test(form.secret) ? form.secret : undefined
    const code = typeof form.totp === 'string' ? form.totp : ''
    const user = session.user
    if (secret === undefined || (await checkTotpCode(store, user.username, secret, code, now)) !== 'ok') {
      const fresh = secret ?? newTotpSecret()
      return send(reply, 400, renderTotpEnrolPage({ csrfToken: session.record.csrfToken, signedInAs: user.username, secret: fresh, uri: totpUri(deps.totpIssuerLabel ?? 'devicegate', user.username, fresh), message: 'That code does not match. Enter the code the new authenticator shows.' }))
    }
    await store.saveTotpSecret(user.username, secret, now)
    logger.info({ event: 'verification.totp_enrolled', subject: user.username, ip: request.clientIp }, 'authenticator enrolled')
    return send(reply, 200, renderErrorPage({ title: 'Authenticator saved', message: 'Your new authenticator is set up. Use it from now on.', signedIn: signedInOf(session) }))
  })

  /**
   * `GET /device/sign-in` — the sign-in form without a code, linked from the code-entry page and
   * from the 429 page: signed-in code entry is limited per account, not per IP (RFC 8628 §5.1).
   * A code is never taken from this URL (a link must not reach the typed-code path).
   */
  app.get('/device/sign-in', async (request, reply) => {
    const now = clock.nowSeconds()
    const session = await ensureSession(request, reply, now)
    if (session.user !== undefined) {
      return reply.code(303).header('cache-control', 'no-store').header('location', '/device').send()
    }
    return send(reply, 200, renderSignInPage({ csrfToken: session.record.csrfToken }))
  })

  /** `POST /device/sign-out` — `csrf_token`: deletes the session and its cookie, 303 to `/device`. */
  app.post('/device/sign-out', async (request, reply) => {
    const now = clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(request, now)
    const cookieOptions = { httpOnly: true, secure: true, sameSite: 'lax', path: '/' } as const
    if (session === undefined) {
      // Already signed out (expired or unknown cookie): nothing to change, so no CSRF check.
      reply.clearCookie(SESSION_COOKIE, cookieOptions)
      return reply.code(303).header('cache-control', 'no-store').header('location', '/device').send()
    }
    if (!isTrustedPost(request, session, form)) return sendForbidden(reply, request, 'csrf')
    await store.deleteWebSession(session.record.idHash)
    reply.clearCookie(SESSION_COOKIE, cookieOptions)
    logger.info(
      { event: 'verification.signed_out', subject: session.user?.username ?? null, ip: request.clientIp },
      'signed out',
    )
    return reply.code(303).header('cache-control', 'no-store').header('location', '/device').send()
  })

  app.post('/device/sign-in', async (request, reply) => {
    const now = clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(request, now)
    if (!isTrustedPost(request, session, form) || session === undefined) {
      return sendForbidden(reply, request, 'csrf')
    }
    const username = typeof form.username === 'string' ? form.username : ''
    const password = typeof form.password === 'string' ? form.password : ''
    const canonical =
      typeof form.user_code === 'string' ? normalizeUserCode(form.user_code) : undefined

    // Per IP and username (guessing one account's password) and per IP (one password sprayed
    // over many usernames); either at its limit blocks, even for the right password.
    const limits = [
      { key: `sign_in:${request.clientIp}:${sha256Hex(username)}`, max: SIGN_IN_MAX_FAILURES },
      { key: `sign_in_ip:${request.clientIp}`, max: SIGN_IN_MAX_FAILURES_PER_IP },
    ]
    const counts = await Promise.all(
      limits.map((l) => store.readCounter(l.key, SIGN_IN_WINDOW_SECONDS, now)),
    )
    const blockedBy = limits.find((l, i) => (counts[i] ?? 0) >= l.max)
    if (blockedBy !== undefined) {
      logger.warn(
        {
          event: 'verification.sign_in_blocked',
          ip: request.clientIp,
          limit: blockedBy.max === SIGN_IN_MAX_FAILURES ? 'ip_username' : 'ip',
        },
        'sign-in blocked by rate limit',
      )
      return sendTooManyRequests(reply, secondsLeftInWindow(SIGN_IN_WINDOW_SECONDS, now))
    }

    const user =
      username.length > 0 &&
      username.length <= MAX_USERNAME_LENGTH &&
      password.length > 0 &&
      password.length <= MAX_PASSWORD_LENGTH
        ? await deps.users.authenticate(username, password)
        : undefined
    if (user === undefined) {
      await countFailure(
        limits.map((l) => l.key),
        SIGN_IN_WINDOW_SECONDS,
        now,
      )
      const known = username.length <= MAX_USERNAME_LENGTH && deps.users.get(username) !== undefined
      await deps.events?.record({
        type: 'session.sign_in_failed',
        subject: known ? username : null,
        ip: request.clientIp,
        details: { knownUser: known },
      })
      logger.info({ event: 'verification.sign_in_failed', ip: request.clientIp }, 'sign-in failed')
      return send(
        reply,
        401,
        renderSignInPage({
          csrfToken: session.record.csrfToken,
          userCode: canonical,
          userCodeDisplay: canonical === undefined ? undefined : formatUserCode(canonical),
          username: username.slice(0, MAX_USERNAME_LENGTH),
          message: 'Invalid username or password.',
        }),
      )
    }

    // Rotate: a new cookie value and CSRF token, the pre-sign-in session gone (no fixation).
    const fresh = await startSession(reply, now, user)
    await store.deleteWebSession(session.record.idHash)
    logger.info(
      { event: 'verification.signed_in', subject: user.username, ip: request.clientIp },
      'signed in',
    )
    await deps.events?.record({ type: 'session.signed_in', actor: user.username, subject: user.username, ip: request.clientIp })
    // The code reached this form typed (or after the typed-code check): say so, unforgeably. The
    // proof goes with every code, without looking the code up: this lookup would sit outside the
    // code-entry limiter, and a redirect that differed by the code's client would tell whether
    // the code exists (RFC 8628 §5.1). `GET /device` checks the proof only where policy needs it.
    const location =
      canonical === undefined ? '/device' : `/device?user_code=${canonical}&typed=${typedCodeProof(fresh.record, canonical)}`
    return reply.code(303).header('cache-control', 'no-store').header('location', location).send()
  })
}

/** The parsed form body, or an empty form when there is none. */
function readForm(request: FastifyRequest): Form {
  const body = request.body
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {}
  return body as Form
}
