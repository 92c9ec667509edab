/**
 * Per-request facts derived once by the HTTP layer and read everywhere else, and the record of an
 * answered request that observers (metrics) receive, whichever path answered it.
 */
import type { OAuthErrorOutcome } from '../protocol/errors.js'

/**
 * One answered request, as both answering paths report it (fastify's `onResponse`, and the fast
 * path of fast-routes.ts once its response has finished).
 */
export interface AnsweredRequest {
  /** Request id (`req-1`, `req-2`, …; base 36). */
  readonly id: string
  readonly method: string
  /** The request target as sent: path and query string. */
  readonly url: string
  /** The client address (client-address.ts). */
  readonly clientIp: string
  /** The route pattern (`/token`, `/admin/api/grants/:id`), or `unmatched`. */
  readonly endpoint: string
  /** The HTTP status sent. */
  readonly status: number
  /** From the request's arrival to the response's end, in milliseconds. */
  readonly elapsedMs: number
  /** What a route, hook or parser threw to the error handler (fastify's `onError`); undefined when nothing was. */
  readonly error: unknown
  /** The outcome of the OAuth error a route answered with itself (see `FastifyRequest.oauthError`), or null. */
  readonly oauthError: OAuthErrorOutcome | null
}

/** Told of every answered request, after its response has finished. Must not throw. */
export type RequestObserver = (request: AnsweredRequest) => void

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The caller's IP address: the socket peer, or — only when the peer is a configured trusted
     * proxy — the right-most untrusted address of `X-Forwarded-For`. Used for rate limits, the
     * review page, logs, policy and audit.
     */
    clientIp: string
    /**
     * The outcome ({@link OAuthError.outcome}: the OAuth error code of RFC 6749 §5.2, or
     * `no_credentials`) of the error a JSON endpoint answered with itself, without passing it to
     * fastify's error handler, so no `onError` hook saw it (`authorization_pending`, `slow_down`,
     * …); null otherwise. Metrics count it as the request's outcome.
     */
    oauthError: OAuthErrorOutcome | null
    /** What was thrown to the error handler for this request (seen by `onError`); undefined when nothing was. */
    thrownError: unknown
    /**
     * Set by the not-found handler when the path is that of a route marked `takesDpopProof` asked
     * with another method: its 405 carries the `DPoP-Nonce` too (RFC 9449 §8, §9).
     */
    takesDpopProof: boolean
  }
  interface FastifyContextConfig {
    /**
     * The route takes a DPoP proof (RFC 9449 §7): with `dpop.require_nonce`, every answer at its
     * path — also those the HTTP layer gives before or instead of it (405, 413, 415, 417, 503) —
     * carries the current `DPoP-Nonce` (RFC 9449 §8, §9; http/app.ts).
     */
    takesDpopProof?: boolean
  }
  interface FastifyInstance {
    /**
     * Adds an observer of every request the app answers: its routes and the fast path in front of
     * them (http/fast-routes.ts), which no fastify hook sees.
     */
    observeRequests(observer: RequestObserver): void
  }
}
export {}
