/**
 * The revocation feed (a devicegate endpoint, not an RFC): `GET /revocations?since=<epoch seconds>`
 * lets resource servers that verify JWT access tokens locally learn of revocations within
 * seconds, without introspecting every request.
 */
import { authenticateClient } from './clients.js'
import type { ProtocolDeps, RequestContext } from './deps.js'
import { OAuthError } from './errors.js'

/** Path of the feed, relative to the issuer. */
export const REVOCATION_FEED_PATH = '/revocations'

/** The feed's JSON body. */
export interface RevocationFeedResponse {
  /** Server time of this answer (epoch seconds): pass it as the next `since`. */
  now: number
  since: number
  /** Access tokens revoked (alone or with their family) at or after `since`, not yet expired. */
  access_tokens: { jti: string; revoked_at: number; exp: number }[]
  /** Token families revoked at or after `since`. */
  grants: { id: string; revoked_at: number }[]
}

/**
 * Answers the revocation feed.
 *
 * The caller authenticates as a confidential client allowed to introspect (`introspection: true`)
 * with HTTP Basic (RFC 6749 §2.3.1) — the same credential a resource server would use for RFC 7662.
 * `since` is epoch seconds (default 0: every revoked, unexpired token). Revocation times are whole
 * seconds and the set is `revoked_at >= since`, so passing the previous `now` never misses one.
 *
 * @throws {OAuthError} `invalid_client` (401, Basic challenge) without valid Basic credentials;
 *   `unauthorized_client` (403, RFC 6749 §5.2 code with the RFC 9110 §15.5.4 status) for an
 *   authenticated client not allowed to introspect; `invalid_request` for a malformed `since` or a
 *   repeated `Authorization` field.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-15.5.4
 */
export async function handleRevocationFeed(
  query: Record<string, unknown> | undefined,
  ctx: RequestContext,
  deps: ProtocolDeps,
): Promise<RevocationFeedResponse> {
  const challenge = { 'WWW-Authenticate': 'Basic realm="devicegate", charset="UTF-8"' }
  // A repeated field goes on to authenticateClient, which refuses it (400 invalid_request).
  if (!Array.isArray(ctx.authorization) && !/^Basic\s/i.test(ctx.authorization ?? ''))
    throw new OAuthError('invalid_client', 'the revocation feed requires HTTP Basic client authentication', { headers: challenge })
  const caller = await authenticateClient({ authorization: ctx.authorization, params: {} }, deps.clients, deps.secrets)
  // Authenticated but not allowed: credentials again would not help, so no 401 and no challenge
  // (RFC 9110 §15.5.4).
  if (!caller.isConfidential || !caller.canIntrospect)
    throw new OAuthError('unauthorized_client', 'this client may not read the revocation feed', { status: 403, detail: 'needs introspection: true' })
  const raw = query?.since
  if (Array.isArray(raw)) throw new OAuthError('invalid_request', '"since" must not be included more than once')
  const sinceText = raw === undefined || raw === '' ? '0' : String(raw)
  if (!/^\d{1,12}$/.test(sinceText)) throw new OAuthError('invalid_request', '"since" must be epoch seconds')
  const since = Number(sinceText)
  const now = deps.clock.nowSeconds()
  const feed = await deps.store.listRevocationsSince(since, now)
  return {
    now,
    since,
    access_tokens: feed.accessTokens.map((t) => ({ jti: t.jti, revoked_at: t.revokedAt, exp: t.expiresAt })),
    grants: feed.grants.map((g) => ({ id: g.id, revoked_at: g.revokedAt })),
  }
}
