/**
 * Errors of the resource-server helper, rendered as `WWW-Authenticate` challenges: RFC 6750 §3
 * (Bearer) and RFC 9449 §7.1 (DPoP).
 */
const STATUS = {
    invalid_request: 400,
    invalid_token: 401,
    invalid_dpop_proof: 401,
    insufficient_scope: 403,
    temporarily_unavailable: 503,
};
/**
 * A refused request. `status` is 400, 401, 403 or 503; {@link ResourceAuthError.headers} gives the
 * `WWW-Authenticate` challenge(s). Without `error` (no credentials at all) the challenge carries no
 * error code, as RFC 6750 §3.1 asks.
 */
export class ResourceAuthError extends Error {
    error;
    description;
    scheme;
    challenge;
    name = 'ResourceAuthError';
    status;
    constructor(error, description, scheme, challenge, options = {}) {
        super(description, options);
        this.error = error;
        this.description = description;
        this.scheme = scheme;
        this.challenge = challenge;
        this.status = error === undefined ? 401 : STATUS[error];
    }
    /** Response headers: `WWW-Authenticate` (one value per scheme), `Cache-Control: no-store`. */
    get headers() {
        const out = { 'cache-control': 'no-store' };
        if (this.error === 'temporarily_unavailable') {
            out['retry-after'] = '1';
            return out;
        }
        const challenges = (this.scheme === 'both' ? ['DPoP', 'Bearer'] : [this.scheme]).map((s) => formatChallenge(s, this));
        out['www-authenticate'] = challenges.length === 1 ? challenges[0] : challenges;
        return out;
    }
    /** A JSON body for APIs that want one besides the challenge. */
    toJSON() {
        return { error: this.error ?? 'unauthorized', error_description: this.description };
    }
}
/** Quotes an auth-param value (RFC 9110 §11.2 quoted-string). */
function quote(value) {
    return `"${value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, '')}"`;
}
/** Formats one challenge, e.g. `DPoP error="invalid_token", error_description="…", algs="ES256"`. */
export function formatChallenge(scheme, err) {
    const params = [];
    if (err.challenge.realm)
        params.push(`realm=${quote(err.challenge.realm)}`);
    if (err.error) {
        params.push(`error=${quote(err.error)}`, `error_description=${quote(err.description)}`);
        if (err.error === 'insufficient_scope' && err.challenge.scope)
            params.push(`scope=${quote(err.challenge.scope)}`);
    }
    if (scheme === 'DPoP')
        params.push(`algs=${quote(err.challenge.dpopAlgs.join(' '))}`);
    return params.length > 0 ? `${scheme} ${params.join(', ')}` : scheme;
}
