/**
 * OpenID Connect authentication context of device authorizations (table `oidc_auth_context`,
 * migration `011_signals`): the `nonce` a client sent with its device authorization request and
 * how the approver authenticated, kept for the ID Token, userinfo and the access token's
 * `auth_time` / `amr` / `acr` (OpenID Connect Core 1.0 §2, RFC 9068 §2.2.1).
 */
/** How the person who approved a device authorization authenticated. */
export interface AuthenticationContext {
  /** When the approver authenticated (epoch seconds), OpenID Connect Core §2 `auth_time`. */
  authTime: number
  /** RFC 8176 authentication method references, e.g. `['pwd']` or `['pwd', 'otp', 'mfa']`. */
  amr: readonly string[]
  /** Authentication context class reference (devicegate's values: see `protocol/oidc.ts`). */
  acr: string
}

/** What is kept per device authorization. */
export interface AuthContextRecord {
  deviceGrantId: string
  /** The `nonce` of the device authorization request, or null. */
  nonce: string | null
  /** Null until the device code is redeemed. */
  authentication: AuthenticationContext | null
}

/** Storage of {@link AuthContextRecord}s. */
export interface AuthContextStore {
  /** Stores the device authorization request's nonce (first write wins). */
  saveOidcNonce(deviceGrantId: string, nonce: string): Promise<void>
  /** Stores (or replaces) how the approver of a device authorization authenticated. */
  saveAuthenticationContext(deviceGrantId: string, context: AuthenticationContext): Promise<void>
  /** The record of a device authorization, or undefined. */
  findAuthContext(deviceGrantId: string): Promise<AuthContextRecord | undefined>
}
