/**
 * Verifies requests to a protected resource: the access token (RFC 9068 JWT against the issuer's
 * JWKS, or introspection), its audience (RFC 8707), expiry, sender constraint (RFC 9449 DPoP,
 * with `ath` and replay), scope, and revocation state.
 */
import { createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify } from 'jose';
import { DEFAULT_DPOP_ALGS, DpopKeyMismatchError, DpopProofError, ReplayCache, verifyResourceDpopProof } from './dpop.js';
import { ResourceAuthError } from './errors.js';
import { IntrospectionClient, RevocationFeed, RevocationUnavailableError } from './revocation.js';
function single(value) {
    return Array.isArray(value) && value.length === 1 ? value[0] : value;
}
/**
 * Builds a resource-server helper.
 *
 * Order of checks: credentials present and well-formed (RFC 6750 §2.1, RFC 9449 §7.1); token
 * signature against the issuer's JWKS (cached; an unknown `kid` refetches it), `typ: at+jwt`
 * (RFC 9068 §4), `iss`, `aud`, `exp`; sender constraint: a token with `cnf.jkt` only with the
 * `DPoP` scheme and a valid proof for this request (RFC 9449 §7.1–7.2), a token without it only as
 * Bearer (and not at all when `dpop.required`); revocation; scope.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-7
 */
export function createResourceServer(options) {
    const issuer = options.issuer.replace(/\/+$/, '');
    const audiences = typeof options.audience === 'string' ? [options.audience] : [...options.audience];
    if (audiences.length === 0)
        throw new TypeError('audience: name at least one resource indicator');
    const nowMs = options.nowMs ?? Date.now;
    const dpopAlgs = options.dpop?.algorithms ?? DEFAULT_DPOP_ALGS;
    const dpopRequired = options.dpop?.required ?? false;
    const replay = new ReplayCache(options.dpop?.replayCacheSize);
    const jwks = createRemoteJWKSet(new URL(options.jwksUri ?? `${issuer}/jwks`), { cooldownDuration: options.jwksCooldownMs ?? 1000, cacheMaxAge: 600_000 });
    const algorithms = [...(options.algorithms ?? ['ES256', 'EdDSA', 'RS256', 'PS256'])];
    const tolerance = options.clockToleranceSeconds ?? 5;
    const challenge = { ...(options.realm ? { realm: options.realm } : {}), dpopAlgs };
    const revocation = options.revocation;
    const feed = revocation.mode === 'feed'
        ? new RevocationFeed({
            url: revocation.url ?? `${issuer}/revocations`,
            credentials: revocation.credentials,
            ...(revocation.pollIntervalMs !== undefined ? { pollIntervalMs: revocation.pollIntervalMs } : {}),
            ...(revocation.maxStalenessMs !== undefined ? { maxStalenessMs: revocation.maxStalenessMs } : {}),
            ...(options.fetch ? { fetch: options.fetch } : {}),
            nowMs,
        })
        : undefined;
    feed?.start();
    feed?.sync().catch(() => { });
    const introspection = revocation.mode === 'introspection'
        ? new IntrospectionClient({
            url: revocation.url ?? `${issuer}/introspect`,
            credentials: revocation.credentials,
            ...(revocation.cacheTtlMs !== undefined ? { cacheTtlMs: revocation.cacheTtlMs } : {}),
            ...(options.fetch ? { fetch: options.fetch } : {}),
            nowMs,
        })
        : undefined;
    const refuse = (error, description, scheme, extra = {}) => new ResourceAuthError(error, description, scheme, { ...challenge, ...(extra.scope ? { scope: extra.scope } : {}) }, { cause: extra.cause });
    function requestUri(request) {
        const url = request.url ?? '/';
        if (/^https?:\/\//i.test(url))
            return url;
        if (options.baseUrl)
            return options.baseUrl.replace(/\/+$/, '') + url;
        const host = single(request.headers.host);
        return `http://${typeof host === 'string' ? host : 'localhost'}${url}`;
    }
    async function verifyRequest(request, verifyOptions = {}) {
        const noCredentialsScheme = dpopRequired ? 'DPoP' : 'both';
        const authorization = single(request.headers.authorization);
        if (authorization === undefined || authorization === '')
            throw refuse(undefined, 'authentication required', noCredentialsScheme);
        if (Array.isArray(authorization))
            throw refuse('invalid_request', 'one Authorization header only', noCredentialsScheme);
        const match = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization);
        if (!match)
            throw refuse('invalid_request', 'expected "Authorization: Bearer <token>" or "Authorization: DPoP <token>"', noCredentialsScheme);
        const scheme = match[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
        const token = match[2];
        const now = nowMs();
        // 1. The token itself.
        let claims;
        let jkt;
        let isJwt = token.split('.').length === 3;
        if (isJwt) {
            try {
                decodeJwt(token);
            }
            catch {
                isJwt = false;
            }
        }
        if (isJwt) {
            try {
                ;
                ({ payload: claims } = await jwtVerify(token, jwks, {
                    issuer,
                    audience: audiences,
                    typ: 'at+jwt',
                    algorithms,
                    clockTolerance: tolerance,
                    currentDate: new Date(now),
                    requiredClaims: ['exp', 'jti', 'sub'],
                }));
            }
            catch (err) {
                const description = err instanceof joseErrors.JWTExpired
                    ? 'the access token has expired'
                    : err instanceof joseErrors.JWTClaimValidationFailed
                        ? `the access token "${err.claim}" claim is not acceptable`
                        : 'the access token is invalid';
                throw refuse('invalid_token', description, scheme, { cause: err });
            }
            const cnf = claims.cnf;
            jkt = typeof cnf?.jkt === 'string' ? cnf.jkt : null;
        }
        else if (introspection) {
            const result = await introspection.introspect(token).catch((err) => {
                throw refuse('temporarily_unavailable', 'token state cannot be checked now', scheme, { cause: err });
            });
            if (!result.active)
                throw refuse('invalid_token', 'the access token is not active', scheme);
            if (result.token_type === 'refresh_token')
                throw refuse('invalid_token', 'a refresh token is not an access token', scheme);
            const aud = result.aud ?? issuer;
            if (!(Array.isArray(aud) ? aud : [aud]).some((a) => audiences.includes(a)))
                throw refuse('invalid_token', 'the access token is not for this resource', scheme);
            claims = result;
            jkt = result.cnf?.jkt ?? null;
        }
        else {
            throw refuse('invalid_token', 'the access token is invalid', scheme);
        }
        // 2. Sender constraint (RFC 9449 §7.1–7.2).
        const proofHeader = request.headers.dpop;
        if (jkt !== null) {
            if (scheme !== 'DPoP')
                throw refuse('invalid_token', 'a DPoP-bound access token must be sent with the DPoP scheme', 'DPoP');
            if (proofHeader === undefined)
                throw refuse('invalid_dpop_proof', 'a DPoP proof is required', 'DPoP');
            if (Array.isArray(proofHeader))
                throw refuse('invalid_dpop_proof', 'exactly one DPoP header is allowed', 'DPoP');
            try {
                await verifyResourceDpopProof(proofHeader, { method: request.method ?? 'GET', uri: requestUri(request), accessToken: token, boundJkt: jkt }, {
                    algorithms: dpopAlgs,
                    maxAgeSeconds: options.dpop?.maxAgeSeconds ?? 60,
                    maxSkewSeconds: options.dpop?.maxSkewSeconds ?? 5,
                    replay,
                    nowMs: now,
                });
            }
            catch (err) {
                // RFC 9449 §7.1: a valid proof by another key than the token's is a token problem.
                if (err instanceof DpopKeyMismatchError)
                    throw refuse('invalid_token', err.message, 'DPoP', { cause: err });
                if (err instanceof DpopProofError)
                    throw refuse('invalid_dpop_proof', err.message, 'DPoP', { cause: err });
                throw err;
            }
        }
        else {
            if (scheme === 'DPoP')
                throw refuse('invalid_token', 'the access token is not DPoP-bound', 'DPoP');
            if (dpopRequired)
                throw refuse('invalid_token', 'this resource accepts DPoP-bound access tokens only', 'DPoP');
        }
        // 3. Revocation.
        const tokenId = typeof claims.jti === 'string' ? claims.jti : '';
        if (feed && isJwt) {
            let revoked;
            try {
                revoked = await feed.isRevoked(tokenId);
            }
            catch (err) {
                if (err instanceof RevocationUnavailableError)
                    throw refuse('temporarily_unavailable', 'token state cannot be checked now', scheme, { cause: err });
                throw err;
            }
            if (revoked)
                throw refuse('invalid_token', 'the access token has been revoked', scheme);
        }
        else if (introspection && isJwt) {
            const result = await introspection.introspect(token).catch((err) => {
                throw refuse('temporarily_unavailable', 'token state cannot be checked now', scheme, { cause: err });
            });
            if (!result.active)
                throw refuse('invalid_token', 'the access token is not active', scheme);
        }
        // 4. Scope (RFC 6750 §3.1 insufficient_scope).
        const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
        const needed = verifyOptions.scopes ?? [];
        if (needed.some((s) => !scopes.includes(s)))
            throw refuse('insufficient_scope', 'the access token lacks a required scope', scheme, { scope: needed.join(' ') });
        return {
            token,
            tokenType: scheme,
            subject: String(claims.sub ?? ''),
            clientId: String(claims.client_id ?? ''),
            scopes,
            jkt,
            tokenId,
            expiresAt: typeof claims.exp === 'number' ? claims.exp : 0,
            claims,
        };
    }
    return {
        verifyRequest,
        close: () => feed?.stop(),
    };
}
