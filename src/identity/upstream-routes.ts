/**
 * HTTP routes of upstream OpenID Connect sign-in; `upstream.ts` decides, this parses
 * and renders.
 *
 * - `GET /device/upstream/:provider/start` — `user_code` (back to that code's review) or
 *   `return_to` (a local path under /device or /console), optional `step_up=1`: binds a fresh
 *   `state` to the browser (cookie `dg_upstream`, HttpOnly, SameSite=Lax so the provider's
 *   top-level redirect back carries it) and answers 303 to the provider's authorization endpoint.
 * - `GET /device/upstream/:provider/callback` — the redirect URI: on success the person is signed
 *   in through the verification service's `establishSession`, exactly as a password sign-in is
 *   (`dg_session` rotated, no fixation; review claims moved; `session.signed_in` audited; second
 *   factor recorded when the provider reported one) and the browser goes to the return path; on
 *   any failure a page says what happened (4xx, never 5xx) and nobody is signed in.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { EventSink } from '../core/events.js'
import type { UserDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import { normalizeUserCode } from '../core/user-code.js'
import type { VerificationService } from '../verification/service.js'
import { renderErrorPage } from '../web/templates/error.js'
import { SESSION_COOKIE, setSessionCookie } from '../web/pages/kit.js'
import { isLocalReturnPath, UPSTREAM_FAILURE_TEXT, UpstreamError, type UpstreamSignIn, type UpstreamSignedIn } from './upstream.js'

/** Cookie binding a started upstream sign-in to this browser (its value is the `state`). */
export const UPSTREAM_STATE_COOKIE = 'dg_upstream'

/** What the routes need. */
export interface UpstreamRouteDeps {
  upstream: UpstreamSignIn
  /**
   * The verification pages' service: a successful callback signs the person in through its
   * `establishSession`, the one sign-in path (session rotation, review claims, audit).
   */
  verification: Pick<VerificationService, 'sessions' | 'establishSession'>
  /** The people as the verification pages see them (the signed-in `User`). */
  users: UserDirectory
  clock: Clock
  events: EventSink
}

function sendPage(reply: FastifyReply, status: number, page: string): FastifyReply {
  return reply.code(status).header('cache-control', 'no-store').header('pragma', 'no-cache').type('text/html; charset=utf-8').send(page)
}

/**
 * Starts an upstream sign-in and sends the browser to the provider; it comes back (through the
 * callback) to `returnTo` with a signed-in `dg_session`. Reusable by other pages (the console):
 * `returnTo` must be a local path under `/device` or `/console`.
 *
 * @throws {UpstreamError} `unknown_provider` or `unreachable` (render with {@link sendUpstreamFailure}).
 */
export async function beginUpstreamSignIn(
  reply: FastifyReply,
  upstream: UpstreamSignIn,
  options: { provider: string; returnTo: string; stepUp?: boolean },
): Promise<FastifyReply> {
  const { url, state } = await upstream.begin(options.provider, { returnTo: options.returnTo, stepUp: options.stepUp ?? false })
  reply.setCookie(UPSTREAM_STATE_COOKIE, state, { httpOnly: true, secure: true, sameSite: 'lax', path: '/device/upstream', maxAge: 3600 })
  return reply.code(303).header('cache-control', 'no-store').header('location', url).send()
}

/** Renders the page for a failed upstream sign-in (4xx). */
export function sendUpstreamFailure(reply: FastifyReply, err: UpstreamError): FastifyReply {
  const text = UPSTREAM_FAILURE_TEXT[err.code]
  const status = err.code === 'unknown_provider' ? 404 : ['denied', 'email_not_allowed', 'account_disabled', 'account_conflict'].includes(err.code) ? 403 : 400
  return sendPage(reply, status, renderErrorPage({ title: text.title, message: text.message }))
}

/** Registers the start and callback routes. */
export async function registerUpstreamRoutes(app: FastifyInstance, deps: UpstreamRouteDeps): Promise<void> {
  const { upstream, clock, events } = deps

  async function failed(request: FastifyRequest, reply: FastifyReply, provider: string, err: UpstreamError): Promise<FastifyReply> {
    request.log.warn({ event: 'verification.upstream_failed', provider, code: err.code, detail: err.detail, ip: request.clientIp }, 'upstream sign-in failed')
    await events.record({ type: 'session.upstream_failed', actor: null, ip: request.clientIp, details: { provider, failure: err.code, detail: err.detail.slice(0, 300) } })
    reply.clearCookie(UPSTREAM_STATE_COOKIE, { path: '/device/upstream' })
    return sendUpstreamFailure(reply, err)
  }

  app.get('/device/upstream/:provider/start', async (request, reply) => {
    const { provider } = request.params as { provider: string }
    const q = (request.query ?? {}) as Record<string, unknown>
    let returnTo = '/device'
    if (typeof q.user_code === 'string' && q.user_code !== '') {
      const code = normalizeUserCode(q.user_code)
      if (code !== undefined) returnTo = `/device?user_code=${code}`
    } else if (typeof q.return_to === 'string') {
      if (!isLocalReturnPath(q.return_to)) return sendPage(reply, 400, renderErrorPage({ title: 'Invalid request', message: 'The return address is not a page of this site.' }))
      returnTo = q.return_to
    }
    try {
      return await beginUpstreamSignIn(reply, upstream, { provider, returnTo, stepUp: q.step_up === '1' })
    } catch (err) {
      if (err instanceof UpstreamError) return failed(request, reply, provider, err)
      throw err
    }
  })

  app.get('/device/upstream/:provider/callback', async (request, reply) => {
    const { provider } = request.params as { provider: string }
    // The URL the provider redirected to, rebuilt from configuration (never from Host headers).
    const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?')) : ''
    const configured = upstream.provider(provider)
    if (configured === undefined) return failed(request, reply, provider, new UpstreamError('unknown_provider', provider))
    const callbackUrl = new URL(`${upstream.redirectUri(configured)}${query}`)
    let result: UpstreamSignedIn
    try {
      result = await upstream.complete(provider, callbackUrl, request.cookies[UPSTREAM_STATE_COOKIE])
    } catch (err) {
      if (err instanceof UpstreamError) return failed(request, reply, provider, err)
      throw err
    }
    reply.clearCookie(UPSTREAM_STATE_COOKIE, { path: '/device/upstream' })
    const user = deps.users.get(result.person.id)
    if (user === undefined || user.disabled) return failed(request, reply, provider, new UpstreamError('account_disabled', `person ${result.person.id} cannot sign in`))
    const now = clock.nowSeconds()
    // The same path as password sign-in: a new session replaces the browser's (no fixation), the
    // reviews it holds move with it (an upstream step-up comes back here while its review is
    // open), and `session.signed_in` is audited — here with how the provider authenticated.
    const established = await deps.verification.establishSession(user, now, {
      replacing: await deps.verification.sessions.load(request.cookies[SESSION_COOKIE], now),
      ip: request.clientIp,
      // The provider's second factor counts as this sign-in's MFA for step-up policies.
      mfa: result.mfa,
      details: { via: 'upstream', provider: result.provider.id, mfa: result.mfa, stepUp: result.stepUp, amr: result.amr, acr: result.acr },
    })
    setSessionCookie(reply, established.cookieValue)
    // Back where the sign-in started (checked when it began: a code review or a local page).
    return reply.code(303).header('cache-control', 'no-store').header('location', result.returnTo).send()
  })
}
