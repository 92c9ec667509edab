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
 * - `POST /device/sign-in`          `username`, `password`, `csrf_token`, optional `user_code`
 *                                   → 303 back to `/device[?user_code=…]` with a new session.
 *
 * Protections: a synchronizer CSRF token bound to the `dg_session` cookie, plus Origin and
 * Sec-Fetch-Site checks (RFC 6749 §10.12); session rotation at sign-in (no fixation); code-entry
 * rate limiting before any lookup (RFC 8628 §5.1); failed sign-ins limited per IP and username;
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
import {
  formatDuration,
  renderCodeEntryPage,
  renderErrorPage,
  renderResultPage,
  renderReviewPage,
  renderSignInPage,
} from './templates.js'

/** Name of the verification-page session cookie. */
export const SESSION_COOKIE = 'dg_session'
/** Failed sign-ins allowed per client IP and username in one window. */
export const SIGN_IN_MAX_FAILURES = 10
/** Window of the sign-in limiter in seconds. */
export const SIGN_IN_WINDOW_SECONDS = 600

/** Longest username and password considered; longer input is a failed sign-in (bounds argon2 work). */
const MAX_USERNAME_LENGTH = 256
const MAX_PASSWORD_LENGTH = 1024

type Form = Record<string, string | string[] | undefined>

/** A live session and, when signed in and still enabled, its user. */
interface Session {
  record: WebSessionRecord
  user: User | undefined
}

/** Why a code cannot be reviewed or decided; each is a failed code entry for RFC 8628 §5.1. */
type CodeProblem = 'invalid' | 'expired' | 'used'

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

  async function ensureSession(
    request: FastifyRequest,
    reply: FastifyReply,
    now: number,
  ): Promise<Session> {
    return (await loadSession(request, now)) ?? startSession(reply, now)
  }

  /**
   * A state-changing POST is accepted only from this origin with this session's CSRF token
   * (RFC 6749 §10.12). The Origin header, when a browser sends it, must be ours; a browser's
   * `Sec-Fetch-Site: cross-site` is refused outright. SameSite=Lax on the cookie is defence in
   * depth, not the control.
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
    if (origin !== undefined && origin !== deps.issuerOrigin && origin !== `${request.protocol}://${request.host}`) return false
    const token = form.csrf_token
    if (typeof token !== 'string' || token.length === 0) return false
    return constantTimeEqual(token, session.record.csrfToken)
  }

  // --- rate limiting (RFC 8628 §5.1) ----------------------------------------------------------

  /**
   * Counters that limit failed code entries from one source. Always per session. For anonymous
   * sessions also per client IP, because a fresh cookie is free. For signed-in sessions per user
   * account instead of per IP: a signed-in user is accountable by account, and an IP-wide lock
   * would let one attacker behind a shared NAT or proxy lock out every colleague behind the same
   * address — a lockout an attacker could trigger for everyone, which we must not allow.
   */
  function codeEntryKeys(request: FastifyRequest, session: Session): string[] {
    const keys = [`code_entry:session:${session.record.idHash}`]
    if (session.user !== undefined) keys.push(`code_entry:user:${session.user.username}`)
    else keys.push(`code_entry:ip:${request.clientIp}`)
    return keys
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

  function send(reply: FastifyReply, status: number, page: string): FastifyReply {
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

  function sendTooManyRequests(
    reply: FastifyReply,
    retryAfterSeconds: number,
    signedInAs?: string,
  ) {
    reply.header('retry-after', String(retryAfterSeconds))
    return send(
      reply,
      429,
      renderErrorPage({
        title: 'Too many attempts',
        message: `Too many attempts. Try again in ${formatDuration(retryAfterSeconds)}.`,
        signedInAs,
      }),
    )
  }

  function sendCodeProblem(reply: FastifyReply, session: Session, problem: CodeProblem) {
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
        signedInAs: session.user?.username,
        message,
      }),
    )
  }

  function reviewPage(
    session: Session & { user: User },
    grant: DeviceGrantRecord,
    client: Client,
    now: number,
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
    })
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
   * same 429 as a wrong one.
   */
  async function lookUpCode(
    request: FastifyRequest,
    reply: FastifyReply,
    session: Session,
    raw: string,
    now: number,
  ): Promise<{ grant: DeviceGrantRecord; client: Client } | undefined> {
    const keys = codeEntryKeys(request, session)
    const { codeEntryMaxFailures: max, codeEntryWindowSeconds: windowSeconds } = deps
    const retryAfter = await blockedFor(keys, max, windowSeconds, now)
    if (retryAfter !== undefined) {
      logger.warn(
        {
          event: 'verification.code_entry_blocked',
          ip: request.clientIp,
          subject: session.user?.username ?? null,
        },
        'user-code entry blocked by rate limit',
      )
      sendTooManyRequests(reply, retryAfter, session.user?.username)
      return undefined
    }
    const canonical = normalizeUserCode(raw)
    const grant =
      canonical === undefined ? undefined : await store.findDeviceGrantByUserCode(canonical)
    const problem = classify(grant, now)
    if (problem !== undefined || grant === undefined) {
      await countFailure(keys, windowSeconds, now)
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
      sendCodeProblem(reply, session, problem ?? 'invalid')
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
          signedInAs: session.user?.username,
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
  ) {
    const found = await lookUpCode(request, reply, session, raw, now)
    if (found === undefined) return reply
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
      reviewPage({ ...session, user: session.user }, found.grant, found.client, now),
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
          signedInAs: session.user?.username,
        }),
      )
    }
    // verification_uri_complete (RFC 8628 §3.3.1): looked up like a typed code, never approved.
    return showCode(request, reply, session, typeof raw === 'string' ? raw : '', now)
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
          signedInAs: session.user?.username,
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
    const found = await lookUpCode(request, reply, session, raw, now)
    if (found === undefined) return reply
    const user = session.user
    const outcome = decision === 'approve' ? 'approved' : 'denied'
    const decided = await store.decideDeviceGrant(found.grant.id, outcome, user.username, now)
    if (!decided) {
      // Lost a race with another decision or with expiry; nothing was recorded by this call.
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
    return send(
      reply,
      200,
      renderResultPage({
        decision: outcome,
        clientName: found.client.name,
        signedInAs: user.username,
      }),
    )
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

    const limiterKey = `sign_in:${request.clientIp}:${sha256Hex(username)}`
    const count = await store.readCounter(limiterKey, SIGN_IN_WINDOW_SECONDS, now)
    if (count >= SIGN_IN_MAX_FAILURES) {
      logger.warn(
        { event: 'verification.sign_in_blocked', ip: request.clientIp },
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
      await store.incrementCounter(limiterKey, SIGN_IN_WINDOW_SECONDS, now)
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
    await startSession(reply, now, user)
    await store.deleteWebSession(session.record.idHash)
    logger.info(
      { event: 'verification.signed_in', subject: user.username, ip: request.clientIp },
      'signed in',
    )
    const location = canonical === undefined ? '/device' : `/device?user_code=${canonical}`
    return reply.code(303).header('cache-control', 'no-store').header('location', location).send()
  })
}

/** The parsed form body, or an empty form when there is none. */
function readForm(request: FastifyRequest): Form {
  const body = request.body
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {}
  return body as Form
}
