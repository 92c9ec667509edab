/**
 * Code entry (RFC 8628 §3.3): `GET /device` shows the form, or with `?user_code=…`
 * (verification_uri_complete, RFC 8628 §3.3.1) looks the code up like a typed one and shows the
 * sign-in or review page, never deciding anything by itself. `POST /device` takes `user_code` and
 * `csrf_token`, and with `decision=approve|deny` hands over to the decision (see `review.ts`).
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.3
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { formatUserCode } from '../../core/user-code.js'
import type { CodeSource, WebSession } from '../../verification/service.js'
import { renderCodeEntryPage } from '../templates/code-entry.js'
import { renderErrorPage } from '../templates/error.js'
import { renderSignInPage } from '../templates/sign-in.js'
import { sendCodeLookupFailure } from './code-outcome.js'
import { ensureSession, isTrustedPost, loadSession, readForm, sendForbidden, sendPage, signedInOf, signInOptions, type PageContext } from './kit.js'
import { handleDecision, renderReview } from './review.js'

/** Shows the sign-in page for a signed-out session, the review page for a signed-in one. */
async function showCode(
  ctx: PageContext,
  request: FastifyRequest,
  reply: FastifyReply,
  session: WebSession,
  rawCode: string,
  source: CodeSource,
  typedProof: string | undefined,
  now: number,
): Promise<FastifyReply> {
  const shown = await ctx.service.showCode({ session, rawCode, source, typedProof, ip: request.clientIp, userAgent: request.headers['user-agent'] }, now)
  switch (shown.kind) {
    case 'link_refused':
      return sendPage(
        reply,
        400,
        renderCodeEntryPage({
          csrfToken: session.record.csrfToken,
          signedIn: signedInOf(session),
          message: 'For this app, type the code shown on your device yourself; links with a code are not accepted.',
        }),
      )
    case 'sign_in':
      return sendPage(
        reply,
        200,
        renderSignInPage({ ...signInOptions(ctx), csrfToken: session.record.csrfToken, userCode: shown.userCode, userCodeDisplay: formatUserCode(shown.userCode) }),
      )
    case 'review':
      // The service reviews only for a signed-in session.
      return sendPage(reply, 200, renderReview(ctx, { ...session, user: session.user! }, shown.review, now))
    default:
      return sendCodeLookupFailure(reply, session, shown, source, rawCode)
  }
}

/** Registers `GET /device` and `POST /device`. */
export function registerCodeEntryPage(app: FastifyInstance, ctx: PageContext): void {
  app.get('/device', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const session = await ensureSession(ctx, request, reply, now)
    const query = request.query as Record<string, unknown> | undefined
    const raw = query?.user_code
    if (raw === undefined || raw === '') {
      return sendPage(reply, 200, renderCodeEntryPage({ csrfToken: session.record.csrfToken, signedIn: signedInOf(session) }))
    }
    // verification_uri_complete (RFC 8628 §3.3.1): looked up like a typed code, never approved.
    const typed = query?.typed
    return showCode(ctx, request, reply, session, typeof raw === 'string' ? raw : '', 'link', typeof typed === 'string' ? typed : undefined, now)
  })

  app.post('/device', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(ctx, request, now)
    if (!isTrustedPost(ctx, request, session, form)) return sendForbidden(ctx, request, reply, 'csrf')
    const raw = form.user_code
    const decision = form.decision
    if (Array.isArray(raw) || Array.isArray(decision)) {
      return sendPage(reply, 400, renderErrorPage({ title: 'Invalid request', message: 'A form field was sent more than once.' }))
    }
    if (raw === undefined || raw.trim().length === 0) {
      return sendPage(
        reply,
        400,
        renderCodeEntryPage({ csrfToken: session.record.csrfToken, signedIn: signedInOf(session), message: 'Enter the code shown on your device.' }),
      )
    }
    if (decision === undefined) return showCode(ctx, request, reply, session, raw, 'typed', undefined, now)
    return handleDecision(ctx, request, reply, session, form, raw, decision, now)
  })
}
