/**
 * Revocation state for the resource-server helper: either devicegate's revocation feed
 * (`GET /revocations?since=`), polled in the background, or token introspection (RFC 7662) with a
 * short cache. Either way a token revoked at the server is refused within a bounded delay.
 */
import { createHash } from 'node:crypto';
/** HTTP Basic credentials (RFC 6749 §2.3.1: form-urlencoded, then base64). */
export function basicAuthorization({ clientId, clientSecret }) {
    const enc = (v) => encodeURIComponent(v).replace(/%20/g, '+');
    return `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
}
/** Thrown when revocation state cannot be established (the helper then fails closed). */
export class RevocationUnavailableError extends Error {
    name = 'RevocationUnavailableError';
}
/**
 * Follows the revocation feed: one request per `pollIntervalMs` (default 1000), asking only for
 * what changed since the server time of the previous answer. Revoked `jti`s are kept until their
 * token's `exp`. When the last successful poll is older than twice the interval, the next check
 * waits for a fresh poll first; when none succeeds within `maxStalenessMs`, checks fail (closed).
 * So a revoked token is refused at most about 2 × `pollIntervalMs` after its revocation.
 */
export class RevocationFeed {
    #url;
    #authorization;
    #fetch;
    #pollIntervalMs;
    #maxStalenessMs;
    #nowMs;
    #revoked = new Map(); // jti → exp (epoch seconds)
    #since = 0;
    #lastSyncMs = Number.NEGATIVE_INFINITY;
    #inflight;
    #timer;
    #lastError;
    constructor(options) {
        this.#url = options.url;
        this.#authorization = basicAuthorization(options.credentials);
        this.#fetch = options.fetch ?? fetch;
        this.#pollIntervalMs = options.pollIntervalMs ?? 1000;
        this.#maxStalenessMs = options.maxStalenessMs ?? Math.max(5000, 5 * this.#pollIntervalMs);
        this.#nowMs = options.nowMs ?? Date.now;
        if (this.#pollIntervalMs < 100)
            throw new TypeError('pollIntervalMs must be at least 100');
    }
    /** Starts background polling (the timer does not keep the process alive). */
    start() {
        if (this.#timer)
            return;
        this.#timer = setInterval(() => {
            this.sync().catch(() => { });
        }, this.#pollIntervalMs);
        this.#timer.unref?.();
    }
    stop() {
        if (this.#timer)
            clearInterval(this.#timer);
        this.#timer = undefined;
    }
    /** Polls the feed once (concurrent callers share one request). */
    sync() {
        this.#inflight ??= this.#poll().finally(() => {
            this.#inflight = undefined;
        });
        return this.#inflight;
    }
    async #poll() {
        const started = this.#nowMs();
        try {
            const res = await this.#fetch(`${this.#url}?since=${this.#since}`, {
                headers: { authorization: this.#authorization, accept: 'application/json' },
                signal: AbortSignal.timeout(Math.max(2000, this.#pollIntervalMs)),
            });
            if (!res.ok)
                throw new RevocationUnavailableError(`revocation feed answered ${res.status}`);
            const body = (await res.json());
            for (const t of body.access_tokens)
                this.#revoked.set(t.jti, t.exp);
            // The next poll starts at this answer's server time; `revoked_at >= since` overlaps by design.
            this.#since = body.now;
            this.#lastSyncMs = started;
            const nowSeconds = Math.floor(this.#nowMs() / 1000);
            for (const [jti, exp] of this.#revoked)
                if (exp <= nowSeconds)
                    this.#revoked.delete(jti);
        }
        catch (err) {
            this.#lastError = err;
            throw err;
        }
    }
    /**
     * Whether the token with this `jti` is revoked, after making sure the state is fresh enough.
     * @throws {RevocationUnavailableError} when no poll succeeded within `maxStalenessMs`.
     */
    async isRevoked(jti) {
        const age = this.#nowMs() - this.#lastSyncMs;
        if (age > 2 * this.#pollIntervalMs) {
            try {
                await this.sync();
            }
            catch {
                if (this.#nowMs() - this.#lastSyncMs > this.#maxStalenessMs)
                    throw new RevocationUnavailableError('revocation state is unavailable', { cause: this.#lastError });
            }
        }
        return this.#revoked.has(jti);
    }
}
/**
 * Token introspection (RFC 7662) with a short cache keyed by the token's SHA-256, so a busy API
 * asks once per token per `cacheTtlMs` (default 1000): a revoked token is refused at most that
 * long after its revocation.
 */
export class IntrospectionClient {
    #url;
    #authorization;
    #fetch;
    #ttlMs;
    #nowMs;
    #cache = new Map();
    static #MAX_ENTRIES = 10_000;
    constructor(options) {
        this.#url = options.url;
        this.#authorization = basicAuthorization(options.credentials);
        this.#fetch = options.fetch ?? fetch;
        this.#ttlMs = options.cacheTtlMs ?? 1000;
        this.#nowMs = options.nowMs ?? Date.now;
    }
    /** @throws {RevocationUnavailableError} when the endpoint cannot answer. */
    async introspect(token) {
        const key = createHash('sha256').update(token).digest('base64url');
        const now = this.#nowMs();
        const hit = this.#cache.get(key);
        if (hit && hit.until > now)
            return hit.result;
        let result;
        try {
            const res = await this.#fetch(this.#url, {
                method: 'POST',
                headers: { authorization: this.#authorization, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
                body: new URLSearchParams({ token }).toString(),
                signal: AbortSignal.timeout(5000),
            });
            if (!res.ok)
                throw new Error(`introspection answered ${res.status}`);
            result = (await res.json());
        }
        catch (err) {
            throw new RevocationUnavailableError('token introspection is unavailable', { cause: err });
        }
        if (this.#cache.size >= IntrospectionClient.#MAX_ENTRIES)
            this.#cache.clear();
        this.#cache.set(key, { result, until: now + this.#ttlMs });
        return result;
    }
}
