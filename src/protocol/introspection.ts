/**
 * Token Introspection Endpoint (RFC 7662).
 */
import { isIP } from 'node:net'
import { authenticateClient } from './clients.js'
import type { ProtocolDeps, RequestContext } from './deps.js'
import { OAuthError } from './errors.js'
import { requireParam, type Params } from './params.js'
import { findToken, isTokenActive } from './token-lookup.js'
import { audienceOf } from './tokens.js'

/** Introspection response (RFC 7662 §2.2). */
export type IntrospectionResponse =
  | { active: false }
  | {
      active: true
      scope: string
      client_id: string
      sub: string
      exp: number
      iat: number
      jti: string
      iss: string
      token_type: 'Bearer' | 'DPoP' | 'refresh_token'
      cnf?: { jkt: string }
      /** RFC 8707 resources of an audience-restricted access token. */
      aud?: string | string[]
    }

/**
 * Answers an introspection request.
 *
 * Only authenticated confidential clients may call it (RFC 7662 §2.1). A client allowed to
 * introspect (`introspection: true`) sees any token; any other confidential client sees only its
 * own tokens, and others' tokens answer `active: false` — nothing about a token leaks to a
 * caller that may not know it. Expired, revoked, rotated and unknown tokens answer only
 * `{ active: false }`. A caller allowed to introspect may add `client_ip` (RFC 7662 §2.1 allows
 * further context parameters): the address the token was presented from, recorded as the
 * family's last use and checked by the new-network anomaly detector.
 *
 * @throws {OAuthError} `invalid_client` for unauthenticated or public callers; `invalid_request`
 *   without `token`.
 * @see https://www.rfc-editor.org/rfc/rfc7662#section-2.2
 */
export async function handleIntrospection(params: Params, ctx: RequestContext, deps: ProtocolDeps): Promise<IntrospectionResponse> {
  const caller = await authenticateClient({ authorization: ctx.authorization, params }, deps.clients, deps.secrets)
  if (!caller.isConfidential)
    throw new OAuthError('invalid_client', 'introspection requires an authenticated confidential client', {
      headers: { 'WWW-Authenticate': 'Basic realm="devicegate", charset="UTF-8"' },
    })
  const token = requireParam(params, 'token')
  const found = await findToken(deps.store, token, params.token_type_hint)
  const now = deps.clock.nowSeconds()
  if (!found || !isTokenActive(found, now)) return { active: false }
  const r = found.record
  if (!caller.canIntrospect && r.clientId !== caller.id) return { active: false }
  const owner = deps.clients.get(r.clientId)
  if (!owner || owner.disabled) return { active: false }
  // Last use for the inventory and the new-network detector: a signal, written at most once a
  // minute per family. RFC 7662 §2.1 lets the resource server add context; devicegate reads an
  // optional `client_ip` (the address the token was presented from) from trusted introspectors.
  const presentedFrom = caller.canIntrospect && params.client_ip !== undefined && isIP(params.client_ip) !== 0 ? params.client_ip : null
  await deps.events?.record({
    type: 'token.used',
    actor: `client:${caller.id}`,
    clientId: r.clientId,
    subject: r.subject,
    ip: presentedFrom,
    grantId: r.grantId,
    details: { via: 'introspection', tokenType: found.kind },
  })
  return {
    active: true,
    scope: r.scope,
    client_id: r.clientId,
    sub: r.subject ?? r.clientId,
    exp: r.expiresAt ?? 0,
    iat: r.issuedAt,
    jti: found.kind === 'access_token' ? found.record.jti : found.record.id,
    iss: deps.issuer,
    ...(found.kind === 'access_token' && found.record.resources?.length ? { aud: audienceOf(found.record.resources, deps.issuer) } : {}),
    token_type: found.kind === 'refresh_token' ? 'refresh_token' : r.dpopJkt ? 'DPoP' : 'Bearer',
    ...(r.dpopJkt ? { cnf: { jkt: r.dpopJkt } } : {}),
  }
}
