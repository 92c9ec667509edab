/**
 * Minting access tokens (RFC 9068 JWT or opaque) and refresh tokens, and the token response
 * (RFC 6749 §5.1).
 */
import type { Client } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import type { AuthenticationContext } from '../storage/oidc-context.js'
import type { AccessTokenRecord, RefreshTokenRecord } from '../storage/store.js'
import { randomToken, recordId, sha256Hex } from '../system.js'
import type { KeyRing } from './keys.js'

/** Prefix of opaque access tokens, so secret scanners can recognise leaked ones. */
export const OPAQUE_ACCESS_TOKEN_PREFIX = 'dga_'
/** Prefix of refresh tokens, so secret scanners can recognise leaked ones. */
export const REFRESH_TOKEN_PREFIX = 'dgr_'

/** What minting needs from the composition root. */
export interface TokenMinterDeps {
  issuer: string
  keys: KeyRing
  clock: Clock
  random: Random
}

/** Facts the new access token states. */
export interface AccessTokenClaims {
  client: Client
  /** Resource owner; null for client_credentials (then `sub` is the client_id, RFC 9068 §2.2). */
  subject: string | null
  scope: string
  grantId: string
  /** RFC 7638 thumbprint for `cnf.jkt` (RFC 9449 §6.1), or null for a bearer token. */
  dpopJkt: string | null
  /** RFC 8707 resources: the token's `aud`. Absent or empty: the issuer. */
  resources?: readonly string[]
  /**
   * The request's time (epoch seconds): `iat`, and the start of the lifetime. One clock reading per
   * request, the same that computed `notAfter`, so `expires_in` never loses a second to a tick
   * between the two reads.
   */
  issuedAt: number
  /** Upper bound on `exp` (epoch seconds), e.g. the family's end of life. */
  notAfter?: number
  /** How the approver authenticated: JWTs carry `auth_time`, `amr`, `acr` (RFC 9068 §2.2.1). */
  authentication?: AuthenticationContext | null
}

/** A minted token: the string for the client, the record (hash only) for the store. */
export interface Minted<R> {
  token: string
  record: R
}

/**
 * Mints an access token. JWTs follow RFC 9068 §2 (`typ: at+jwt`; `iss`, `sub`, `aud`, `client_id`,
 * `scope`, `jti`, `iat`, `exp`, plus `cnf.jkt` when bound), with `sid`: the token family (grant)
 * id, the session a Shared Signals `session-revoked` event names, so a resource server following
 * an SSF stream can refuse the family's tokens. `aud` is the RFC 8707 resources when
 * requested, else the issuer. Either way only the SHA-256 of the
 * token string is stored.
 */
export async function mintAccessToken(claims: AccessTokenClaims, deps: TokenMinterDeps): Promise<Minted<AccessTokenRecord>> {
  const now = claims.issuedAt
  const exp = Math.min(now + claims.client.accessTokenTtlSeconds, claims.notAfter ?? Number.MAX_SAFE_INTEGER)
  const jti = recordId(deps.random)
  let token: string
  if (claims.client.accessTokenFormat === 'jwt') {
    const key = await deps.keys.activeKey()
    // RFC 9068 §2.2 claims; signed synchronously (jws.ts: the same signature at half the CPU of jose's WebCrypto path).
    token = key.sign(
      { alg: key.alg, kid: key.kid, typ: 'at+jwt' },
      {
        client_id: claims.client.id,
        scope: claims.scope,
        sid: claims.grantId,
        ...(claims.dpopJkt ? { cnf: { jkt: claims.dpopJkt } } : {}),
        ...(claims.authentication
          ? { auth_time: claims.authentication.authTime, amr: [...claims.authentication.amr], acr: claims.authentication.acr }
          : {}),
        iss: deps.issuer,
        sub: claims.subject ?? claims.client.id,
        aud: audienceOf(claims.resources, deps.issuer),
        jti,
        iat: now,
        exp,
      },
    )
  } else {
    token = OPAQUE_ACCESS_TOKEN_PREFIX + randomToken(deps.random, 32)
  }
  return {
    token,
    record: {
      tokenHash: sha256Hex(token),
      jti,
      grantId: claims.grantId,
      clientId: claims.client.id,
      subject: claims.subject,
      scope: claims.scope,
      issuedAt: now,
      expiresAt: exp,
      revokedAt: null,
      format: claims.client.accessTokenFormat,
      dpopJkt: claims.dpopJkt,
      ...(claims.resources && claims.resources.length > 0 ? { resources: [...claims.resources] } : {}),
    },
  }
}

/**
 * The `aud` of an access token (RFC 9068 §3, RFC 8707 §2): the requested resources (a string for
 * one, an array for several), or the issuer when none were requested.
 */
export function audienceOf(resources: readonly string[] | undefined, issuer: string): string | string[] {
  if (!resources || resources.length === 0) return issuer
  return resources.length === 1 ? resources[0]! : [...resources]
}

/** Mints an opaque refresh token (256 bits) that expires with its family at `expiresAt`. */
export function mintRefreshToken(
  claims: Omit<AccessTokenClaims, 'notAfter' | 'authentication'> & { expiresAt: number },
  deps: Pick<TokenMinterDeps, 'random'>,
): Minted<RefreshTokenRecord> {
  const token = REFRESH_TOKEN_PREFIX + randomToken(deps.random, 32)
  return {
    token,
    record: {
      tokenHash: sha256Hex(token),
      id: recordId(deps.random),
      grantId: claims.grantId,
      clientId: claims.client.id,
      subject: claims.subject,
      scope: claims.scope,
      issuedAt: claims.issuedAt,
      expiresAt: claims.expiresAt,
      rotatedAt: null,
      revokedAt: null,
      dpopJkt: claims.dpopJkt,
    },
  }
}

/** The successful token response of RFC 6749 §5.1 (with `token_type: DPoP` per RFC 9449 §5). */
export interface TokenResponse {
  access_token: string
  token_type: 'Bearer' | 'DPoP'
  expires_in: number
  scope: string
  refresh_token?: string
  /** OpenID Connect Core §3.1.3.3: when the granted scope includes `openid`. */
  id_token?: string
}

/** Builds the RFC 6749 §5.1 response body. */
export function tokenResponse(
  access: Minted<AccessTokenRecord>,
  refresh: Minted<RefreshTokenRecord> | undefined,
  idToken?: string,
): TokenResponse {
  return {
    access_token: access.token,
    token_type: access.record.dpopJkt ? 'DPoP' : 'Bearer',
    expires_in: access.record.expiresAt - access.record.issuedAt,
    scope: access.record.scope,
    ...(refresh ? { refresh_token: refresh.token } : {}),
    ...(idToken ? { id_token: idToken } : {}),
  }
}
