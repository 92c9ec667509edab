/**
 * Sign-in: `GET /device/sign-in` shows the form without a code (sign in first, then enter it);
 * `POST /device/sign-in` takes `username`, `password`, `csrf_token` and an optional `user_code`,
 * and answers 303 back to `/device[?user_code=…&typed=…]` with a new session (no fixation).
 * Signed-in code entry is limited per account, not per IP (RFC 8628 §5.1), which is why the
 * code-entry and 429 pages link here.
 */
import type { FastifyInstance } from 'fastify'
import { formatUserCode, normalizeUserCode } from '../../core/user-code.js'
import { renderSignInPage } from '../templates/sign-in.js'
import {
  ensureSession,
  formString,
  isTrustedPost,
  loadSession,
  readForm,
  redirect,
  sendForbidden,
  sendPage,
  sendTooManyRequests,
  setSessionCookie,
  type PageContext,
  signInOptions,
} from './kit.js'

/** Registers `GET /device/sign-in` and `POST /device/sign-in`. */
export function registerSignInPage(app: FastifyInstance, ctx: PageContext): void {
  // `?user_code=…` (the 429 page's "sign in" link keeps the code) is carried as a link's code: it
  // goes back as `code_source=link`, so it never gets the typed-code proof (a crafted link must not
  // reach the typed-code path). Only a well-formed code is kept; it is not looked up here.
  app.get('/device/sign-in', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const session = await ensureSession(ctx, request, reply, now)
    const raw = (request.query as Record<string, unknown> | undefined)?.user_code
    const userCode = typeof raw === 'string' ? normalizeUserCode(raw) : undefined
    if (session.user !== undefined) return redirect(reply, userCode === undefined ? '/device' : `/device?user_code=${userCode}`)
    return sendPage(
      reply,
      200,
      renderSignInPage({
        ...signInOptions(ctx),
        csrfToken: session.record.csrfToken,
        userCode,
        userCodeDisplay: userCode === undefined ? undefined : formatUserCode(userCode),
        codeFromLink: true,
      }),
    )
  })

  app.post('/device/sign-in', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(ctx, request, now)
    if (!isTrustedPost(ctx, request, session, form)) return sendForbidden(ctx, request, reply, 'csrf')
    const result = await ctx.service.signIn(
      {
        session,
        username: formString(form, 'username') ?? '',
        password: formString(form, 'password') ?? '',
        userCode: formString(form, 'user_code'),
        codeFromLink: formString(form, 'code_source') === 'link',
        ip: request.clientIp,
      },
      now,
    )
    switch (result.kind) {
      case 'blocked':
        return sendTooManyRequests(reply, result.retryAfterSeconds)
      case 'failed':
        return sendPage(
          reply,
          401,
          renderSignInPage({
            ...signInOptions(ctx),
            csrfToken: session.record.csrfToken,
            userCode: result.userCode,
            userCodeDisplay: result.userCode === undefined ? undefined : formatUserCode(result.userCode),
            codeFromLink: formString(form, 'code_source') === 'link',
            username: result.username,
            message: 'Invalid username or password.',
          }),
        )
      case 'signed_in':
        setSessionCookie(reply, result.established.cookieValue)
        return redirect(reply, result.established.returnTo)
    }
  })
}
