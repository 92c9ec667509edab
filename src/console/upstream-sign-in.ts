/**
 * Adapts an upstream sign-in that ends in a signed-in verification-page session (`dg_session`),
 * such as the OpenID Connect sign-in of src/identity/ (`beginUpstreamSignIn(reply, upstream,
 * { provider, returnTo })`), to a {@link ConsoleSignIn}:
 *
 * - `GET /console/sign-in/<id>`        calls `begin(reply, '/console/sign-in/<id>/done')`, which
 *                                      sends the browser to the provider.
 * - `GET /console/sign-in/<id>/done`   where the provider flow returns: reads the browser's
 *                                      verification session and, when it was signed in within
 *                                      `maxAgeSeconds`, starts a console session for that person
 *                                      (second factor: the session's MFA time, set when the
 *                                      provider reported `amr`/`acr` with one). An older or missing
 *                                      session is sent back to the console's sign-in page.
 *
 * Only a fresh sign-in counts, so a verification session left open for an hour does not silently
 * become a console session.
 */
import type { FastifyReply } from 'fastify'
import { sha256Hex } from '../system.js'
import type { ConsoleSignIn } from './index.js'

/** Name of the verification pages' session cookie (`web/verification.ts` SESSION_COOKIE). */
const VERIFICATION_COOKIE = 'dg_session'

export interface SessionBridgeOptions {
  /** URL segment, `[a-z0-9-]+`, e.g. the provider id. */
  id: string
  /** Link text on the sign-in page. */
  label: string
  /** Starts the upstream sign-in that returns to `returnTo` with a signed-in `dg_session`. */
  begin(reply: FastifyReply, returnTo: string): Promise<FastifyReply>
  /** How recent the upstream sign-in must be, in seconds. Default: 120. */
  maxAgeSeconds?: number
}

/** A {@link ConsoleSignIn} over a sign-in that ends in a verification-page session. */
export function sessionBridgeSignIn(o: SessionBridgeOptions): ConsoleSignIn {
  return {
    id: o.id,
    label: o.label,
    async register(app, { complete, store, clock }) {
      app.get(`/sign-in/${o.id}`, async (_request, reply) => o.begin(reply, `/console/sign-in/${o.id}/done`))
      app.get(`/sign-in/${o.id}/done`, async (request, reply) => {
        const value = request.cookies[VERIFICATION_COOKIE]
        const now = clock.nowSeconds()
        const record = value !== undefined && value.length > 0 && value.length <= 256 ? await store.findWebSession(sha256Hex(value), now) : undefined
        const fresh = record !== undefined && record.subject !== null && record.authTime !== null && now - record.authTime <= (o.maxAgeSeconds ?? 120)
        if (!fresh) return reply.code(303).header('cache-control', 'no-store').header('location', '/console/sign-in').send()
        const mfa = record.mfaAt !== undefined && record.mfaAt !== null && record.mfaAt >= record.authTime!
        return complete(request, reply, { username: record.subject!, mfa, method: `upstream:${o.id}` })
      })
    },
  }
}
