/** Sign-out: `POST /device/sign-out` with `csrf_token` deletes the session and its cookie, 303 to `/device`. */
import type { FastifyInstance } from 'fastify'
import { clearSessionCookie, isTrustedPost, loadSession, readForm, redirect, sendForbidden, type PageContext } from './kit.js'

/** Registers `POST /device/sign-out`. */
export function registerSignOutPage(app: FastifyInstance, ctx: PageContext): void {
  app.post('/device/sign-out', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(ctx, request, now)
    if (session === undefined) {
      // Already signed out (expired or unknown cookie): nothing to change, so no CSRF check.
      clearSessionCookie(reply)
      return redirect(reply, '/device')
    }
    if (!isTrustedPost(ctx, request, session, form)) return sendForbidden(ctx, request, reply, 'csrf')
    await ctx.service.sessions.end(session, request.clientIp)
    clearSessionCookie(reply)
    return redirect(reply, '/device')
  })
}
