/**
 * The one check every state-changing form POST of devicegate's pages passes (RFC 6749 §10.12):
 * a synchronizer CSRF token bound to the session, plus the browser's Origin and Sec-Fetch-Site
 * headers. SameSite=Lax on the session cookie is defence in depth, not the control.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-10.12
 */
import { constantTimeEqual } from '../system.js'

/** What a POST says about where it came from. */
export interface PostProvenance {
  /** The `Sec-Fetch-Site` header, when the browser sent one. */
  secFetchSite?: unknown
  /** The `Origin` header, when the browser sent one. */
  origin?: string | undefined
  /** The `csrf_token` form field (anything else than one string fails). */
  csrfToken: unknown
}

/**
 * Builds the check for one issuer. Only configuration is trusted: the request's own Host (or
 * X-Forwarded-Host) is chosen by whoever sends it, so comparing with it would let a DNS-rebinding
 * page pass; behind a TLS proxy fastify itself sees http, so the configured issuer is the public
 * origin.
 *
 * @param issuerOrigin The issuer URL or origin (`https://auth.example.com`).
 * @throws {TypeError} when `issuerOrigin` is not a URL (programmer misuse, at start-up).
 * @returns `isTrustedPost(post, sessionCsrfToken)`: true only with the session's CSRF token, an
 *   Origin (when sent) equal to the issuer's, and no `Sec-Fetch-Site: cross-site`. False without
 *   a session (`sessionCsrfToken` undefined).
 */
export function createPostGuard(issuerOrigin: string) {
  const expectedOrigin = new URL(issuerOrigin).origin

  /**
   * Whether an `Origin` header names the issuer's origin. The header is parsed so that an explicit
   * default port (`http://localhost:80`) matches like the serialised origin does.
   */
  function isIssuerOrigin(origin: string): boolean {
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+$/i.test(origin)) return false
    try {
      return new URL(origin).origin === expectedOrigin
    } catch {
      return false
    }
  }

  return function isTrustedPost(post: PostProvenance, sessionCsrfToken: string | undefined): boolean {
    if (sessionCsrfToken === undefined) return false
    if (post.secFetchSite === 'cross-site') return false
    if (post.origin !== undefined && !isIssuerOrigin(post.origin)) return false
    const token = post.csrfToken
    if (typeof token !== 'string' || token.length === 0) return false
    return constantTimeEqual(token, sessionCsrfToken)
  }
}

/** See {@link createPostGuard}. */
export type PostGuard = ReturnType<typeof createPostGuard>
