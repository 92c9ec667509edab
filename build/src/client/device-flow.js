/**
 * The Device Authorization Grant from the device's side (RFC 8628 §3.1–3.5): start the
 * authorization, show the code, poll the token endpoint.
 */
import { sdkFetch } from './version.js';
import { advertisesDpop } from './discovery.js';
import { ClientError, OAuthResponseError } from './errors.js';
import { errorFromResponse, postForm } from './http.js';
import { requestToken } from './token-request.js';
/** The device authorization grant type (RFC 8628 §3.4). */
export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';
/** Polling interval when the server names none, in seconds (RFC 8628 §3.2). */
export const DEFAULT_INTERVAL_SECONDS = 5;
/** What `slow_down` adds to the interval, in seconds, for all later polls (RFC 8628 §3.5). */
export const SLOW_DOWN_SECONDS = 5;
/** Longest wait between polls after network failures (exponential backoff cap), in seconds. */
export const MAX_BACKOFF_SECONDS = 60;
/** The real clock. */
export const systemFlowClock = {
    nowSeconds: () => Date.now() / 1000,
    sleep: (seconds, signal) => new Promise((resolve, reject) => {
        if (signal?.aborted)
            return reject(signal.reason);
        const onAbort = () => {
            clearTimeout(timer);
            reject(signal.reason);
        };
        const timer = setTimeout(() => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
        }, Math.max(0, seconds * 1000));
        signal?.addEventListener('abort', onAbort, { once: true });
    }),
};
/** A base64url SHA-256 digest: what `dpop_jkt` carries (RFC 9449 §10, RFC 7638 §3). */
const JKT_PATTERN = /^[A-Za-z0-9_-]{43}$/;
/**
 * Requests a device code and user code (RFC 8628 §3.1) as a public client.
 *
 * With `opts.dpopKey` the request carries `dpop_jkt`, the key's RFC 7638 thumbprint, which binds
 * the device code to that key on devicegate (an extension of RFC 8628 borrowing RFC 9449 §10's
 * parameter): a stolen device code is then useless without the private key. Servers that do not
 * know the parameter ignore it (RFC 6749 §3.1), so it is sent whenever the caller asks; callers
 * that want to be conservative pass a key only when the metadata advertises DPoP, as
 * `DeviceClient.login` does.
 *
 * @throws {TypeError} when `opts.dpopKey` is a string that is not a base64url SHA-256 thumbprint.
 * @throws {OAuthResponseError} e.g. `invalid_client` (unknown client), `unauthorized_client`
 *   (client may not use the device flow), `invalid_scope`.
 * @throws {ClientError} `ERR_NETWORK`, `ERR_BAD_RESPONSE` (required members missing).
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.2
 */
export async function startDeviceAuthorization(metadata, opts) {
    const url = metadata.device_authorization_endpoint;
    const clock = opts.clock ?? systemFlowClock;
    const form = { ...opts.extraParams, client_id: opts.clientId };
    if (opts.scope)
        form.scope = opts.scope;
    const dpopJkt = typeof opts.dpopKey === 'string' ? opts.dpopKey : opts.dpopKey?.thumbprint;
    if (dpopJkt !== undefined) {
        if (!JKT_PATTERN.test(dpopJkt))
            throw new TypeError('dpopKey: expected a DpopKey or a base64url SHA-256 JWK thumbprint (RFC 7638)');
        form.dpop_jkt = dpopJkt;
    }
    const res = await postForm(opts.fetch ?? sdkFetch, url, form, opts.signal ? { signal: opts.signal } : {});
    if (res.status !== 200)
        throw errorFromResponse(url, res);
    const b = (typeof res.body === 'object' && res.body !== null ? res.body : {});
    // `verification_url` is a pre-standard spelling some servers still send.
    const verificationUri = b.verification_uri ?? b.verification_url;
    const expiresIn = Number(b.expires_in);
    if (typeof b.device_code !== 'string' || typeof b.user_code !== 'string' || typeof verificationUri !== 'string' || !(expiresIn > 0))
        throw new ClientError('ERR_BAD_RESPONSE', `${url} answered without device_code, user_code, verification_uri and expires_in (RFC 8628 §3.2)`);
    const interval = b.interval === undefined ? DEFAULT_INTERVAL_SECONDS : Number(b.interval);
    const auth = {
        deviceCode: b.device_code,
        userCode: b.user_code,
        verificationUri,
        expiresInSeconds: expiresIn,
        expiresAt: Math.floor(clock.nowSeconds()) + expiresIn,
        intervalSeconds: Number.isFinite(interval) && interval > 0 ? interval : DEFAULT_INTERVAL_SECONDS,
    };
    if (typeof b.verification_uri_complete === 'string')
        auth.verificationUriComplete = b.verification_uri_complete;
    if (dpopJkt !== undefined)
        auth.dpopJkt = dpopJkt;
    return auth;
}
/**
 * Polls the token endpoint until the user decides or the codes expire (RFC 8628 §3.4–3.5).
 *
 * Waits `interval` seconds before each request. `authorization_pending`: keep polling.
 * `slow_down`: add 5 seconds to the interval for this and every later poll. A network failure
 * doubles the interval (exponential backoff, capped at 60 s, RFC 8628 §3.5) and polling goes on.
 * When the local deadline passes first, the result is `expired_token` with `status` 0.
 * With `opts.dpopKey` every poll carries a proof, and when `metadata` lists
 * `dpop_signing_alg_values_supported` the tokens must come back DPoP-bound (RFC 9449 §5).
 * A code requested with `dpop_jkt` must be polled with that key.
 *
 * @returns the token response.
 * @throws {OAuthResponseError} `access_denied` (the user said no), `expired_token`, or any other
 *   error the server sends (`invalid_grant`, `invalid_client`, …).
 * @throws {ClientError} `ERR_BAD_RESPONSE` for a malformed reply, or a Bearer reply to a poll
 *   with a DPoP proof from a server whose metadata advertises DPoP.
 * @throws {TypeError} when `authorization.dpopJkt` is set and `opts.dpopKey` is another key or
 *   none (the server would only answer `invalid_grant`); nothing is sent.
 * @throws the signal's reason when aborted (a `DOMException` named `AbortError` by default).
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.5
 */
export async function pollForToken(metadata, authorization, opts) {
    if (authorization.dpopJkt !== undefined && opts.dpopKey?.thumbprint !== authorization.dpopJkt)
        throw new TypeError('the device code is bound to a DPoP key (dpop_jkt): poll with that key as opts.dpopKey');
    const clock = opts.clock ?? systemFlowClock;
    const fetchImpl = opts.fetch ?? sdkFetch;
    let intervalSeconds = authorization.intervalSeconds;
    let polls = 0;
    const secondsLeft = () => Math.max(0, Math.ceil(authorization.expiresAt - clock.nowSeconds()));
    const report = () => opts.onProgress?.({ secondsLeft: secondsLeft(), intervalSeconds, polls });
    for (;;) {
        opts.signal?.throwIfAborted();
        // Wait out the interval in steps of at most one second so progress stays live.
        const pollAt = clock.nowSeconds() + intervalSeconds;
        for (let now = clock.nowSeconds(); now < pollAt; now = clock.nowSeconds()) {
            if (now >= authorization.expiresAt)
                break;
            report();
            await clock.sleep(Math.min(1, pollAt - now, authorization.expiresAt - now), opts.signal);
        }
        if (clock.nowSeconds() >= authorization.expiresAt)
            throw new OAuthResponseError({ error: 'expired_token', error_description: 'the device code expired before it was approved' }, 0);
        try {
            polls++;
            return await requestToken({
                tokenEndpoint: metadata.token_endpoint,
                form: { grant_type: DEVICE_CODE_GRANT_TYPE, device_code: authorization.deviceCode, client_id: opts.clientId },
                dpopKey: opts.dpopKey,
                serverDoesDpop: advertisesDpop(metadata),
                fetch: fetchImpl,
                signal: opts.signal,
                nowSeconds: clock.nowSeconds(),
            });
        }
        catch (err) {
            if (err instanceof OAuthResponseError && err.error === 'authorization_pending') {
                report();
                continue;
            }
            if (err instanceof OAuthResponseError && err.error === 'slow_down') {
                intervalSeconds += SLOW_DOWN_SECONDS;
                report();
                continue;
            }
            if (err instanceof ClientError && err.code === 'ERR_NETWORK') {
                intervalSeconds = Math.min(intervalSeconds * 2, Math.max(MAX_BACKOFF_SECONDS, intervalSeconds));
                report();
                continue;
            }
            throw err;
        }
    }
}
