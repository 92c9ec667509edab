/**
 * What every server-rendered page shares: the session cookie, the CSRF-checked POST, sending a
 * page with no-store, and the 403 and 429 pages. Page modules parse with these, call the
 * verification service, and render; they decide nothing.
 */
import type {} from '@fastify/cookie'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import type {} from '../../http/request-context.js'
import type { Clock } from '../../core/ports.js'
import { shownName } from '../../core/model.js'
import { normalizeUserCode } from '../../core/user-code.js'
import type { VerificationService, WebSession } from '../../verification/service.js'
import type { PostGuard } from '../csrf.js'
import { renderErrorPage } from '../templates/error.js'
import { formatDuration, type SignedIn } from '../templates/layout.js'
import type { UpstreamProviderLink } from '../templates/sign-in.js'

/** Name of the verification-page session cookie. */
export const SESSION_COOKIE = 'dg_session'

/**
 * The challenge of every 401 page: RFC 9110 §11.6.1 and §15.5.2 require one on each 401. The pages
 * ask for credentials with an HTML form, not HTTP authentication, so the scheme is `Form`: no
 * browser implements it, so none answers with a credentials dialog (as it would for Basic), and
 * the page itself is shown.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-15.5.2
 */
export const SIGN_IN_CHALLENGE = 'Form realm="devicegate"'

const COOKIE_OPTIONS = { httpOnly: true, secure: true, sameSite: 'lax', path: '/' } as const

/** What the page modules are given. */
export interface PageContext {
  /** Upstream sign-in and local passwords (identity); absent: local passwords only. */
  identity?: IdentityPageOptions | undefined
  service: VerificationService
  isTrustedPost: PostGuard
  clock: Clock
  /** Plain-language descriptions of scopes shown on the review page. */
  scopeDescriptions: Readonly<Record<string, string>>
  /** IANA zone of the clock times on the pages (stated with its offset). Default: UTC. */
  timeZone?: string | undefined
  logger: FastifyBaseLogger
}

/** What the pages offer for signing in and stepping up (see `src/identity/`). */
export interface IdentityPageOptions {
  /** Offered as "Sign in with <name>". */
  providers: readonly UpstreamProviderLink[]
  /** Whether the username/password form is shown. */
  localPasswords: boolean
  /** The provider this person signs in with, to go back to for a second factor; undefined for local people. */
  stepUpProvider(username: string): UpstreamProviderLink | undefined
  /** Whether a local authenticator app (TOTP) may be used by this person. */
  offersTotp(username: string): boolean
}

/** The sign-in page's options from the context (providers, whether local passwords are offered). */
export function signInOptions(ctx: PageContext): { providers?: readonly UpstreamProviderLink[]; localPasswords?: boolean } {
  return ctx.identity === undefined ? {} : { providers: ctx.identity.providers, localPasswords: ctx.identity.localPasswords }
}

/** A parsed form body. */
export type Form = Record<string, string | string[] | undefined>

/** The parsed form body, or an empty form when there is none. */
export function readForm(request: FastifyRequest): Form {
  const body = request.body
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {}
  return body as Form
}

/** One form field when it was sent exactly once as text, otherwise undefined. */
export function formString(form: Form, name: string): string | undefined {
  const value = form[name]
  return typeof value === 'string' ? value : undefined
}

/** The live session of the request's cookie, or undefined. */
export function loadSession(ctx: PageContext, request: FastifyRequest, now: number): Promise<WebSession | undefined> {
  return ctx.service.sessions.load(request.cookies[SESSION_COOKIE], now)
}

/** Sets the session cookie (HttpOnly, Secure, SameSite=Lax, whole site). */
export function setSessionCookie(reply: FastifyReply, cookieValue: string): void {
  reply.setCookie(SESSION_COOKIE, cookieValue, COOKIE_OPTIONS)
}

/** Removes the session cookie. */
export function clearSessionCookie(reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, COOKIE_OPTIONS)
}

/** The request's session, or a new anonymous one (its cookie set on the reply). */
export async function ensureSession(ctx: PageContext, request: FastifyRequest, reply: FastifyReply, now: number): Promise<WebSession> {
  const loaded = await loadSession(ctx, request, now)
  if (loaded !== undefined) return loaded
  const { session, cookieValue } = await ctx.service.sessions.start(now)
  setSessionCookie(reply, cookieValue)
  return session
}

/**
 * A state-changing POST is accepted only from this origin with this session's CSRF token
 * (RFC 6749 §10.12); see {@link PostGuard}.
 */
export function isTrustedPost(ctx: PageContext, request: FastifyRequest, session: WebSession | undefined, form: Form): session is WebSession {
  return ctx.isTrustedPost(
    { secFetchSite: request.headers['sec-fetch-site'], origin: request.headers.origin, csrfToken: form.csrf_token },
    session?.record.csrfToken,
  )
}

/** What the pages need to show "Signed in as" and the Sign out button; undefined when signed out. */
export function signedInOf(session: WebSession): SignedIn | undefined {
  return session.user === undefined ? undefined : { name: shownName(session.user), csrfToken: session.record.csrfToken }
}

/** Sends a page with no-store; a 401 also gets {@link SIGN_IN_CHALLENGE} (RFC 9110 §15.5.2). */
export function sendPage(reply: FastifyReply, status: number, page: string): FastifyReply {
  if (status === 401) reply.header('www-authenticate', SIGN_IN_CHALLENGE)
  return reply.code(status).header('cache-control', 'no-store').header('pragma', 'no-cache').type('text/html; charset=utf-8').send(page)
}

/** 303 See Other to a path on this server, no-store. */
export function redirect(reply: FastifyReply, location: string): FastifyReply {
  return reply.code(303).header('cache-control', 'no-store').header('location', location).send()
}

/** 403 for a POST that failed {@link isTrustedPost}; nothing was changed. */
export function sendForbidden(ctx: PageContext, request: FastifyRequest, reply: FastifyReply, reason: string): FastifyReply {
  ctx.logger.warn({ event: 'verification.request_refused', reason, ip: request.clientIp }, 'verification POST refused')
  return sendPage(
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
 * 429 with Retry-After (RFC 6585 §4). For code entry (`codeEntry` given) a signed-out visitor is
 * offered sign-in, with the code kept on the link (`/device/sign-in?user_code=…`, canonical codes
 * only): the signed-out limits (source address, server-wide budget) do not apply once signed in.
 * With `signInRequired` (the server-wide budget is spent) that is the only way on. A signed-in
 * visitor who followed a link is told to type the code instead.
 */
export function sendTooManyRequests(
  reply: FastifyReply,
  retryAfterSeconds: number,
  codeEntry?: { session: WebSession; source: 'typed' | 'link'; rawCode?: string | undefined; signInRequired?: boolean },
): FastifyReply {
  reply.header('retry-after', String(retryAfterSeconds))
  const signedIn = codeEntry === undefined ? undefined : signedInOf(codeEntry.session)
  const signInRequired = codeEntry?.signInRequired === true && signedIn === undefined
  return sendPage(
    reply,
    429,
    renderErrorPage({
      title: signInRequired ? 'Sign in to continue' : 'Too many attempts',
      message: signInRequired
        ? `Too many wrong codes were entered on this service recently, so codes can only be entered after signing in for the next ${formatDuration(retryAfterSeconds)}.`
        : `Too many attempts. Try again in ${formatDuration(retryAfterSeconds)}.`,
      detail:
        signedIn !== undefined && codeEntry?.source === 'link'
          ? 'If you opened a link, enter the code shown on your device yourself instead.'
          : undefined,
      signedIn,
      offerSignIn:
        codeEntry !== undefined && signedIn === undefined
          ? { userCode: codeEntry.rawCode === undefined ? undefined : normalizeUserCode(codeEntry.rawCode) }
          : undefined,
    }),
  )
}
