import { ClientError, OAuthResponseError } from './errors.js';
import { errorFromResponse, postForm } from './http.js';
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
export async function requestToken(opts) {
    for (let attempt = 0;; attempt++) {
        const headers = {};
        if (opts.dpopKey)
            headers.DPoP = await opts.dpopKey.proof({ method: 'POST', url: opts.tokenEndpoint });
        const res = await postForm(opts.fetch, opts.tokenEndpoint, opts.form, { headers, ...(opts.signal ? { signal: opts.signal } : {}) });
        const newNonce = opts.dpopKey?.rememberNonce(opts.tokenEndpoint, res.headers) ?? false;
        if (res.status === 200) {
            const tokens = parseTokenResponse(opts.tokenEndpoint, res.body, opts.nowSeconds);
            // RFC 6749 §5.1: token_type is case insensitive.
            if (opts.dpopKey && opts.serverDoesDpop && tokens.tokenType.toLowerCase() !== 'dpop')
                throw new ClientError('ERR_BAD_RESPONSE', `${opts.tokenEndpoint} answered token_type "${tokens.tokenType}" to a request with a DPoP proof, although the server does DPoP (dpop_signing_alg_values_supported); the unbound token was not accepted (RFC 9449 §5)`);
            return tokens;
        }
        const err = errorFromResponse(opts.tokenEndpoint, res);
        if (err instanceof OAuthResponseError && err.error === 'use_dpop_nonce' && newNonce && attempt === 0)
            continue;
        // A proof refused while the server's clock (its `Date`) is off from ours: once, on its clock.
        if (err instanceof OAuthResponseError && err.error === 'invalid_dpop_proof' && attempt === 0 && opts.dpopKey?.adjustClock(opts.tokenEndpoint, res.headers))
            continue;
        throw err;
    }
}
/**
 * Validates an RFC 6749 §5.1 body: `access_token` and `token_type` are strings, `expires_in` a
 * non-negative number when present.
 * @throws {ClientError} `ERR_BAD_RESPONSE`.
 */
export function parseTokenResponse(url, body, nowSeconds) {
    const b = (typeof body === 'object' && body !== null ? body : {});
    if (typeof b.access_token !== 'string' || b.access_token.length === 0 || typeof b.token_type !== 'string')
        throw new ClientError('ERR_BAD_RESPONSE', `${url} answered 200 without "access_token" and "token_type"`);
    const set = { accessToken: b.access_token, tokenType: b.token_type };
    if (b.expires_in !== undefined) {
        const expiresIn = Number(b.expires_in);
        if (!Number.isFinite(expiresIn) || expiresIn < 0)
            throw new ClientError('ERR_BAD_RESPONSE', `${url} answered an invalid "expires_in"`);
        set.expiresAt = Math.floor(nowSeconds) + Math.floor(expiresIn);
    }
    if (typeof b.refresh_token === 'string' && b.refresh_token.length > 0)
        set.refreshToken = b.refresh_token;
    if (typeof b.scope === 'string')
        set.scope = b.scope;
    if (typeof b.id_token === 'string')
        set.idToken = b.id_token;
    return set;
}
