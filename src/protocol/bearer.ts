/**
 * Protected-resource access at devicegate's own APIs (userinfo, Shared Signals stream
 * management, global token revocation): the access token in `Authorization: Bearer` (RFC 6750
 * §2.1) or `Authorization: DPoP` with a proof (RFC 9449 §7), judged against the store exactly as
 * introspection judges it.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Client } from '../core/model.js'
import { checkDpopProof, DpopProofError } from '../resource/dpop.js'
import { headerFieldValues } from '../resource/header-fields.js'
import type { AccessTokenRecord, WithGrantState } from '../storage/store.js'
import { sha256Base64Url, sha256Hex } from '../system.js'
import type { ProtocolDeps } from './deps.js'
import type { DpopNonces } from './dpop-nonce.js'
import { DPOP_ALGS, DPOP_MAX_AGE_SECONDS, DPOP_MAX_SKEW_SECONDS } from './dpop.js'
import { OAuthError } from './errors.js'

/** The request facts {@link authenticateAccessToken} reads. */
export interface ProtectedRequest {
  /**
   * The raw `Authorization` field: its value, or every value when the request repeated the field
   * (read them with `headerFieldValues`: node's `headers.authorization` keeps only the first).
   */
  authorization: string | string[] | undefined
  /**
   * The raw `DPoP` field: its value, or every value when the request repeated it (read it with
   * {@link dpopField}: node joins the lines of a repeated `DPoP` field with commas).
   */
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
 * The `Authorization` field of a request as received, for {@link ProtectedRequest.authorization}.
 *
 * Node's `headers.authorization` keeps only the first line of a repeated field; the raw lines are
 * scanned, only when the request has the field (so a request without it costs nothing).
 *
 * @param message node's `IncomingMessage` (or anything with its `headers` and `rawHeaders`: names
 *   and values alternating).
 * @returns undefined without the field, its value, or every value when it is repeated (then
 *   {@link authenticateAccessToken} and client authentication answer 400 `invalid_request`).
 */
export function authorizationField(message: { headers: IncomingHttpHeaders; rawHeaders: readonly string[] }): string | string[] | undefined {
  return message.headers.authorization === undefined ? undefined : headerFieldValues(message.rawHeaders, 'authorization')
}

/**
 * The `DPoP` field of a request as received, for {@link ProtectedRequest.dpop} and the token
 * endpoint's proof (RFC 9449 §4.3 check 1: "not more than one DPoP HTTP request header field").
 *
 * Node joins the lines of a repeated `DPoP` field with `, ` into one value; the raw lines are
 * scanned instead, only when the request has the field (so a request without it costs nothing).
 *
 * @param message node's `IncomingMessage` (or anything with its `headers` and `rawHeaders`).
 * @returns undefined without the field, its value, or every value when it is repeated (then the
 *   proof is refused with `invalid_dpop_proof`: 400 at the token endpoint, RFC 9449 §5; 401 with
 *   the DPoP challenge at a protected resource, §7.1).
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-4.3
 */
export function dpopField(message: { headers: IncomingHttpHeaders; rawHeaders: readonly string[] }): string | string[] | undefined {
  return message.headers.dpop === undefined ? undefined : headerFieldValues(message.rawHeaders, 'dpop')
}

/**
 * The path of a request target without its query, for {@link ProtectedRequest.uri} (the issuer
 * followed by this path is what a DPoP proof's `htu` is judged against, RFC 9449 §4.3 check 9).
 *
 * The origin form (`/userinfo?x=1`, RFC 9112 §3.2.1) gives what precedes `?`. The absolute form
 * (`http://host/userinfo?x=1`, §3.2.2: a server "MUST accept" it) gives the path after the
 * authority (`/` when there is none): fastify routes it by that path, and its `request.url` keeps
 * the whole target, so `issuer + request.url` named another URI and refused every proof.
 *
 * @param url The request target as received (node's `IncomingMessage.url`, fastify's `request.url`).
 * @returns The path, starting with `/`, as received (no decoding).
 * @see https://www.rfc-editor.org/rfc/rfc9112#section-3.2
 */
export function requestPath(url: string): string {
  const query = url.indexOf('?')
  const target = query === -1 ? url : url.slice(0, query)
  if (target.charCodeAt(0) === 0x2f /* / */) return target
  const origin = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(target)
  if (origin === null) return target
  const path = target.slice(origin[0].length)
  return path === '' ? '/' : path
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
 * The answer of a protected resource to a request that carries no access-token credentials: no
 * `Authorization` field, a blank one, or another scheme (`Basic …`, "attempted using an
 * unsupported authentication method"). RFC 6750 §3.1: the challenges alone, no error code "or
 * other error information" (401, body `{}`, see `OAuthErrorExtra.challengeOnly`).
 *
 * {@link authenticateAccessToken} starts with it; a route whose body is parsed before its handler
 * runs calls it first (before the body is read), so a request without credentials gets this answer
 * whatever its body.
 *
 * @param authorization The raw `Authorization` field ({@link authorizationField}).
 * @param realm The `realm` of the challenges.
 * @param options.challenge The `WWW-Authenticate` value, when not the Bearer and DPoP challenges
 *   of `realm` ({@link resourceChallenge}); e.g. a Bearer-only API's own challenge.
 * @param options.scheme Matches a field of a scheme the resource takes (default: `Bearer` or
 *   `DPoP`); any other scheme is an unsupported method, answered as no credentials.
 * @returns the error to answer with, or undefined when the request carries a field of a scheme it
 *   takes (well-formed or not) or repeats the field: those are judged by the resource's token check
 *   ({@link authenticateAccessToken}).
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 */
export function withoutCredentials(
  authorization: string | string[] | undefined,
  realm: string,
  options: { challenge?: string; scheme?: RegExp } = {},
): OAuthError | undefined {
  if (Array.isArray(authorization)) return undefined
  if (authorization !== undefined && (options.scheme ?? ACCESS_TOKEN_SCHEME).test(authorization)) return undefined
  return new OAuthError('invalid_token', undefined, { headers: { 'WWW-Authenticate': options.challenge ?? resourceChallenge(realm) }, challengeOnly: true })
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

/** An error code a protected resource puts in its challenge (RFC 6750 §3.1, RFC 9449 §7.1, §9). */
export type ResourceChallengeError = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce'

/**
 * The `WWW-Authenticate` value of an answer from one of devicegate's own protected resources.
 *
 * - Without `error` (no credentials, or another scheme): both challenges, bare —
 *   `Bearer realm="r", DPoP realm="r", algs="ES256 …"` (RFC 6750 §3.1: no error code when the request
 *   had no credentials; RFC 9449 §7.2: a resource taking both schemes names both).
 * - `invalid_request`, `invalid_token`, `insufficient_scope`: both challenges, each with the
 *   error (and `scope` for `insufficient_scope`), so a client of either scheme reads it.
 * - `invalid_dpop_proof`, `use_dpop_nonce`: the DPoP challenge only (RFC 9449 §7.1, §9): these
 *   codes are about the DPoP proof and mean nothing to a Bearer client.
 * Every DPoP challenge carries `algs`, the proof algorithms accepted (RFC 9449 §7.1).
 *
 * @param realm The `realm` of the challenge(s), e.g. `devicegate-userinfo`.
 * @param error The error code, or undefined for a bare challenge.
 * @param options.scope The scope needed (with `insufficient_scope`).
 * @param options.dpopOnly The DPoP challenge only, whatever the error (a failed DPoP key binding).
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-7.1
 */
export function resourceChallenge(realm: string, error?: ResourceChallengeError, options: { scope?: string | undefined; dpopOnly?: boolean } = {}): string {
  const { scope } = options
  const params = error === undefined ? '' : `, error="${error}"${error === 'insufficient_scope' && scope !== undefined ? `, scope="${scope}"` : ''}`
  const dpop = `DPoP realm="${realm}", algs="${DPOP_ALGS.join(' ')}"${params}`
  if (options.dpopOnly === true || error === 'invalid_dpop_proof' || error === 'use_dpop_nonce') return dpop
  return `Bearer realm="${realm}"${params}, ${dpop}`
}

/** An `Authorization` header that names the Bearer or DPoP scheme, with or without a well-formed token. */
const ACCESS_TOKEN_SCHEME = /^\s*(?:Bearer|DPoP)(?:\s|$)/i

/**
 * Checks the access token of a request to one of devicegate's own protected resources. Every
 * refusal is an {@link OAuthError} whose `WWW-Authenticate` comes from {@link resourceChallenge}
 * (rendered with `Cache-Control: no-store`):
 *
 * | request | answer |
 * |---|---|
 * | no `Authorization`, a blank one, or another scheme (`Basic …`) | 401, both challenges bare and the body `{}` (RFC 6750 §3.1: no error code "or other error information" when the request has no credentials or uses an unsupported method; `challengeOnly`) |
 * | `Bearer`/`DPoP` without a well-formed `b64token` (`Bearer`, `Bearer a b`) | 400 `invalid_request` (RFC 6750 §3.1: malformed request) |
 * | the `Authorization` field repeated, whatever the schemes | 400 `invalid_request` (RFC 6750 §3.1: a repeated parameter; RFC 9110 §5.3: not a list field) |
 * | an unknown, revoked or expired token, or a disabled client | 401 `invalid_token` |
 * | `Bearer` with a DPoP-bound token | 401 `invalid_token` (RFC 9449 §7.2: no downgrade) |
 * | `DPoP` with a token that is not DPoP-bound | 401 `invalid_token` |
 * | `DPoP` without a proof, with several `DPoP` header fields ({@link dpopField}), or with a proof failing RFC 9449 §4.3 (signature, `htm`, `htu`, `iat`, `ath`, replayed `jti`) | 401 `invalid_dpop_proof`, DPoP challenge only (RFC 9449 §7.1) |
 * | a valid proof by another key than the token's `cnf.jkt` | 401 `invalid_token`, DPoP challenge only (RFC 9449 §7.1's own example: "Invalid DPoP key binding") |
 * | nonces required (`dpop.require_nonce`) and the proof has no current `nonce` | 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`, DPoP challenge only (RFC 9449 §9); the proof's `jti` is not burnt, so the client retries with the nonce |
 * | the token lacks `options.scope` | 403 `insufficient_scope` naming it |
 *
 * When nonces are required, the routes that call this put the current `DPoP-Nonce` on every
 * answer, 2xx and errors alike (RFC 9449 §9: a resource provides nonces "in the same way" as §8.2,
 * whose 200 `DPoP-Nonce` spares the client a round trip); `use_dpop_nonce` carries the same one.
 *
 * The token endpoint is not judged here: there a bad proof is 400 `invalid_dpop_proof` in the
 * JSON body (RFC 9449 §5), see `protocol/dpop.ts`.
 *
 * @param realm The `realm` of the challenge.
 * @throws {OAuthError} `invalid_request`, `invalid_token`, `insufficient_scope`, `invalid_dpop_proof`, `use_dpop_nonce`.
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-7.1
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-9
 */
export async function authenticateAccessToken(
  request: ProtectedRequest,
  deps: Pick<ProtocolDeps, 'store' | 'clock' | 'clients'> & { dpopNonces?: DpopNonces | undefined },
  options: { realm: string; scope?: string },
): Promise<AuthenticatedToken> {
  const { realm } = options
  const refuse = (error: ResourceChallengeError, description: string, headers: Record<string, string> = {}) =>
    new OAuthError(error, description, {
      // The catalogue's statuses are the token endpoint's (RFC 9449 §5, §8: 400); a resource
      // server answers these two with 401 (RFC 9449 §7.1, §9).
      ...(error === 'invalid_dpop_proof' || error === 'use_dpop_nonce' ? { status: 401 } : {}),
      headers: { 'WWW-Authenticate': resourceChallenge(realm, error, { scope: options.scope }), ...headers },
    })
  // Two credentials (node would keep only the first line): judged on neither, whatever the order.
  if (Array.isArray(request.authorization)) throw refuse('invalid_request', 'the Authorization header must be sent once')
  const authorization = request.authorization
  const bare = withoutCredentials(authorization, realm)
  if (bare !== undefined) throw bare
  // A Bearer or DPoP field now: one without a well-formed token is a malformed request.
  const credentials = parseAuthorizationHeader(authorization)
  if (!credentials) throw refuse('invalid_request', 'the Authorization header must be "Bearer <access token>" or "DPoP <access token>"')
  const { scheme, token } = credentials
  const active = await findActiveAccessToken(token, deps)
  if (active === undefined) throw refuse('invalid_token', 'the access token is not active')
  const { record, client } = active
  const now = deps.clock.nowSeconds()
  if (scheme === 'bearer') {
    // RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is refused.
    if (record.dpopJkt !== null) throw refuse('invalid_token', 'the access token is bound to a DPoP key: use the DPoP scheme with a proof')
  } else {
    if (record.dpopJkt === null) throw refuse('invalid_token', 'the access token is not DPoP-bound: use the Bearer scheme')
    // RFC 9449 §7 requires a proof with every request; §4.3 check 1 allows one DPoP header only.
    // RFC 9449 leaves open whether a missing proof is RFC 6750's 400 invalid_request or its own
    // invalid_dpop_proof: 401 invalid_dpop_proof is chosen, the answer to a request "without valid
    // authorization" (§7.1) that keeps the DPoP challenge and tells the client what to fix.
    const proof = request.dpop
    if (proof === undefined || (Array.isArray(proof) && proof.length !== 1)) throw refuse('invalid_dpop_proof', 'exactly one DPoP proof is required')
    try {
      const checked = await checkDpopProof(Array.isArray(proof) ? proof[0]! : proof, { method: request.method, uri: request.uri }, {
        algorithms: DPOP_ALGS,
        maxAgeSeconds: DPOP_MAX_AGE_SECONDS,
        maxSkewSeconds: DPOP_MAX_SKEW_SECONDS,
        nowSeconds: now,
      })
      if (checked.payload.ath !== sha256Base64Url(token)) throw new DpopProofError('the DPoP proof "ath" does not match the access token')
      // RFC 9449 §7.1: a proof by another key than the token's is a failed key binding, answered
      // as in that section's example (invalid_token on the DPoP challenge): a new proof by the same
      // key cannot succeed, the client needs a token bound to the key it holds.
      if (checked.jkt !== record.dpopJkt)
        throw new OAuthError('invalid_token', 'the DPoP proof key is not the key the access token is bound to', {
          headers: { 'WWW-Authenticate': resourceChallenge(realm, 'invalid_token', { dpopOnly: true }) },
        })
      // RFC 9449 §4.3 check 10 and §9: checked before the replay cache, so the proof's jti survives.
      const { nonce } = checked.payload
      if (deps.dpopNonces && (typeof nonce !== 'string' || !deps.dpopNonces.isValid(nonce)))
        throw refuse('use_dpop_nonce', 'the DPoP proof needs the current server "nonce"', { 'DPoP-Nonce': deps.dpopNonces.current() })
      const fresh = await deps.store.rememberDpopJti(sha256Hex(`${checked.jkt}\0${checked.jti}`), Math.ceil(checked.iat) + DPOP_MAX_AGE_SECONDS + DPOP_MAX_SKEW_SECONDS, now)
      if (!fresh) throw new DpopProofError('the DPoP proof has been used before')
    } catch (err) {
      if (err instanceof DpopProofError) throw refuse('invalid_dpop_proof', err.message)
      throw err
    }
  }
  const scopes = record.scope.split(' ').filter(Boolean)
  if (options.scope !== undefined && !scopes.includes(options.scope)) throw refuse('insufficient_scope', `the "${options.scope}" scope is required`)
  return { record, client, scopes }
}
