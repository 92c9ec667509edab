/**
 * OpenID Connect for device-flow clients: the ID Token in the token response (OpenID Connect
 * Core 1.0 §2, §3.1.3.6), the UserInfo Endpoint (§5.3) and the discovery document (OpenID
 * Connect Discovery 1.0 §3).
 *
 * A device authorization whose granted scope includes `openid` yields an ID Token when its code is
 * redeemed, and again at each refresh (§12.2, without `nonce`). The `nonce` of the device
 * authorization request (a devicegate extension of RFC 8628: the device flow has no
 * authorization request, so the nonce rides on the device authorization request, as openid-client
 * and the OpenID Connect CIBA profile do) comes back in the ID Token from the redemption.
 *
 * Authentication context: recorded when the person approves — `auth_time` is their sign-in on the
 * verification pages; `amr` (RFC 8176) is `pwd`, plus `otp` and `mfa` when they completed the
 * second factor in that sign-in; `acr` is one of {@link ACR_VALUES}.
 */
import { parseScope, type Client, type User } from '../core/model.js'
import type { AuthenticationContext } from '../storage/oidc-context.js'
import type { DeviceGrantRecord } from '../storage/store.js'
import { createHash } from 'node:crypto'
import { authenticateAccessToken, resourceChallenge, type ProtectedRequest } from './bearer.js'
import type { ProtocolDeps } from './deps.js'
import { OAuthError } from './errors.js'
import type { Params } from './params.js'

/** The scope that makes a request an OpenID Connect request (Core §3.1.2.1). */
export const OPENID_SCOPE = 'openid'

/** Paths of the OpenID Connect endpoints, relative to the issuer. */
export const OIDC_ENDPOINTS = {
  configuration: '/.well-known/openid-configuration',
  userinfo: '/userinfo',
} as const

/**
 * devicegate's `acr` values: a password sign-in, or a sign-in with a second factor (RFC 6238
 * TOTP). URNs in devicegate's namespace, as OpenID Connect Core §2 allows; announced in
 * `acr_values_supported`.
 */
export const ACR_VALUES = {
  password: 'urn:devicegate:acr:pwd',
  mfa: 'urn:devicegate:acr:mfa',
} as const

/**
 * Longest accepted `nonce`, in characters. OpenID Connect Core §3.1.2.1 sets no limit; 255 bounds
 * what each pending device authorization stores and every ID Token repeats, and leaves room for
 * any random nonce (openid-client's `randomNonce()` is 43 characters).
 */
export const MAX_NONCE_LENGTH = 255

/** Claims the UserInfo Endpoint and ID Tokens may carry (Core §5.1), for `claims_supported`. */
export const CLAIMS_SUPPORTED = ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'amr', 'acr', 'at_hash', 'sid', 'name', 'preferred_username', 'email', 'email_verified'] as const

/**
 * Reads the `nonce` of a device authorization request (devicegate extension, see the module
 * comment). Checked on every request that carries one; the caller keeps it only when the
 * requested scope includes `openid`.
 * @throws {OAuthError} `invalid_request` when it is longer than {@link MAX_NONCE_LENGTH} or not printable ASCII.
 */
export function readNonce(params: Params): string | undefined {
  const nonce = params.nonce
  if (nonce === undefined) return undefined
  if (nonce.length > MAX_NONCE_LENGTH || !/^[\x20-\x7E]+$/.test(nonce))
    throw new OAuthError('invalid_request', `"nonce" must be at most ${MAX_NONCE_LENGTH} printable ASCII characters`)
  return nonce
}

/** Whether a space-delimited scope includes `openid`. */
export function isOpenIdScope(scope: string): boolean {
  return parseScope(scope).includes(OPENID_SCOPE)
}

/**
 * How a person authenticated in a sign-in: `auth_time` is the sign-in; `amr` is `pwd`, plus `otp`
 * and `mfa` when the second factor was completed in that sign-in (RFC 8176 §2). Recorded by the
 * verification service when the person approves.
 */
export function authenticationOfSignIn(authTime: number, mfaDone: boolean): AuthenticationContext {
  return {
    authTime,
    amr: mfaDone ? ['pwd', 'otp', 'mfa'] : ['pwd'],
    acr: mfaDone ? ACR_VALUES.mfa : ACR_VALUES.password,
  }
}

/**
 * The authentication context of an approval recorded without one (a server before this feature):
 * the approval time, and the second factor as the approval's policy facts record it.
 */
export function authenticationAtApproval(grant: Pick<DeviceGrantRecord, 'decidedAt'>, mfaDone: boolean, now: number): AuthenticationContext {
  return authenticationOfSignIn(grant.decidedAt ?? now, mfaDone)
}

/** What an ID Token states. */
export interface IdTokenInput {
  client: Client
  subject: string
  authentication: AuthenticationContext | null
  /** The device authorization request's `nonce`; omitted at refresh (Core §12.2). */
  nonce?: string | null
  /** The access token issued with it, for `at_hash` (Core §3.1.3.6). */
  accessToken: string
  /** The token family (grant) id: the ID Token's `sid`, the session SSF events name. */
  sessionId: string
}

/** `at_hash` (Core §3.1.3.6): the left half of the hash of the access token, with the signing alg's hash size. */
export function atHash(accessToken: string, alg: string): string {
  const bits = /(\d{3})$/.exec(alg)?.[1]
  const algorithm = alg === 'EdDSA' ? 'sha512' : `sha${bits ?? '256'}`
  const digest = createHash(algorithm).update(accessToken).digest()
  return digest.subarray(0, digest.length / 2).toString('base64url')
}

/**
 * Mints an ID Token (OpenID Connect Core §2): `iss`, `sub`, `aud` (the client), `exp` (the
 * client's access-token lifetime), `iat`, `auth_time`, `amr`, `acr`, `nonce` when one was sent,
 * `at_hash`, `sid` (the token family, OpenID Connect Front-Channel Logout §3), signed with the server's active key (the JWKS at `jwks_uri`), `typ: JWT`.
 */
export async function mintIdToken(input: IdTokenInput, deps: Pick<ProtocolDeps, 'issuer' | 'keys' | 'clock'>): Promise<string> {
  const now = deps.clock.nowSeconds()
  const key = await deps.keys.activeKey()
  const a = input.authentication
  return key.sign(
    { alg: key.alg, kid: key.kid, typ: 'JWT' },
    {
      ...(a ? { auth_time: a.authTime, amr: [...a.amr], acr: a.acr } : {}),
      ...(input.nonce ? { nonce: input.nonce } : {}),
      at_hash: atHash(input.accessToken, key.alg),
      sid: input.sessionId,
      iss: deps.issuer,
      sub: input.subject,
      aud: input.client.id,
      iat: now,
      exp: now + input.client.accessTokenTtlSeconds,
    },
  )
}

/**
 * The OpenID Provider Metadata (Discovery 1.0 §3): the RFC 8414 document plus `userinfo_endpoint`,
 * `subject_types_supported` (`public`), `id_token_signing_alg_values_supported`, `claims_supported`,
 * `acr_values_supported`. `response_types_supported` stays empty: devicegate serves the device
 * flow, not the authorization endpoint.
 */
export function buildOpenIdConfiguration(metadata: Record<string, unknown>, opts: { issuer: string; signingAlg: string }): Record<string, unknown> {
  const scopes = new Set([...((metadata.scopes_supported as string[] | undefined) ?? []), OPENID_SCOPE])
  return {
    ...metadata,
    userinfo_endpoint: opts.issuer + OIDC_ENDPOINTS.userinfo,
    scopes_supported: [...scopes],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [opts.signingAlg],
    userinfo_signing_alg_values_supported: [],
    claims_supported: [...CLAIMS_SUPPORTED],
    acr_values_supported: Object.values(ACR_VALUES),
    claims_parameter_supported: false,
    request_parameter_supported: false,
  }
}

/** The standard claims of a user for the granted scopes (Core §5.4): `profile` and `email`. */
export function userClaims(user: User | undefined, scopes: readonly string[]): Record<string, unknown> {
  if (user === undefined) return {}
  return {
    ...(scopes.includes('profile') ? { name: user.displayName, preferred_username: user.username } : {}),
    // An address from configuration or the organisation's directory is taken as verified.
    ...(scopes.includes('email') && user.email ? { email: user.email, email_verified: true } : {}),
  }
}

/**
 * The UserInfo Endpoint (Core §5.3): with an access token whose scope includes `openid`, the
 * user's `sub` and the claims of the granted scopes, plus `auth_time`, `amr` and `acr` of the
 * approval when known. Client-credentials tokens (no user) are refused with `invalid_token`.
 *
 * @throws {OAuthError} `invalid_request` (400, a malformed `Authorization`), `invalid_token` (401),
 *   `insufficient_scope` (403, no `openid`), `invalid_dpop_proof` (401), `use_dpop_nonce` (401 with
 *   a `DPoP-Nonce`, when `dpop.require_nonce`, RFC 9449 §9) — each with its `WWW-Authenticate`
 *   challenge (RFC 6750 §3, RFC 9449 §7.1); see `authenticateAccessToken`.
 * @see https://openid.net/specs/openid-connect-core-1_0.html#UserInfo
 */
export async function handleUserInfo(
  request: ProtectedRequest,
  deps: Pick<ProtocolDeps, 'store' | 'clock' | 'clients' | 'users' | 'dpopNonces'>,
): Promise<Record<string, unknown>> {
  const { record, scopes } = await authenticateAccessToken(request, deps, { realm: 'devicegate-userinfo', scope: OPENID_SCOPE })
  if (record.subject === null)
    throw new OAuthError('invalid_token', 'the access token does not name a user', {
      headers: { 'WWW-Authenticate': resourceChallenge('devicegate-userinfo', 'invalid_token') },
    })
  const authentication = await authenticationOfGrant(record.grantId, deps)
  return {
    sub: record.subject,
    ...userClaims(deps.users.get(record.subject), scopes),
    ...(authentication ? { auth_time: authentication.authTime, amr: [...authentication.amr], acr: authentication.acr } : {}),
  }
}

/** The authentication context recorded for a token family's device authorization, if any. */
export async function authenticationOfGrant(
  grantId: string,
  deps: Pick<ProtocolDeps, 'store'>,
): Promise<AuthenticationContext | null> {
  const family = await deps.store.findGrant(grantId)
  if (!family?.deviceGrantId) return null
  return (await deps.store.findAuthContext(family.deviceGrantId))?.authentication ?? null
}

