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

/**
 * Checks the access token of a request to one of devicegate's own protected resources.
 *
 * - No `Authorization` header: 401 `invalid_token` with a bare challenge (RFC 6750 §3.1: no error
 *   code when the request had no credentials).
 * - `Bearer` with a DPoP-bound token, an unknown, revoked or expired token, or a disabled client:
 *   401 `invalid_token`.
 * - `DPoP`: the proof must pass RFC 9449 §4.3 and §7.1 (`ath`, key = `cnf.jkt`, one-time `jti`).
 * - Missing `scope` (when given): 403 `insufficient_scope` naming it.
 * Every challenge names both schemes, so a client learns which one to use (RFC 9449 §7.1).
 *
 * @param realm The `realm` of the challenge.
 * @throws {OAuthError} `invalid_token`, `insufficient_scope`, `invalid_dpop_proof`.
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 */
export async function authenticateAccessToken(
  request: ProtectedRequest,
  deps: Pick<ProtocolDeps, 'store' | 'clock' | 'clients'>,
  options: { realm: string; scope?: string },
): Promise<AuthenticatedToken> {
  const algs = DPOP_ALGS.join(' ')
  const challenge = (extra = '') => `Bearer realm="${options.realm}"${extra}, DPoP realm="${options.realm}", algs="${algs}"${extra}`
  const header = request.authorization
  if (header === undefined || header.trim() === '')
    throw new OAuthError('invalid_token', 'an access token is required', { headers: { 'WWW-Authenticate': challenge() } })
  const invalid = (description: string, detail?: string) =>
    new OAuthError('invalid_token', description, { headers: { 'WWW-Authenticate': challenge(', error="invalid_token"') }, ...(detail ? { detail } : {}) })
  const m = /^(Bearer|DPoP)\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header)
  if (!m) throw invalid('use "Authorization: Bearer <access token>" or "Authorization: DPoP <access token>"')
  const scheme = m[1]!.toLowerCase()
  const token = m[2]!
  const record = await deps.store.findAccessTokenByHash(sha256Hex(token))
  const now = deps.clock.nowSeconds()
  if (record === undefined || record.revokedAt !== null || record.grantRevokedAt !== null || record.expiresAt <= now)
    throw invalid('the access token is not active')
  const client = deps.clients.get(record.clientId)
  if (client === undefined || client.disabled) throw invalid('the access token is not active', 'client disabled or removed')
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
