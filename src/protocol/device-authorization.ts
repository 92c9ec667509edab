/**
 * Device Authorization Endpoint (RFC 8628 §3.1–3.2).
 */
import { GRANT_TYPES } from '../core/model.js'
import { DECLARABLE_STORAGE_CLASSES, type StorageClass } from '../core/storage-class.js'
import { formatUserCode, generateUserCode } from '../core/user-code.js'
import { StoreConflictError } from '../storage/store.js'
import { recordId } from '../system.js'
import { authenticateClient } from './clients.js'
import { issueDeviceCode } from './device-code-key.js'
import type { ProtocolDeps, RequestContext } from './deps.js'
import { OAuthError } from './errors.js'
import type { Params } from './params.js'
import { readResources, resolveResources } from './resources.js'
import { isOpenIdScope, readNonce } from './oidc.js'
import { resolveRequestedScope } from './scope.js'
import { policyDecidedEvent } from '../policy/events.js'

/** The Device Authorization Response (RFC 8628 §3.2). */
export interface DeviceAuthorizationResponse {
  device_code: string
  user_code: string
  verification_uri: string
  /** Omitted when the client's policy requires the code to be typed (kiosk, `disallow_verification_uri_complete`). */
  verification_uri_complete?: string
  expires_in: number
  interval: number
}

/** Path of the verification page (RFC 8628 §3.3). */
export const VERIFICATION_PATH = '/device'

/** An RFC 7638 SHA-256 JWK thumbprint: 43 base64url characters (RFC 9449 §10). */
const JKT_PATTERN = /^[A-Za-z0-9_-]{43}$/

/**
 * Binds the device code to a DPoP key — a devicegate extension of RFC 8628, modelled on the
 * `dpop_jkt` authorization request parameter of RFC 9449 §10. The key comes from a DPoP proof on
 * the device authorization request (already verified, `htu` = this endpoint) or from a `dpop_jkt`
 * parameter; when both are sent they must name the same key. A bound device code is redeemed only
 * with a proof made with that key, so a stolen device code is worthless. Clients that send neither
 * get an unbound code, exactly as in RFC 8628.
 *
 * @returns the thumbprint to store, or null.
 * @throws {OAuthError} `invalid_request` for a malformed `dpop_jkt`; `invalid_dpop_proof` when the
 *   proof's key differs from `dpop_jkt`.
 */
export function resolveDeviceCodeBinding(params: Params, proofJkt: string | null): string | null {
  const requested = params.dpop_jkt
  if (requested === undefined) return proofJkt
  if (!JKT_PATTERN.test(requested)) throw new OAuthError('invalid_request', '"dpop_jkt" must be a base64url SHA-256 JWK thumbprint')
  if (proofJkt !== null && proofJkt !== requested)
    throw new OAuthError('invalid_dpop_proof', 'the DPoP proof key does not match "dpop_jkt"')
  return requested
}

/** Name of the storage declaration parameter (devicegate extension). */
export const STORAGE_CLASS_PARAMETER = 'storage_class'

/**
 * Reads the client's declared token storage — a devicegate extension of RFC 8628 §3.1 and of the
 * refresh request (RFC 6749 §6): `storage_class` is one of `keyring`, `encrypted_file`, `memory`,
 * `plaintext`; absent means `unknown`. The declaration is a claim the server cannot check (see
 * `core/storage-class.ts`).
 *
 * @throws {OAuthError} `invalid_request` for any other value.
 */
export function readStorageClass(params: Params): StorageClass | undefined {
  const v = params[STORAGE_CLASS_PARAMETER]
  if (v === undefined) return undefined
  if (!(DECLARABLE_STORAGE_CLASSES as readonly string[]).includes(v))
    throw new OAuthError('invalid_request', `"storage_class" must be one of ${DECLARABLE_STORAGE_CLASSES.join(', ')}`)
  return v as StorageClass
}

/**
 * The public members of a refusal caused by the declared storage: `devicegate_reason:
 * storage_not_accepted` and the class that was refused, so the SDK can say so.
 */
export function storageRefusalMembers(storageClass: StorageClass): Record<string, string> {
  return { devicegate_reason: 'storage_not_accepted', storage_class: storageClass }
}

/**
 * Handles a Device Authorization Request.
 *
 * Public clients identify with `client_id`; confidential clients authenticate (RFC 8628 §3.1).
 * A DPoP proof or `dpop_jkt` binds the device code to the client's key
 * ({@link resolveDeviceCodeBinding}, a devicegate extension). A `storage_class` parameter declares
 * where the client keeps its tokens ({@link readStorageClass}, a devicegate extension); a policy
 * rule with a `storage` condition that denies it refuses the flow here, before any code exists.
 * The `device_code` is `<device grant id>.<secret>` ({@link issueDeviceCode}): the secret carries
 * 256 bits of randomness and is stored only as its SHA-256 ({@link deviceCodeLookupKey}); the
 * `user_code` follows RFC 8628 §6.1. `interval` is always present, so the value the client uses is
 * the value enforced.
 *
 * @param proofJkt Thumbprint of a verified DPoP proof on the request (RFC 9449 §4), or null.
 * With `openid` in the scope, a `nonce` parameter is kept for the ID Token (OpenID Connect Core
 * §3.1.2.1 `nonce`, carried here as a devicegate extension).
 *
 * @throws {OAuthError} `invalid_client`, `unauthorized_client` (client lacks the device_code
 *   grant), `invalid_scope`, `invalid_request` (also: an unbound request from a client with
 *   `dpop.bind_device_code`), `invalid_dpop_proof`, `invalid_target` (a
 *   `resource` the client may not use, RFC 8707 §2); `unauthorized_client` with
 *   `devicegate_reason: storage_not_accepted` when a policy refuses the declared storage.
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.2
 */
export async function handleDeviceAuthorization(
  params: Params,
  ctx: RequestContext,
  deps: ProtocolDeps,
  proofJkt: string | null = null,
): Promise<DeviceAuthorizationResponse> {
  const client = await authenticateClient({ authorization: ctx.authorization, params }, deps.clients, deps.secrets)
  if (!client.grantTypes.includes(GRANT_TYPES.deviceCode))
    throw new OAuthError('unauthorized_client', 'this client may not use the device authorization grant')
  const scope = resolveRequestedScope(client, params.scope)
  const dpopJkt = resolveDeviceCodeBinding(params, proofJkt)
  // OpenID Connect: the nonce comes back in the ID Token (devicegate extension, see protocol/oidc.ts).
  // Its length and characters are checked with or without `openid` (a 10 KB nonce was accepted
  // when the scope had none); it is kept only for an OpenID request.
  const requestedNonce = readNonce(params)
  const nonce = isOpenIdScope(scope) ? requestedNonce : undefined
  // RFC 8707 §2: the resources the tokens will be for; the token request may narrow them.
  const resources = resolveResources(client, readResources(params))
  const now = deps.clock.nowSeconds()
  // Conditional approval: the flow block and the client's profile apply before any code
  // exists; a posture assertion (devicegate extension) is verified now and kept for the approval.
  const settings = deps.policy?.settings(client.id)
  if (deps.policy?.isClientBlocked(client.id))
    throw new OAuthError('unauthorized_client', 'the device flow is blocked for this client by policy')
  // devicegate extension: the client's `dpop.bind_device_code` or the policy's
  // `require_bound_device_code` makes the key binding mandatory.
  if (dpopJkt === null && (client.requiresBoundDeviceCode || settings?.requireBoundDeviceCode))
    throw new OAuthError('invalid_request', 'this client must bind the device code to a DPoP key: send a DPoP proof or "dpop_jkt"')
  const ttlSeconds = Math.min(client.deviceCodeTtlSeconds, settings?.deviceCodeTtlSeconds ?? Number.MAX_SAFE_INTEGER)
  const posture = params.device_posture === undefined ? undefined : await deps.policy?.verifyPosture(params.device_posture, now)
  const storageClass = readStorageClass(params) ?? 'unknown'
  if (deps.policy?.hasStorageRules()) {
    // Storage rules: storage a rule refuses is refused now, so the client learns it before the
    // user spends time approving. Only rules that name `storage` are enforced here, and only a
    // policy that has such rules is evaluated (nothing is added to the request otherwise).
    const decision = await deps.policy.decideAtAuthorization({
      now,
      client,
      requestIp: ctx.clientIp,
      posture: posture ?? { status: 'absent' },
      dpopJkt,
      storageClass,
      requestUserAgent: ctx.userAgent ?? null,
    })
    const refusal = deps.policy.storageRefusal(decision)
    if (refusal?.refuses === 'flow') {
      await deps.events?.record(policyDecidedEvent(decision, { phase: 'authorization', clientId: client.id, subject: null, ip: ctx.clientIp }))
      throw new OAuthError('unauthorized_client', `tokens kept in "${storageClass}" storage are not accepted for this client`, {
        detail: `storage refused by ${refusal.rules.join(', ')} (${refusal.codes.join(', ')})`,
        members: storageRefusalMembers(storageClass),
      })
    }
  }
  for (let attempt = 0; ; attempt++) {
    const userCode = generateUserCode(deps.random)
    try {
      const id = recordId(deps.random)
      // `<id>.<secret>`: the store finds the grant by its id (the primary key) and keeps only the secret's hash.
      const deviceCode = issueDeviceCode(id, deps.random)
      await deps.store.createDeviceGrant({
        id,
        deviceCodeHash: deviceCode.key,
        userCode,
        clientId: client.id,
        scope,
        status: 'pending',
        createdAt: now,
        expiresAt: now + ttlSeconds,
        intervalSeconds: client.pollIntervalSeconds,
        lastPolledAt: null,
        subject: null,
        decidedAt: null,
        requestIp: ctx.clientIp,
        requestUserAgent: ctx.userAgent?.slice(0, 512) ?? null,
        dpopJkt,
        grantId: null,
        ...(resources.length > 0 ? { resources } : {}),
      }, storageClass)
      if (posture) await deps.store.saveDevicePosture(id, JSON.stringify(posture))
      if (nonce !== undefined) await deps.store.saveOidcNonce(id, nonce)
      await deps.events?.record({
        type: 'device_authorization.requested',
        actor: `client:${client.id}`,
        clientId: client.id,
        ip: ctx.clientIp,
        details: { deviceGrantId: id, scope, dpopBound: dpopJkt !== null, storageClass, userAgent: ctx.userAgent?.slice(0, 200) ?? null },
      })
      const verificationUri = deps.issuer + VERIFICATION_PATH
      return {
        device_code: deviceCode.code,
        user_code: formatUserCode(userCode),
        verification_uri: verificationUri,
        // RFC 8628 §3.2 makes it optional; a policy that requires a typed code omits it.
        ...(settings?.requireTypedCode ? {} : { verification_uri_complete: `${verificationUri}?user_code=${formatUserCode(userCode)}` }),
        expires_in: ttlSeconds,
        interval: client.pollIntervalSeconds,
      }
    } catch (err) {
      // A user-code collision (about 1 in 2^34 per live code) is retried with a fresh code.
      if (!(err instanceof StoreConflictError) || attempt >= 4) throw err
    }
  }
}
