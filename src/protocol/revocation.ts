/**
 * Token Revocation Endpoint (RFC 7009).
 */
import { authenticateClient } from './clients.js'
import type { ProtocolDeps, RequestContext } from './deps.js'
import { OAuthError } from './errors.js'
import { requireParam, type Params } from './params.js'
import { findToken } from './token-lookup.js'

/**
 * Revokes a token.
 *
 * A refresh token revokes its whole family, access tokens included (RFC 7009 §2.1 SHOULD; required
 * here). An access token revokes only itself, at once. Unknown, expired or already revoked tokens
 * answer 200 (RFC 7009 §2.2); `token_type_hint` only orders the search and unknown hints are
 * ignored. A token issued to another client is refused with `unauthorized_client` and nothing
 * changes (RFC 7009 §2.1 names no code; this is devicegate's choice).
 *
 * @throws {OAuthError} `invalid_client`, `invalid_request` (missing `token`), `unauthorized_client`.
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2.1
 */
export async function handleRevocation(params: Params, ctx: RequestContext, deps: ProtocolDeps): Promise<void> {
  const client = await authenticateClient({ authorization: ctx.authorization, params }, deps.clients, deps.secrets)
  const token = requireParam(params, 'token')
  const found = await findToken(deps.store, token, params.token_type_hint)
  if (!found) return
  if (found.record.clientId !== client.id)
    throw new OAuthError('unauthorized_client', 'the token was not issued to this client')
  const now = deps.clock.nowSeconds()
  if (found.kind === 'refresh_token') await deps.store.revokeGrant(found.record.grantId, now)
  else if (found.record.revokedAt === null) await deps.store.revokeAccessToken(found.record.tokenHash, now)
  else return
  await deps.events?.record({
    type: 'token.revoked',
    actor: `client:${client.id}`,
    clientId: client.id,
    subject: found.record.subject,
    ip: ctx.clientIp,
    grantId: found.record.grantId,
    details: { via: 'rfc7009', tokenType: found.kind, scope: found.kind === 'refresh_token' ? 'grant' : 'token' },
  })
}
