/**
 * `devicegate/client`: the device-flow client SDK for CLI and tool authors. Works against any
 * RFC 8628 server; imports no devicegate server code.
 *
 * - {@link discover} — RFC 8414 metadata.
 * - {@link DeviceClient} — login (RFC 8628), DPoP binding (RFC 9449), stored grants, refresh with
 *   rotation, authorised `fetch`, logout with revocation (RFC 7009).
 * - {@link startDeviceAuthorization} / {@link pollForToken} — the flow's two halves, for callers
 *   that manage tokens themselves.
 * - {@link openTokenStore} — `keyring`, encrypted `file` or `memory` storage; or bring your own
 *   {@link TokenStore}.
 */
export { discover, metadataUrls, supportsDpop } from './discovery.js';
export { DEFAULT_INTERVAL_SECONDS, DEVICE_CODE_GRANT_TYPE, MAX_BACKOFF_SECONDS, SLOW_DOWN_SECONDS, pollForToken, startDeviceAuthorization, systemFlowClock, } from './device-flow.js';
export { DpopKey, htuOf } from './dpop.js';
export { ClientError, OAuthResponseError, isOAuthResponseError, } from './errors.js';
export { FileTokenStore, KEY_FILE, defaultConfigDir } from './file-store.js';
export { KeyringTokenStore } from './keyring-store.js';
export { formatDuration, formatInstructions, renderTerminalQr } from './present.js';
export { DEFAULT_REFRESH_MARGIN_SECONDS, DPOP_KEY_RECORD, DeviceClient, decodeClaimsUnverified, defaultAccountName, describeGrant, readStoredGrant, } from './session.js';
export { MemoryTokenStore, RECORD_NAME, openTokenStore, } from './store.js';
export { SDK_USER_AGENT, SDK_VERSION, withUserAgent } from './version.js';
