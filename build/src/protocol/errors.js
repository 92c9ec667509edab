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
    invalid_dpop_proof: { status: 400, rfc: 'RFC 9449 §5' },
    use_dpop_nonce: { status: 400, rfc: 'RFC 9449 §8' }, // + DPoP-Nonce header
    invalid_token: { status: 401, rfc: 'RFC 6750 §3.1' },
    insufficient_scope: { status: 403, rfc: 'RFC 6750 §3.1' },
    server_error: { status: 500, rfc: 'RFC 6749 §5.2' },
    temporarily_unavailable: { status: 503, rfc: 'RFC 6749 §4.1.2.1' },
};
/** An Error that skips capturing a stack trace (V8 reads `stackTraceLimit` at construction). */
class StacklessError extends Error {
    constructor(message, options) {
        const stackTraceLimit = Error.stackTraceLimit;
        Error.stackTraceLimit = 0;
        super(message, options);
        Error.stackTraceLimit = stackTraceLimit;
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
    error;
    description;
    extra;
    name = 'OAuthError';
    constructor(error, description, extra = {}) {
        super(description ?? error, { cause: extra.cause });
        this.error = error;
        this.description = description;
        this.extra = extra;
    }
    /** HTTP status for this error code. */
    get status() {
        return this.extra.status ?? OAUTH_ERRORS[this.error].status;
    }
    /** Response headers: the catalogue's (e.g. the 401 challenge), overridden by `extra.headers`. */
    get headers() {
        const entry = OAUTH_ERRORS[this.error];
        return { ...('headers' in entry ? entry.headers : {}), ...this.extra.headers };
    }
    /**
     * The JSON body of RFC 6749 §5.2. `error_description` is limited to the characters that section
     * allows (%x20-21 / %x23-5B / %x5D-7E): double quotes become single quotes, backslashes become
     * slashes, and anything else outside printable ASCII (including echoed user input) becomes `?`.
     */
    toJSON() {
        const body = this.description === undefined ? { error: this.error } : { error: this.error, error_description: toDescriptionCharset(this.description) };
        return this.extra.members === undefined ? body : { ...this.extra.members, ...body };
    }
}
/** Maps text into the `error_description` character set of RFC 6749 §5.2. */
export function toDescriptionCharset(text) {
    return text.replace(/"/g, "'").replace(/\\/g, '/').replace(/[^\x20-\x7E]/g, '?');
}
/** Returns true when `value` is an {@link OAuthError}. */
export function isOAuthError(value) {
    return value instanceof OAuthError;
}
