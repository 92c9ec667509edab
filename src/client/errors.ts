/**
 * Errors the client SDK throws. Two kinds, so CLI code can `switch` on a stable value:
 *
 * - {@link OAuthResponseError}: the server answered with an OAuth error (RFC 6749 §5.2,
 *   RFC 8628 §3.5, RFC 7009 §2.2.1, RFC 9449 §8); carries `error`, `error_description`, `status`.
 * - {@link ClientError}: everything else (server unreachable, malformed response, insecure store,
 *   login required, …) with a stable `code`.
 */
import type { OAuthErrorCode } from '../protocol/errors.js'

/**
 * An OAuth error code: the ones devicegate sends, plus any string another server may send
 * (`(string & {})` keeps editor completion for the known codes).
 */
export type OAuthErrorName = OAuthErrorCode | (string & {})

/** The JSON body of an OAuth error response (RFC 6749 §5.2). */
export interface OAuthErrorBody {
  error: OAuthErrorName
  error_description?: string
  error_uri?: string
}

/**
 * The authorization server answered with an OAuth error response (RFC 6749 §5.2).
 *
 * `status` is the HTTP status of that response; it is `0` only for `expired_token` raised by the
 * SDK itself when the device code's `expires_in` ran out before the server said so.
 */
export class OAuthResponseError extends Error {
  override readonly name = 'OAuthResponseError'
  /** The `error` code, e.g. `access_denied`. */
  readonly error: OAuthErrorName
  /** The server's `error_description`, if any (server-supplied text: display, don't parse). */
  readonly error_description: string | undefined
  /** HTTP status of the error response (0 when raised locally, see above). */
  readonly status: number
  /** Response headers, e.g. `DPoP-Nonce`, `WWW-Authenticate`. */
  readonly headers: Headers
  /**
   * Other members of the error body (extensions), e.g. devicegate's `devicegate_reason:
   * "storage_not_accepted"`. Empty when there are none.
   */
  readonly members: Readonly<Record<string, unknown>>

  constructor(body: OAuthErrorBody, status: number, headers: Headers = new Headers(), members: Record<string, unknown> = {}) {
    super(body.error_description ? `${body.error}: ${body.error_description}` : body.error)
    this.error = body.error
    this.error_description = body.error_description
    this.status = status
    this.headers = headers
    this.members = members
  }

  /** devicegate's stable refusal cause (`devicegate_reason`), when the server sent one. */
  get devicegateReason(): string | undefined {
    const r = this.members.devicegate_reason
    return typeof r === 'string' ? r : undefined
  }
}

/** Stable codes of {@link ClientError}. */
export type ClientErrorCode =
  /** The server could not be reached (DNS, refused, reset, timeout). */
  | 'ERR_NETWORK'
  /** The server answered something that is not the expected JSON (wrong URL, proxy page, 5xx HTML). */
  | 'ERR_BAD_RESPONSE'
  /** RFC 8414 metadata missing, invalid, or for another issuer. */
  | 'ERR_DISCOVERY'
  /** No usable grant is stored, or it was wiped after `invalid_grant`: run the device login again. */
  | 'ERR_LOGIN_REQUIRED'
  /** A store file or key file is readable by others, or owned by another user. */
  | 'ERR_STORE_INSECURE'
  /** A store record cannot be decrypted or parsed (tampered, wrong key, or truncated). */
  | 'ERR_STORE_CORRUPT'
  /** The OS keyring was asked for but cannot be used. */
  | 'ERR_KEYRING_UNAVAILABLE'
  /** A caller passed something unusable (bad issuer URL, unknown store kind). */
  | 'ERR_INVALID_ARGUMENT'
  /** Another process held the refresh lock longer than the wait allows (it may be hung). */
  | 'ERR_LOCKED'
  /**
   * The server does not accept where this tool keeps its tokens (devicegate `storage_class`
   * policy). Nothing was stored elsewhere: use a store the app accepts and log in again.
   */
  | 'ERR_STORAGE_NOT_ACCEPTED'

/** A failure that is not an OAuth error response. `message` is fit to show a person. */
export class ClientError extends Error {
  override readonly name = 'ClientError'
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** True when `err` is an {@link OAuthResponseError}, optionally with the given `error` code. */
export function isOAuthResponseError(err: unknown, code?: OAuthErrorName): err is OAuthResponseError {
  return err instanceof OAuthResponseError && (code === undefined || err.error === code)
}
