/**
 * The one OAuth error model (RFC 6749 §5.2) shared by every endpoint.
 *
 * Only this module knows error codes, their HTTP statuses, extra headers and the section that
 * defines them. Handlers throw {@link OAuthError}; the HTTP layer renders it as
 * `{ error, error_description }` with `Cache-Control: no-store` and `Pragma: no-cache`.
 */
export const OAUTH_ERRORS = {
  invalid_request: { status: 400, rfc: 'RFC 6749 §5.2' },
  // RFC 9110 §15.5.2: every 401 carries a challenge; RFC 6749 §5.2 names Basic for clients.
  invalid_client: { status: 401, rfc: 'RFC 6749 §5.2', headers: { 'WWW-Authenticate': 'Basic realm="devicegate", charset="UTF-8"' } },
  invalid_grant: { status: 400, rfc: 'RFC 6749 §5.2' },
  unauthorized_client: { status: 400, rfc: 'RFC 6749 §5.2' },
  unsupported_grant_type: { status: 400, rfc: 'RFC 6749 §5.2' },
  invalid_scope: { status: 400, rfc: 'RFC 6749 §5.2' },
  invalid_target: { status: 400, rfc: 'RFC 8707 §2' },
  authorization_pending: { status: 400, rfc: 'RFC 8628 §3.5' },
  slow_down: { status: 400, rfc: 'RFC 8628 §3.5' },
  access_denied: { status: 400, rfc: 'RFC 8628 §3.5' },
  expired_token: { status: 400, rfc: 'RFC 8628 §3.5' },
  unsupported_token_type: { status: 400, rfc: 'RFC 7009 §2.2.1' },
  // The token endpoint's statuses (RFC 9449 §5, §8); a protected resource answers both with 401
  // and a DPoP challenge (§7.1, §9): `authenticateAccessToken` (bearer.ts) sets that status.
  invalid_dpop_proof: { status: 400, rfc: 'RFC 9449 §5' },
  use_dpop_nonce: { status: 400, rfc: 'RFC 9449 §8' }, // + DPoP-Nonce header
  invalid_token: { status: 401, rfc: 'RFC 6750 §3.1' },
  insufficient_scope: { status: 403, rfc: 'RFC 6750 §3.1' },
  server_error: { status: 500, rfc: 'RFC 6749 §5.2' },
  temporarily_unavailable: { status: 503, rfc: 'RFC 6749 §4.1.2.1' },
} as const satisfies Record<string, { status: number; rfc: string; headers?: Record<string, string> }>

/** Every error code devicegate puts on the wire. */
export type OAuthErrorCode = keyof typeof OAUTH_ERRORS

/**
 * What an {@link OAuthError} answer is counted as (the `outcome` label of the request metrics, a
 * bounded set): its error code, or `no_credentials` for the bare challenge answered to a request
 * without credentials ({@link OAuthErrorExtra.challengeOnly}, RFC 6750 §3.1), which carries no
 * error code on the wire and is no failed token check.
 */
export type OAuthErrorOutcome = OAuthErrorCode | 'no_credentials'

/** Extra, non-public facts about an error: logged and audited, never sent to the client. */
export interface OAuthErrorExtra {
  cause?: unknown
  /** Internal detail for logs and the audit trail; never rendered. */
  detail?: string
  /** Headers the response must carry (`WWW-Authenticate`, `DPoP-Nonce`, `Retry-After`). */
  headers?: Record<string, string>
  /**
   * Overrides the catalogue status for transport-level failures that still answer with an OAuth
   * body: 404 and 405 for unknown routes, 413 for an oversized body, 429 for rate limits.
   */
  status?: number
  /**
   * Public extension members added to the JSON body next to `error` (RFC 6749 §5.2 lets a
   * response carry members a client does not know; clients ignore them). devicegate uses
   * `devicegate_reason` (a stable snake_case code, e.g. `storage_not_accepted`) so
   * its SDK can tell a refusal's cause without parsing `error_description`. Never a secret.
   */
  members?: Readonly<Record<string, string | readonly string[]>>
  /**
   * The answer of a protected resource to a request that carries no credentials (or credentials
   * of a scheme it does not take): RFC 6750 §3.1 says it "SHOULD NOT include an error code or
   * other error information", so the challenge in `headers` is the whole answer and the JSON body
   * is `{}` (an empty object rather than no body: every answer of these JSON endpoints stays
   * `application/json` and parses). `error` (`invalid_token`) stays for logs only; metrics count
   * the answer as `no_credentials` ({@link OAuthError.outcome}).
   * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
   */
  challengeOnly?: boolean
}

/** Headers of an error that has none. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

/** An Error that skips capturing a stack trace (V8 reads `stackTraceLimit` at construction). */
class StacklessError extends Error {
  constructor(message: string, options: ErrorOptions) {
    const stackTraceLimit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message, options)
    Error.stackTraceLimit = stackTraceLimit
  }
}

/**
 * An OAuth error response (RFC 6749 §5.2).
 *
 * `description` is public: short, lower case, no trailing period, no secrets. The HTTP status
 * comes from {@link OAUTH_ERRORS}.
 *
 * It carries no stack trace: it is an answer to the client (`authorization_pending` is most of
 * the polling traffic), not a fault, and capturing a stack was a measurable share of each poll.
 * A wrapped fault keeps its own stack in `cause`.
 */
export class OAuthError extends StacklessError {
  override readonly name = 'OAuthError'
  constructor(
    readonly error: OAuthErrorCode,
    readonly description?: string,
    readonly extra: OAuthErrorExtra = {},
  ) {
    super(description ?? error, { cause: extra.cause })
  }

  /**
   * What this answer is counted as (metrics' `outcome` label): `no_credentials` for a
   * {@link OAuthErrorExtra.challengeOnly} answer (RFC 6750 §3.1: the request had no credentials,
   * so no token was judged invalid), else the error code.
   */
  get outcome(): OAuthErrorOutcome {
    return this.extra.challengeOnly === true ? 'no_credentials' : this.error
  }

  /** HTTP status for this error code. */
  get status(): number {
    return this.extra.status ?? OAUTH_ERRORS[this.error].status
  }

  /**
   * Response headers: the catalogue's (e.g. the 401 challenge), overridden by `extra.headers`.
   * Read-only: without extra headers this is the catalogue's own object (or one shared empty one).
   */
  get headers(): Readonly<Record<string, string>> {
    const entry = OAUTH_ERRORS[this.error]
    const extra = this.extra.headers
    if (!('headers' in entry)) return extra ?? NO_HEADERS
    return extra === undefined ? entry.headers : { ...entry.headers, ...extra }
  }

  /**
   * The JSON body of RFC 6749 §5.2 (`{}` for a {@link OAuthErrorExtra.challengeOnly} answer).
   * `error_description` is limited to the characters that section allows (%x20-21 / %x23-5B /
   * %x5D-7E): double quotes become single quotes, backslashes become slashes, and anything else
   * outside printable ASCII (including echoed user input) becomes `?`.
   */
  toJSON(): ({ error: OAuthErrorCode; error_description?: string } & Record<string, unknown>) | Record<string, never> {
    if (this.extra.challengeOnly === true) return {}
    const body = this.description === undefined ? { error: this.error } : { error: this.error, error_description: toDescriptionCharset(this.description) }
    return this.extra.members === undefined ? body : { ...this.extra.members, ...body }
  }

  /**
   * `JSON.stringify(this.toJSON())`, byte for byte. Without extension members the text is built
   * directly: the code is a snake_case identifier and the description, once mapped into the
   * RFC 6749 §5.2 character set, holds no character JSON escapes (no `"`, `\\`, control or
   * non-ASCII character), so neither needs escaping.
   */
  toJSONText(): string {
    if (this.extra.members !== undefined || this.extra.challengeOnly === true) return JSON.stringify(this.toJSON())
    const d = this.description
    return d === undefined ? `{"error":"${this.error}"}` : `{"error":"${this.error}","error_description":"${toDescriptionCharset(d)}"}`
  }
}

/** Anything outside the `error_description` character set of RFC 6749 §5.2. */
const OUTSIDE_DESCRIPTION_CHARSET = /[^\x20-\x21\x23-\x5B\x5D-\x7E]/

/** Maps text into the `error_description` character set of RFC 6749 §5.2. */
export function toDescriptionCharset(text: string): string {
  // Most descriptions are fixed text already in the set: one test instead of three replaces.
  if (!OUTSIDE_DESCRIPTION_CHARSET.test(text)) return text
  return text.replace(/"/g, "'").replace(/\\/g, '/').replace(/[^\x20-\x7E]/g, '?')
}

/** Returns true when `value` is an {@link OAuthError}. */
export function isOAuthError(value: unknown): value is OAuthError {
  return value instanceof OAuthError
}
