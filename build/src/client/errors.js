/**
 * The authorization server answered with an OAuth error response (RFC 6749 §5.2).
 *
 * `status` is the HTTP status of that response; it is `0` only for `expired_token` raised by the
 * SDK itself when the device code's `expires_in` ran out before the server said so.
 */
export class OAuthResponseError extends Error {
    name = 'OAuthResponseError';
    /** The `error` code, e.g. `access_denied`. */
    error;
    /** The server's `error_description`, if any (server-supplied text: display, don't parse). */
    error_description;
    /** HTTP status of the error response (0 when raised locally, see above). */
    status;
    /** Response headers, e.g. `DPoP-Nonce`, `WWW-Authenticate`. */
    headers;
    /**
     * Other members of the error body (extensions), e.g. devicegate's `devicegate_reason:
     * "storage_not_accepted"`. Empty when there are none.
     */
    members;
    constructor(body, status, headers = new Headers(), members = {}) {
        super(body.error_description ? `${body.error}: ${body.error_description}` : body.error);
        this.error = body.error;
        this.error_description = body.error_description;
        this.status = status;
        this.headers = headers;
        this.members = members;
    }
    /** devicegate's stable refusal cause (`devicegate_reason`), when the server sent one. */
    get devicegateReason() {
        const r = this.members.devicegate_reason;
        return typeof r === 'string' ? r : undefined;
    }
}
/** A failure that is not an OAuth error response. `message` is fit to show a person. */
export class ClientError extends Error {
    code;
    name = 'ClientError';
    constructor(code, message, options) {
        super(message, options);
        this.code = code;
    }
}
/** True when `err` is an {@link OAuthResponseError}, optionally with the given `error` code. */
export function isOAuthResponseError(err, code) {
    return err instanceof OAuthResponseError && (code === undefined || err.error === code);
}
