/**
 * Per-request facts derived once by the HTTP layer and read everywhere else.
 */
import type { OAuthErrorCode } from '../protocol/errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The caller's IP address: the socket peer, or — only when the peer is a configured trusted
     * proxy — the right-most untrusted address of `X-Forwarded-For`. Used for rate limits, the
     * review page, logs, policy and audit.
     */
    clientIp: string
    /**
     * The OAuth error code (RFC 6749 §5.2) a JSON endpoint answered with itself, without passing
     * the error to fastify's error handler, so no `onError` hook saw it (`authorization_pending`,
     * `slow_down`, …); null otherwise. Metrics count it as the request's outcome.
     */
    oauthError: OAuthErrorCode | null
  }
}
export {}
