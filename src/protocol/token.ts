/**
 * Token Endpoint (RFC 6749 §3.2): authenticates the client and dispatches on `grant_type`.
 */
import { authenticateClient } from './clients.js'
import type { ProtocolDeps, RequestContext } from './deps.js'
import { OAuthError } from './errors.js'
import * as clientCredentials from './grants/client-credentials.js'
import * as deviceCode from './grants/device-code.js'
import * as refreshToken from './grants/refresh-token.js'
import type { GrantModule } from './grants/types.js'
import type { Params } from './params.js'
import type { TokenResponse } from './tokens.js'

const GRANTS: ReadonlyMap<string, GrantModule> = new Map(
  [deviceCode, refreshToken, clientCredentials].map((m) => [m.grantType, m]),
)

/** Grant types the token endpoint supports, for metadata (RFC 8414 `grant_types_supported`). */
export const SUPPORTED_GRANT_TYPES: readonly string[] = [...GRANTS.keys()]

/**
 * Handles a token request.
 *
 * Order of checks: `grant_type` present (`invalid_request`) and known (`unsupported_grant_type`),
 * then client authentication (`invalid_client`), then whether this client may use the grant
 * (`unauthorized_client`), then whether a client that requires DPoP sent a proof
 * (`invalid_dpop_proof`), then the grant's own rules.
 *
 * @param dpopJkt Thumbprint of a verified DPoP proof on the request, or null.
 * @throws {OAuthError}
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2
 */
export async function handleTokenRequest(
  params: Params,
  ctx: RequestContext,
  dpopJkt: string | null,
  deps: ProtocolDeps,
): Promise<TokenResponse> {
  const type = params.grant_type
  if (type === undefined) throw new OAuthError('invalid_request', '"grant_type" is required')
  const grant = GRANTS.get(type)
  if (!grant) throw new OAuthError('unsupported_grant_type', `"grant_type" ${JSON.stringify(type.slice(0, 100))} is not supported`)
  const client = await authenticateClient({ authorization: ctx.authorization, params }, deps.clients, deps.secrets)
  if (!client.grantTypes.includes(type as never))
    throw new OAuthError('unauthorized_client', `this client may not use the ${type} grant`)
  // RFC 9449 §5 (cf. `dpop_bound_access_tokens`, §5.2): such a client's bearer requests are refused.
  if (client.requiresDpop && dpopJkt === null)
    throw new OAuthError('invalid_dpop_proof', 'this client must send a DPoP proof')
  return grant.handle({ client, params, ctx, dpopJkt }, deps)
}
