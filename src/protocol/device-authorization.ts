/**
 * Device Authorization Endpoint (RFC 8628 §3.1–3.2).
 */
import { GRANT_TYPES } from '../core/model.js'
import { formatUserCode, generateUserCode } from '../core/user-code.js'
import { StoreConflictError } from '../storage/store.js'
import { randomToken, sha256Hex } from '../system.js'
import { authenticateClient } from './clients.js'
import type { ProtocolDeps, RequestContext } from './deps.js'
import { OAuthError } from './errors.js'
import type { Params } from './params.js'
import { resolveRequestedScope } from './scope.js'

/** The Device Authorization Response (RFC 8628 §3.2). */
export interface DeviceAuthorizationResponse {
  device_code: string
  user_code: string
  verification_uri: string
  verification_uri_complete: string
  expires_in: number
  interval: number
}

/** Path of the verification page (RFC 8628 §3.3). */
export const VERIFICATION_PATH = '/device'

/**
 * Handles a Device Authorization Request.
 *
 * Public clients identify with `client_id`; confidential clients authenticate (RFC 8628 §3.1).
 * The `device_code` carries 256 bits of randomness and is stored only as its SHA-256; the
 * `user_code` follows RFC 8628 §6.1. `interval` is always present, so the value the client uses is
 * the value enforced.
 *
 * @throws {OAuthError} `invalid_client`, `unauthorized_client` (client lacks the device_code
 *   grant), `invalid_scope`, `invalid_request`.
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.2
 */
export async function handleDeviceAuthorization(
  params: Params,
  ctx: RequestContext,
  deps: ProtocolDeps,
): Promise<DeviceAuthorizationResponse> {
  const client = await authenticateClient({ authorization: ctx.authorization, params }, deps.clients, deps.secrets)
  if (!client.grantTypes.includes(GRANT_TYPES.deviceCode))
    throw new OAuthError('unauthorized_client', 'this client may not use the device authorization grant')
  const scope = resolveRequestedScope(client, params.scope)
  const now = deps.clock.nowSeconds()
  const deviceCode = randomToken(deps.random, 32)
  for (let attempt = 0; ; attempt++) {
    const userCode = generateUserCode(deps.random)
    try {
      await deps.store.createDeviceGrant({
        id: randomToken(deps.random, 16),
        deviceCodeHash: sha256Hex(deviceCode),
        userCode,
        clientId: client.id,
        scope,
        status: 'pending',
        createdAt: now,
        expiresAt: now + client.deviceCodeTtlSeconds,
        intervalSeconds: client.pollIntervalSeconds,
        lastPolledAt: null,
        subject: null,
        decidedAt: null,
        requestIp: ctx.clientIp,
        requestUserAgent: ctx.userAgent?.slice(0, 512) ?? null,
        dpopJkt: null,
        grantId: null,
      })
      const verificationUri = deps.issuer + VERIFICATION_PATH
      return {
        device_code: deviceCode,
        user_code: formatUserCode(userCode),
        verification_uri: verificationUri,
        verification_uri_complete: `${verificationUri}?user_code=${formatUserCode(userCode)}`,
        expires_in: client.deviceCodeTtlSeconds,
        interval: client.pollIntervalSeconds,
      }
    } catch (err) {
      // A user-code collision (about 1 in 2^34 per live code) is retried with a fresh code.
      if (!(err instanceof StoreConflictError) || attempt >= 4) throw err
    }
  }
}
