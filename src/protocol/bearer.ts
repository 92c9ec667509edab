/**
 * Protected-resource access at devicegate's own APIs (userinfo, Shared Signals stream
 * management, global token revocation): the access token in `Authorization: Bearer` (RFC 6750
 * §2.1) or `Authorization: DPoP` with a proof (RFC 9449 §7), judged against the store exactly as
 * introspection judges it.
 */
import type { Client } from '../core/model.js'
import { checkDpopProof, DpopProofError } from '../resource/dpop.js'
import type { AccessTokenRecord, WithGrantState } from '../storage/store.js'
import { sha256Base64Url, sha256Hex } from '../system.js'
import type { ProtocolDeps } from './deps.js'
import type { DpopNonces } from './dpop-nonce.js'
import { DPOP_ALGS, DPOP_MAX_AGE_SECONDS, DPOP_MAX_SKEW_SECONDS } from './dpop.js'
import { OAuthError } from './errors.js'

/** The request facts {@link authenticateAccessToken} reads. */
export interface ProtectedRequest {
  /** The raw `Authorization` header. */
  authorization: string | undefined
  /** The raw `DPoP` header(s). */
  dpop: string | string[] | undefined
  method: string
  /** Absolute URI of the request under the issuer, without query. */
  uri: string
}

/** A token that passed {@link authenticateAccessToken}. */
export interface AuthenticatedToken {
  record: WithGrantState<AccessTokenRecord>
  client: Client
  scopes: readonly string[]
}

/** The credentials of an `Authorization` header that names an access token. */
export interface AccessTokenCredentials {
  /** `bearer` (RFC 6750 §2.1) or `dpop` (RFC 9449 §7.1); the scheme is case-insensitive on the wire. */
  scheme: 'bearer' | 'dpop'
  /** The access token, a `b64token` (RFC 6750 §2.1; RFC 9449 §7.1 uses the same syntax). */
  token: string
}

/**
 * Parses an `Authorization` request header carrying an access token: `Bearer <b64token>` (RFC
 * 6750 §2.1) or `DPoP <b64token>` (RFC 9449 §7.1). The one parser of access-token headers of
 * devicegate's own protected resources (userinfo, Shared Signals stream management, global token
 * revocation, the admin API).
 *
 * @param header The raw header value, or undefined when the request had none.
 * @returns `undefined` when the request carries no credentials (no header, or a blank one: RFC
 *   6750 §3.1 then calls for a challenge without an error code); `null` when the header is
 *   present but not one of the two forms (another scheme, no token, a token outside `b64token`,
 *   or several tokens); otherwise the scheme (lower case) and the token.
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-2.1
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-7.1
 */
export function parseAuthorizationHeader(header: string | undefined): AccessTokenCredentials | null | undefined {
  if (header === undefined || header.trim() === '') return undefined
  const m = /^(Bearer|DPoP)\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header)
  if (!m) return null
  return { scheme: m[1]!.toLowerCase() as 'bearer' | 'dpop', token: m[2]! }
}

/**
 * Looks up an access token and tells whether it is active exactly as introspection judges it
 * (RFC 7662 §2.2): known, not revoked, its family not revoked, unexpired, and its client still
 * configured and enabled. Does not look at sender constraint (`dpopJkt`) or scope.
 *
 * @param token The access token as presented (it is looked up by its SHA-256).
 * @returns the record and its client, or undefined when the token is not active.
 */
export async function findActiveAccessToken(
  token: string,
  deps: Pick<ProtocolDeps, 'store' | 'clock' | 'clients'>,
): Promise<{ record: WithGrantState<AccessTokenRecord>; client: Client } | undefined> {
  const record = await deps.store.findAccessTokenByHash(sha256Hex(token))
  if (record === undefined || record.revokedAt !== null || record.grantRevokedAt !== null || record.expiresAt <= deps.clock.nowSeconds()) return undefined
  const client = deps.clients.get(record.clientId)
  if (client === undefined || client.disabled) return undefined
  return { record, client }
}

/**
 * Checks the access token of a request to one of devicegate's own protected resources.
 *
 * - No `Authorization` header: 401 `invalid_token` with a bare challenge (RFC 6750 §3.1: no error
 *   code when the request had no credentials).
 * - `Bearer` with a DPoP-bound token, an unknown, revoked or expired token, or a disabled client:
 *   401 `invalid_token`.
 * - `DPoP`: the proof must pass RFC 9449 §4.3 and §7.1 (`ath`, key = `cnf.jkt`, one-time `jti`).
 *   When the server requires nonces (`deps.dpopNonces`, `dpop.require_nonce`), a proof without a
 *   current `nonce` gets 401 `use_dpop_nonce` with `WWW-Authenticate: DPoP error="use_dpop_nonce"`
 *   and a fresh `DPoP-Nonce` header (RFC 9449 §9, the resource-server form of §8); its `jti` is not
 *   burnt, so the client retries with the nonce.
 * - Missing `scope` (when given): 403 `insufficient_scope` naming it.
 * Every challenge names both schemes, so a client learns which one to use (RFC 9449 §7.1).
 *
 * @param realm The `realm` of the challenge.
 * @throws {OAuthError} `invalid_token`, `insufficient_scope`, `invalid_dpop_proof`, `use_dpop_nonce`.
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-9
 */
export async function authenticateAccessToken(
  request: ProtectedRequest,
  deps: Pick<ProtocolDeps, 'store' | 'clock' | 'clients'> & { dpopNonces?: DpopNonces | undefined },
  options: { realm: string; scope?: string },
): Promise<AuthenticatedToken> {
  const algs = DPOP_ALGS.join(' ')
  const challenge = (extra = '') => `Bearer realm="${options.realm}"${extra}, DPoP realm="${options.realm}", algs="${algs}"${extra}`
  const credentials = parseAuthorizationHeader(request.authorization)
  if (credentials === undefined)
    throw new OAuthError('invalid_token', 'an access token is required', { headers: { 'WWW-Authenticate': challenge() } })
  const invalid = (description: string) =>
    new OAuthError('invalid_token', description, { headers: { 'WWW-Authenticate': challenge(', error="invalid_token"') } })
  if (credentials === null) throw invalid('use "Authorization: Bearer <access token>" or "Authorization: DPoP <access token>"')
  const { scheme, token } = credentials
  const active = await findActiveAccessToken(token, deps)
  if (active === undefined) throw invalid('the access token is not active')
  const { record, client } = active
  const now = deps.clock.nowSeconds()
  if (scheme === 'bearer') {
    // RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is refused.
    if (record.dpopJkt !== null) throw invalid('the access token is bound to a DPoP key: use the DPoP scheme with a proof')
  } else {
    if (record.dpopJkt === null) throw invalid('the access token is not DPoP-bound: use the Bearer scheme')
    const proof = request.dpop
    if (proof === undefined || (Array.isArray(proof) && proof.length !== 1))
      throw new OAuthError('invalid_dpop_proof', 'exactly one DPoP proof is required', { headers: { 'WWW-Authenticate': challenge(', error="invalid_dpop_proof"') } })
    try {
      const checked = await checkDpopProof(Array.isArray(proof) ? proof[0]! : proof, { method: request.method, uri: request.uri }, {
        algorithms: DPOP_ALGS,
        maxAgeSeconds: DPOP_MAX_AGE_SECONDS,
        maxSkewSeconds: DPOP_MAX_SKEW_SECONDS,
        nowSeconds: now,
      })
      if (checked.payload.ath !== sha256Base64Url(token)) throw new DpopProofError('the DPoP proof "ath" does not match the access token')
      if (checked.jkt !== record.dpopJkt) throw new DpopProofError('the DPoP proof key is not the key the access token is bound to')
      // RFC 9449 §4.3 check 10 and §9: checked before the replay cache, so the proof's jti survives.
      const { nonce } = checked.payload
      if (deps.dpopNonces && (typeof nonce !== 'string' || !deps.dpopNonces.isValid(nonce)))
        throw new OAuthError('use_dpop_nonce', 'the DPoP proof needs the current server "nonce"', {
          status: 401,
          headers: { 'WWW-Authenticate': `DPoP realm="${options.realm}", algs="${algs}", error="use_dpop_nonce"`, 'DPoP-Nonce': deps.dpopNonces.current() },
        })
      const fresh = await deps.store.rememberDpopJti(sha256Hex(`${checked.jkt}\0${checked.jti}`), Math.ceil(checked.iat) + DPOP_MAX_AGE_SECONDS + DPOP_MAX_SKEW_SECONDS, now)
      if (!fresh) throw new DpopProofError('the DPoP proof has been used before')
    } catch (err) {
      if (err instanceof DpopProofError)
        throw new OAuthError('invalid_dpop_proof', err.message, { headers: { 'WWW-Authenticate': challenge(', error="invalid_dpop_proof"') } })
      throw err
    }
  }
  const scopes = record.scope.split(' ').filter(Boolean)
  if (options.scope !== undefined && !scopes.includes(options.scope))
    throw new OAuthError('insufficient_scope', `the "${options.scope}" scope is required`, {
      headers: { 'WWW-Authenticate': challenge(`, error="insufficient_scope", scope="${options.scope}"`) },
    })
  return { record, client, scopes }
}
