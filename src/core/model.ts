/**
 * Domain objects shared by every layer. camelCase, units in names; wire spellings live in
 * `protocol/` only.
 */

/** Grant types devicegate implements (RFC 6749 §4.4, §6; RFC 8628 §3.4). */
export const GRANT_TYPES = {
  deviceCode: 'urn:ietf:params:oauth:grant-type:device_code',
  refreshToken: 'refresh_token',
  clientCredentials: 'client_credentials',
} as const
export type GrantType = (typeof GRANT_TYPES)[keyof typeof GRANT_TYPES]

/** Client authentication methods at the token-family endpoints (RFC 6749 §2.3, RFC 8414 §2). */
export type ClientAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post'

/** A registered OAuth client (RFC 6749 §2), frozen after configuration is loaded. */
export interface Client {
  readonly id: string
  /** Name shown to approvers on the review page. */
  readonly name: string
  /** Confidential clients authenticate with a secret; public clients send only `client_id`. */
  readonly isConfidential: boolean
  /** argon2id PHC string of the client secret; confidential clients only. */
  readonly secretHash?: string
  /** Authentication methods this client may use. Public clients: `['none']`. */
  readonly authMethods: readonly ClientAuthMethod[]
  readonly grantTypes: readonly GrantType[]
  /** Scopes this client may request (RFC 6749 §3.3). */
  readonly scopes: readonly string[]
  /** Scopes granted when the request names none. */
  readonly defaultScopes: readonly string[]
  /** `jwt` gives RFC 9068 access tokens; `opaque` gives random handles checked by introspection. */
  readonly accessTokenFormat: 'jwt' | 'opaque'
  /** Access-token lifetime in seconds. */
  readonly accessTokenTtlSeconds: number
  /** Refresh-token lifetime in seconds, counted from the first issue of the token family. */
  readonly refreshTokenTtlSeconds: number
  /**
   * When the device_code grant issues a refresh token: `offline_access` only when the granted scope
   * includes offline_access; `always` on every redemption. Absent: offline_access.
   */
  readonly refreshTokenIssuance?: 'offline_access' | 'always'
  /**
   * Seconds after a refresh token's rotation during which a sender-constrained retry (same client,
   * same DPoP key) gets fresh tokens instead of tripping reuse detection. Absent: 0 (off).
   */
  readonly refreshRetryGraceSeconds?: number
  /** Device-code lifetime (`expires_in`, RFC 8628 §3.2) in seconds. */
  readonly deviceCodeTtlSeconds: number
  /** Minimum polling interval (`interval`, RFC 8628 §3.2) in seconds. */
  readonly pollIntervalSeconds: number
  /** May call the introspection endpoint (RFC 7662 §2.1) for any token. */
  readonly canIntrospect: boolean
  /** Disabled clients fail authentication and their tokens are inactive. */
  readonly disabled: boolean
  /** Risk tier for conditional approval (`policy/`). Absent: standard. */
  readonly riskTier?: 'low' | 'standard' | 'high' | 'admin'
  /** Token requests must carry a DPoP proof (RFC 9449 §5). Absent: false. */
  readonly requiresDpop?: boolean
  /**
   * The device code must be bound to a DPoP key at device authorization (devicegate extension of
   * RFC 8628, cf. RFC 9449 §10 `dpop_jkt`). Absent: false.
   */
  readonly requiresBoundDeviceCode?: boolean
  /** RFC 8707 resources this client may request tokens for. Absent or empty: none. */
  readonly resources?: readonly string[]
  /** Usernames of the app's owners (access reviews, offboarding). Absent or empty: none. */
  readonly owners?: readonly string[]
}

/** A user of the built-in user store. */
export interface User {
  /** Stable identifier, used as `sub`. */
  readonly username: string
  readonly displayName: string
  /** argon2id PHC string. */
  readonly passwordHash: string
  readonly disabled: boolean
  /** Groups, for policy conditions. Absent: none. */
  readonly groups?: readonly string[]
  /** Risk attribute for policy conditions, 0–100. Absent: 0. */
  readonly risk?: number
  /** Base32 TOTP secret (RFC 6238) from configuration; database enrolments take precedence. */
  readonly totpSecret?: string
  /** Username of the person's manager (identity provider or SCIM `manager`); access reviews. */
  readonly manager?: string
  /** E-mail address (OpenID Connect `email` claim, SSF `email` subjects). Absent: unknown. */
  readonly email?: string
}

/**
 * The name pages show for a person ("Signed in as …"): the display name, else the stable id.
 * People from an upstream provider or SCIM have an opaque id (a UUID); their directory fills
 * `displayName` from the provider's or SCIM's display name, falling back to their user name, so
 * the id shows only when nothing else is known. Plain text: templates escape it.
 */
export function shownName(user: Pick<User, 'username' | 'displayName'>): string {
  const name = user.displayName.trim()
  return name === '' ? user.username : name
}

/** Scope that asks for a refresh token (OpenID Connect Core §11, used the same way here). */
export const OFFLINE_ACCESS = 'offline_access'

/** Splits a space-delimited scope string (RFC 6749 §3.3) into unique tokens, order kept. */
export function parseScope(scope: string | undefined): string[] {
  if (scope === undefined) return []
  return [...new Set(scope.split(' ').filter((s) => s.length > 0))]
}

/** Read access to registered clients, cached in memory. */
export interface ClientDirectory {
  get(clientId: string): Client | undefined
}

/** Read access to the built-in user store. */
export interface UserDirectory {
  get(username: string): User | undefined
  /**
   * Checks a password against the user's argon2id hash. Runs a dummy verification for unknown
   * users so the response time does not reveal which usernames exist.
   * @returns the user when the password is right and the account is enabled.
   */
  authenticate(username: string, password: string): Promise<User | undefined>
}
