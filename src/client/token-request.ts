/**
 * One token request (RFC 6749 §3.2) with an optional DPoP proof (RFC 9449 §5) and the one retry
 * a `use_dpop_nonce` error allows (RFC 9449 §8). Shared by device-code polling and refresh.
 */
import type { DpopKey } from './dpop.js'
import { ClientError, OAuthResponseError } from './errors.js'
import { errorFromResponse, postForm, type FetchLike } from './http.js'

/** A successful token response (RFC 6749 §5.1) in SDK spelling. */
export interface TokenSet {
  accessToken: string
  /** `Bearer` or `DPoP` (RFC 9449 §5), as the server said. */
  tokenType: string
  /** When the access token expires, epoch seconds; undefined when the server gave no `expires_in`. */
  expiresAt?: number
  refreshToken?: string
  /** Granted scope (space-separated); undefined when the server did not say (then it equals the request). */
  scope?: string
  /** OpenID Connect ID token, when the server issued one. */
  idToken?: string
}

/** What a token request needs. */
export interface TokenRequestOptions {
  tokenEndpoint: string
  /** Form parameters (grant_type, client_id, …). */
  form: Record<string, string>
  dpopKey?: DpopKey | undefined
  /**
   * Whether the server does DPoP, as the caller learnt it: its metadata lists
   * `dpop_signing_alg_values_supported` (RFC 9449 §5.1), or it bound this grant's tokens before.
   * With a `dpopKey`, a reply whose `token_type` is not DPoP is then refused.
   */
  serverDoesDpop: boolean
  fetch: FetchLike
  signal?: AbortSignal | undefined
  /** Current time in epoch seconds, to turn `expires_in` into `expiresAt`. */
  nowSeconds: number
}

/**
 * Sends a token request.
 *
 * With a DPoP key, each attempt carries a fresh proof; a 400 `use_dpop_nonce` with a
 * `DPoP-Nonce` header is retried once with that nonce (RFC 9449 §8), and an `invalid_dpop_proof`
 * whose response `Date` shows the server's clock minutes away from ours is retried once with `iat`
 * on the server's clock ({@link DpopKey.adjustClock}). When a proof was sent the
 * server must answer `token_type` DPoP (RFC 9449 §5); a Bearer answer is accepted only when the
 * server does not do DPoP (`serverDoesDpop` false: its metadata lacks
 * `dpop_signing_alg_values_supported`), since such a server ignores the proof.
 *
 * @throws {OAuthResponseError} for RFC 6749 §5.2 error responses (the device flow's pending
 *   states arrive this way too).
 * @throws {ClientError} `ERR_NETWORK`; `ERR_BAD_RESPONSE` for a malformed reply, and for an
 *   unbound (e.g. Bearer) token from a server that does DPoP in answer to a request with a proof
 *   (the token is not kept: it would not be bound to the key, a downgrade).
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-5
 */
export async function requestToken(opts: TokenRequestOptions): Promise<TokenSet> {
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = {}
    if (opts.dpopKey) headers.DPoP = await opts.dpopKey.proof({ method: 'POST', url: opts.tokenEndpoint })
    const res = await postForm(opts.fetch, opts.tokenEndpoint, opts.form, { headers, ...(opts.signal ? { signal: opts.signal } : {}) })
    const newNonce = opts.dpopKey?.rememberNonce(opts.tokenEndpoint, res.headers) ?? false
    if (res.status === 200) {
      const tokens = parseTokenResponse(opts.tokenEndpoint, res.body, opts.nowSeconds)
      // RFC 6749 §5.1: token_type is case insensitive.
      if (opts.dpopKey && opts.serverDoesDpop && tokens.tokenType.toLowerCase() !== 'dpop')
        throw new ClientError(
          'ERR_BAD_RESPONSE',
          `${opts.tokenEndpoint} answered token_type "${tokens.tokenType}" to a request with a DPoP proof, although the server does DPoP (dpop_signing_alg_values_supported); the unbound token was not accepted (RFC 9449 §5)`,
        )
      return tokens
    }
    const err = errorFromResponse(opts.tokenEndpoint, res)
    if (err instanceof OAuthResponseError && err.error === 'use_dpop_nonce' && newNonce && attempt === 0) continue
    // A proof refused while the server's clock (its `Date`) is off from ours: once, on its clock.
    if (err instanceof OAuthResponseError && err.error === 'invalid_dpop_proof' && attempt === 0 && opts.dpopKey?.adjustClock(opts.tokenEndpoint, res.headers))
      continue
    throw err
  }
}

/**
 * Validates an RFC 6749 §5.1 body: `access_token` and `token_type` are strings, `expires_in` a
 * non-negative number when present.
 * @throws {ClientError} `ERR_BAD_RESPONSE`.
 */
export function parseTokenResponse(url: string, body: unknown, nowSeconds: number): TokenSet {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  if (typeof b.access_token !== 'string' || b.access_token.length === 0 || typeof b.token_type !== 'string')
    throw new ClientError('ERR_BAD_RESPONSE', `${url} answered 200 without "access_token" and "token_type"`)
  const set: TokenSet = { accessToken: b.access_token, tokenType: b.token_type }
  if (b.expires_in !== undefined) {
    const expiresIn = Number(b.expires_in)
    if (!Number.isFinite(expiresIn) || expiresIn < 0) throw new ClientError('ERR_BAD_RESPONSE', `${url} answered an invalid "expires_in"`)
    set.expiresAt = Math.floor(nowSeconds) + Math.floor(expiresIn)
  }
  if (typeof b.refresh_token === 'string' && b.refresh_token.length > 0) set.refreshToken = b.refresh_token
  if (typeof b.scope === 'string') set.scope = b.scope
  if (typeof b.id_token === 'string') set.idToken = b.id_token
  return set
}
