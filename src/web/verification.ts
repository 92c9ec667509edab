/**
 * The verification pages of the Device Authorization Grant (RFC 8628 §3.3): enter the code,
 * sign in, review the request, approve or deny. One module per page in `pages/`; the rules live in
 * the verification service (`src/verification/`).
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
 *                                   session (`typed`: proof the code was typed).
 * - `POST /device/mfa`              TOTP step-up; `GET`/`POST /device/mfa/enroll` re-enrolment.
 * - `POST /device/sign-out`         `csrf_token` → deletes the session, 303 to `/device`.
 *
 * Protections: a synchronizer CSRF token bound to the `dg_session` cookie, plus Origin (must be
 * the configured issuer's) and Sec-Fetch-Site checks (RFC 6749 §10.12, `csrf.ts`); session
 * rotation at sign-in (no fixation); code-entry rate limiting before any lookup (RFC 8628 §5.1);
 * failed sign-ins limited per IP and username and per IP; the review page shows app, scopes,
 * origin IP, user agent and time of the request so a user can spot remote phishing
 * (RFC 8628 §5.4). Framing is forbidden by the HTTP layer's headers.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.3
 */
import type { FastifyInstance } from 'fastify'
import { createVerificationService } from '../verification/service.js'
import { createPostGuard } from './csrf.js'
import type { VerificationDeps } from './deps.js'
import { registerCodeEntryPage } from './pages/code-entry.js'
import type { PageContext } from './pages/kit.js'
import { registerSignInPage } from './pages/sign-in.js'
import { registerSignOutPage } from './pages/sign-out.js'
import { registerStepUpPages } from './pages/step-up.js'

export { SESSION_COOKIE, SIGN_IN_CHALLENGE } from './pages/kit.js'

/**
 * Name of the decorator under which {@link registerVerificationPages} leaves its verification
 * service on the pages' fastify instance, so other sign-in routes registered there (upstream
 * OpenID Connect, `src/identity/`) sign people in through the same `establishSession`:
 * `pages.getDecorator<VerificationService>(VERIFICATION_SERVICE)`.
 */
export const VERIFICATION_SERVICE = 'verificationService'
export { SIGN_IN_MAX_FAILURES, SIGN_IN_MAX_FAILURES_PER_IP, SIGN_IN_WINDOW_SECONDS } from '../verification/sign-in.js'

/**
 * Registers the verification routes. The caller has already registered @fastify/cookie,
 * @fastify/formbody and the security headers (CSP with `frame-ancestors 'none'`,
 * X-Frame-Options); see `VERIFICATION_PAGE_CSP_DIRECTIVES` in `templates/layout.ts` for the policy
 * these pages need.
 *
 * @throws {TypeError} when `deps.issuerOrigin` is not a URL (at start-up).
 */
export async function registerVerificationPages(app: FastifyInstance, deps: VerificationDeps): Promise<void> {
  const ctx: PageContext = {
    // Programmer misuse (not an origin) fails here, at start-up.
    isTrustedPost: createPostGuard(deps.issuerOrigin),
    service: createVerificationService(deps),
    clock: deps.clock,
    scopeDescriptions: deps.scopeDescriptions,
    timeZone: deps.timeZone,
    logger: deps.logger,
    identity: deps.identity,
  }
  app.decorate(VERIFICATION_SERVICE, ctx.service)
  registerCodeEntryPage(app, ctx)
  registerStepUpPages(app, ctx)
  registerSignInPage(app, ctx)
  registerSignOutPage(app, ctx)
}
