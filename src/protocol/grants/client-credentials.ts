/**
 * The client_credentials grant (RFC 6749 §4.4) for confidential machine clients.
 */
import { GRANT_TYPES } from '../../core/model.js'
import { recordId } from '../../system.js'
import type { ProtocolDeps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { readResources, resolveResources } from '../resources.js'
import { resolveRequestedScope } from '../scope.js'
import { mintAccessToken, tokenResponse, type TokenResponse } from '../tokens.js'
import type { GrantInput } from './types.js'

export const grantType = GRANT_TYPES.clientCredentials
export const parameters = ['scope'] as const

/**
 * Issues an access token to an authenticated confidential client; no refresh token
 * (RFC 6749 §4.4.3). The token's `sub` is the client_id (RFC 9068 §2.2).
 * @throws {OAuthError} `unauthorized_client` for public clients, `invalid_scope`.
 */
export async function handle(input: GrantInput, deps: ProtocolDeps): Promise<TokenResponse> {
  const { client } = input
  if (!client.isConfidential) throw new OAuthError('unauthorized_client', 'client_credentials requires a confidential client')
  const scope = resolveRequestedScope(client, input.params.scope)
  const now = deps.clock.nowSeconds()
  const grantId = recordId(deps.random)
  const resources = resolveResources(client, readResources(input.params))
  const access = await mintAccessToken({ client, subject: null, scope, grantId, issuedAt: now, dpopJkt: input.dpopJkt, resources }, deps)
  await deps.store.issueTokens({
    grant: {
      id: grantId,
      clientId: client.id,
      subject: null,
      scope,
      createdAt: now,
      revokedAt: null,
      deviceGrantId: null,
      expiresAt: access.record.expiresAt,
      dpopJkt: input.dpopJkt,
      resources,
    },
    accessToken: access.record,
  })
  await deps.events?.record({
    type: 'token.issued',
    actor: `client:${client.id}`,
    clientId: client.id,
    ip: input.ctx.clientIp,
    grantId,
    details: { grantType, scope, jti: access.record.jti, refreshToken: false, dpopBound: input.dpopJkt !== null },
  })
  return tokenResponse(access, undefined)
}
