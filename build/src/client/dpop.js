import { calculateJwkThumbprint, SignJWT } from 'jose';
import { ClientError } from './errors.js';
const ALG = 'ES256';
const CURVE = { name: 'ECDSA', namedCurve: 'P-256' };
function base64url(bytes) {
    return Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).toString('base64url');
}
/** `htu`: the URI without query and fragment (RFC 9449 §4.2). */
export function htuOf(url) {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
}
/**
 * A difference between the server's `Date` and the local clock, in seconds, below which the local
 * clock is trusted (the `Date` header has a resolution of one second).
 */
export const CLOCK_SKEW_TOLERANCE_SECONDS = 2;
/** A DPoP key pair with the server nonces and clock offset it has learnt (RFC 9449 §8, §9). */
export class DpopKey {
    #privateKey;
    /** The public key for the proof header `jwk` (never holds `d`). */
    publicJwk;
    /** RFC 7638 SHA-256 thumbprint, what the server puts in `cnf.jkt` (RFC 9449 §6.1). */
    thumbprint;
    /** Latest `DPoP-Nonce` per origin (RFC 9449 §8.2: a nonce is for one server). */
    #nonces = new Map();
    /** Seconds to add to the local clock for each origin's `iat` (its clock minus ours). */
    #clockOffsets = new Map();
    constructor(privateKey, publicJwk, thumbprint) {
        this.#privateKey = privateKey;
        this.publicJwk = Object.freeze(publicJwk);
        this.thumbprint = thumbprint;
    }
    /**
     * Generates a new installation key.
     * @returns the usable key (non-extractable) and its private JWK, to be written to the secure
     *   store and then dropped by the caller.
     */
    static async generate() {
        const pair = (await crypto.subtle.generateKey(CURVE, true, ['sign', 'verify']));
        const jwk = (await crypto.subtle.exportKey('jwk', pair.privateKey));
        const privateJwk = { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, d: jwk.d };
        return { key: await DpopKey.fromJwk(privateJwk), privateJwk };
    }
    /**
     * Imports a stored private JWK as a non-extractable signing key.
     * @throws {ClientError} `ERR_STORE_CORRUPT` when the JWK is not a P-256 private key.
     */
    static async fromJwk(jwk) {
        if (jwk?.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string')
            throw new ClientError('ERR_STORE_CORRUPT', 'the stored DPoP key is not a P-256 private key');
        let privateKey;
        try {
            privateKey = await crypto.subtle.importKey('jwk', { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, d: jwk.d, ext: false }, CURVE, false, ['sign']);
        }
        catch (err) {
            throw new ClientError('ERR_STORE_CORRUPT', 'the stored DPoP key cannot be imported', { cause: err });
        }
        const publicJwk = { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
        return new DpopKey(privateKey, publicJwk, await calculateJwkThumbprint(publicJwk, 'sha256'));
    }
    /** Whether the private key can leave memory. Always false; exposed for tests and audits. */
    get isExtractable() {
        return this.#privateKey.extractable;
    }
    /**
     * Remembers the `DPoP-Nonce` header of a response from `url`'s server (RFC 9449 §8.2, §9).
     * @returns true when the header carried a new nonce.
     */
    rememberNonce(url, headers) {
        const nonce = headers.get('dpop-nonce');
        if (!nonce)
            return false;
        const origin = new URL(url).origin;
        const changed = this.#nonces.get(origin) !== nonce;
        this.#nonces.set(origin, nonce);
        return changed;
    }
    /**
     * After a proof was refused (`invalid_dpop_proof`), learns the server's clock from the
     * response's `Date` header (RFC 9110 §6.6.1) when it differs from ours by more than
     * {@link CLOCK_SKEW_TOLERANCE_SECONDS}: later proofs for that origin carry `iat` on the server's
     * clock, so a client whose clock is minutes off still logs in (RFC 9449 §11.1 leaves the `iat`
     * window to the server; devicegate sends `Date` from the clock that judged the proof).
     *
     * @param nowMs The local time the response arrived, in epoch milliseconds.
     * @returns true when the offset changed, i.e. a retry may now succeed.
     */
    adjustClock(url, headers, nowMs = Date.now()) {
        const date = Date.parse(headers.get('date') ?? '');
        if (!Number.isFinite(date))
            return false;
        const origin = new URL(url).origin;
        const offset = Math.round((date - nowMs) / 1000);
        const previous = this.#clockOffsets.get(origin) ?? 0;
        if (Math.abs(offset - previous) <= CLOCK_SKEW_TOLERANCE_SECONDS)
            return false;
        this.#clockOffsets.set(origin, offset);
        return true;
    }
    /**
     * Signs a DPoP proof JWT (RFC 9449 §4.2): header `typ: dpop+jwt`, `alg: ES256`, public `jwk`;
     * claims `jti` (128 random bits), `htm`, `htu`, `iat` (now on the server's clock as learnt by
     * {@link adjustClock}, epoch seconds), `ath` when `accessToken` is given, and the server's latest
     * `nonce` for that origin when it sent one.
     */
    async proof(input) {
        const claims = { htm: input.method.toUpperCase(), htu: htuOf(input.url) };
        const nonce = this.#nonces.get(new URL(input.url).origin);
        if (nonce !== undefined)
            claims.nonce = nonce;
        if (input.accessToken !== undefined)
            claims.ath = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(input.accessToken)));
        return new SignJWT(claims)
            .setProtectedHeader({ alg: ALG, typ: 'dpop+jwt', jwk: { ...this.publicJwk } })
            .setJti(base64url(crypto.getRandomValues(new Uint8Array(16))))
            .setIssuedAt(Math.floor(Date.now() / 1000) + (this.#clockOffsets.get(new URL(input.url).origin) ?? 0))
            .sign(this.#privateKey);
    }
}
/**
 * True when a resource server's 401 asks for a (new) nonce: `WWW-Authenticate: DPoP
 * error="use_dpop_nonce"` (RFC 9449 §9).
 */
export function isResourceNonceChallenge(status, headers) {
    return status === 401 && /^\s*DPoP\b[^]*error="use_dpop_nonce"/i.test(headers.get('www-authenticate') ?? '');
}
