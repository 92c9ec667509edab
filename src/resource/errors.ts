/**
 * Errors of the resource-server helper, rendered as `WWW-Authenticate` challenges: RFC 6750 §3
 * (Bearer) and RFC 9449 §7.1 (DPoP).
 */

/** Error codes a protected resource answers with (RFC 6750 §3.1, RFC 9449 §7.1, §9). */
export type ResourceErrorCode = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce' | 'temporarily_unavailable'

const STATUS: Record<ResourceErrorCode, number> = {
  invalid_request: 400,
  invalid_token: 401,
  invalid_dpop_proof: 401,
  use_dpop_nonce: 401,
  insufficient_scope: 403,
  temporarily_unavailable: 503,
}

/** Which challenge(s) to send: the scheme the client used, or both when it sent no credentials. */
export type ChallengeScheme = 'Bearer' | 'DPoP' | 'both'

/** What the challenge needs besides the error. */
export interface ChallengeContext {
  realm?: string
  /** DPoP algorithms accepted (RFC 9449 §7.1 `algs`). */
  dpopAlgs: readonly string[]
  /** Scope needed, for `insufficient_scope` (RFC 6750 §3). */
  scope?: string
}

/**
 * A refused request. `status` is 400, 401, 403 or 503; {@link ResourceAuthError.headers} gives the
 * `WWW-Authenticate` challenge(s). Without `error` (no credentials at all, or another scheme) the
 * challenge carries no error code and the body ({@link ResourceAuthError.toJSON}) is `{}`, as RFC
 * 6750 §3.1 asks; `description` is then for the API's own logs only.
 */
export class ResourceAuthError extends Error {
  override readonly name = 'ResourceAuthError'
  readonly status: number
  /**
   * The `DPoP-Nonce` to send (RFC 9449 §9): set on every refusal when the resource requires
   * nonces (`dpop.nonce`), the fresh nonce a `use_dpop_nonce` client retries with.
   */
  readonly dpopNonce: string | undefined
  constructor(
    readonly error: ResourceErrorCode | undefined,
    readonly description: string,
    readonly scheme: ChallengeScheme,
    readonly challenge: ChallengeContext,
    options: { cause?: unknown; dpopNonce?: string | undefined } = {},
  ) {
    super(description, { cause: options.cause })
    this.status = error === undefined ? 401 : STATUS[error]
    this.dpopNonce = options.dpopNonce
  }

  /** Response headers: `WWW-Authenticate` (one value per scheme), `Cache-Control: no-store`, and `DPoP-Nonce` when set. */
  get headers(): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = { 'cache-control': 'no-store' }
    if (this.dpopNonce !== undefined) out['dpop-nonce'] = this.dpopNonce
    if (this.error === 'temporarily_unavailable') {
      out['retry-after'] = '1'
      return out
    }
    const challenges = (this.scheme === 'both' ? (['DPoP', 'Bearer'] as const) : [this.scheme]).map((s) => formatChallenge(s, this))
    out['www-authenticate'] = challenges.length === 1 ? challenges[0]! : challenges
    return out
  }

  /**
   * A JSON body for APIs that want one besides the challenge: `{ error, error_description }`, or
   * `{}` without `error` (no credentials, or another scheme): RFC 6750 §3.1 says that answer
   * "SHOULD NOT include an error code or other error information", so the challenge alone speaks
   * (an empty object rather than no body, so the answer stays `application/json`).
   * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
   */
  toJSON(): { error: ResourceErrorCode; error_description: string } | Record<string, never> {
    return this.error === undefined ? {} : { error: this.error, error_description: this.description }
  }
}

/** Quotes an auth-param value (RFC 9110 §11.2 quoted-string). */
function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, '')}"`
}

/** Formats one challenge, e.g. `DPoP error="invalid_token", error_description="…", algs="ES256"`. */
export function formatChallenge(scheme: 'Bearer' | 'DPoP', err: Pick<ResourceAuthError, 'error' | 'description' | 'challenge'>): string {
  const params: string[] = []
  if (err.challenge.realm) params.push(`realm=${quote(err.challenge.realm)}`)
  if (err.error) {
    params.push(`error=${quote(err.error)}`, `error_description=${quote(err.description)}`)
    if (err.error === 'insufficient_scope' && err.challenge.scope) params.push(`scope=${quote(err.challenge.scope)}`)
  }
  if (scheme === 'DPoP') params.push(`algs=${quote(err.challenge.dpopAlgs.join(' '))}`)
  return params.length > 0 ? `${scheme} ${params.join(', ')}` : scheme
}
