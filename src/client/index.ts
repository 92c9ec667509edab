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
export { discover, metadataUrls, supportsDpop, type AuthorizationServerMetadata, type DiscoverOptions } from './discovery.js'
export {
  DEFAULT_INTERVAL_SECONDS,
  DEVICE_CODE_GRANT_TYPE,
  MAX_BACKOFF_SECONDS,
  SLOW_DOWN_SECONDS,
  pollForToken,
  startDeviceAuthorization,
  systemFlowClock,
  type DeviceAuthorization,
  type FlowClock,
  type FlowOptions,
  type PollOptions,
  type PollProgress,
  type StartDeviceAuthorizationOptions,
} from './device-flow.js'
export { DpopKey, htuOf, type DpopPrivateJwk, type DpopProofInput } from './dpop.js'
export {
  ClientError,
  OAuthResponseError,
  isOAuthResponseError,
  type ClientErrorCode,
  type OAuthErrorBody,
  type OAuthErrorName,
} from './errors.js'
export type { FetchLike } from './http.js'
export { FileTokenStore, KEY_FILE, defaultConfigDir, type FileTokenStoreOptions } from './file-store.js'
export { KeyringTokenStore } from './keyring-store.js'
export { formatDuration, formatInstructions, renderTerminalQr } from './present.js'
export {
  DEFAULT_REFRESH_MARGIN_SECONDS,
  DPOP_KEY_RECORD,
  DeviceClient,
  decodeClaimsUnverified,
  defaultAccountName,
  describeGrant,
  readStoredGrant,
  type DeviceClientOptions,
  type DpopMode,
  type LoginOptions,
  type LogoutResult,
  type SessionInfo,
  type StoredGrant,
} from './session.js'
export {
  type DeclaredStorageClass,
  MemoryTokenStore,
  RECORD_NAME,
  openTokenStore,
  type OpenTokenStoreOptions,
  type OpenedTokenStore,
  type TokenStore,
  type TokenStoreKind,
} from './store.js'
export type { TokenSet } from './token-request.js'
export { SDK_USER_AGENT, SDK_VERSION, withUserAgent } from './version.js'
