/**
 * `DeviceClient`: device login, DPoP binding, stored grants, refresh with rotation, authorised
 * requests and logout with revocation — the whole client-side life of a device-flow token.
 */
import { join } from 'node:path'
import { SDK_USER_AGENT, withUserAgent } from './version.js'
import { createHash } from 'node:crypto'
import { decodeJwt, type JWTPayload } from 'jose'
import { advertisesDpop, discover, supportsDpop, type AuthorizationServerMetadata } from './discovery.js'
import { pollForToken, startDeviceAuthorization, systemFlowClock, type DeviceAuthorization, type FlowClock, type PollProgress } from './device-flow.js'
import { DpopKey, isResourceNonceChallenge, type DpopPrivateJwk } from './dpop.js'
import { findChallenge } from './www-authenticate.js'
import { ClientError, OAuthResponseError } from './errors.js'
import { errorFromResponse, postForm, type FetchLike } from './http.js'
import type { DeclaredStorageClass, TokenStore } from './token-store.js'
import { withFileLock } from './refresh-lock.js'
import { requestToken, type TokenSet } from './token-request.js'

/** Name of the installation's DPoP key record in the store. */
export const DPOP_KEY_RECORD = 'dpop-key'
/** Refresh this many seconds before the access token expires, by default. */
export const DEFAULT_REFRESH_MARGIN_SECONDS = 60

/** Default of {@link DeviceClientOptions.minRefreshFraction}: not before half the token's lifetime. */
export const DEFAULT_MIN_REFRESH_FRACTION = 0.5

/** What the store keeps for one login (record `grant-<account>`, JSON). Holds secrets. */
export interface StoredGrant extends TokenSet {
  v: 1
  issuer: string
  clientId: string
  tokenEndpoint: string
  revocationEndpoint?: string
  userinfoEndpoint?: string
  /** Thumbprint of the DPoP key the tokens are bound to (RFC 9449 §6.1 `jkt`). */
  dpopJkt?: string
  /** When the access token was obtained, epoch seconds. */
  obtainedAt: number
  /** The `storage_class` declared at login (devicegate extension); absent when none was sent. */
  storageClass?: DeclaredStorageClass
}

/** A view of a login without any token value: safe to print or log. */
export interface SessionInfo {
  issuer: string
  clientId: string
  account: string
  tokenType: string
  expiresAt?: number
  scope?: string
  /** Whether a refresh token is held (so the session can outlive the access token). */
  hasRefreshToken: boolean
  /** Thumbprint of the DPoP key when the tokens are key-bound. */
  dpopJkt?: string
  obtainedAt: number
}

/** Whether to bind tokens with DPoP: `auto` when the server lists ES256 (default), always, or never. */
export type DpopMode = 'auto' | 'required' | 'off'

/** Options for {@link DeviceClient}. */
export interface DeviceClientOptions {
  /** Issuer identifier (RFC 8414), e.g. `https://auth.example.com`. */
  issuer: string
  clientId: string
  store: TokenStore
  /** Name of this login in the store (`A–Z a–z 0–9 . _ -`). Default: derived from issuer and client. */
  account?: string
  /** Space-separated scopes to request. Default: the server's default for the client. */
  scope?: string
  /** Default: `auto`. */
  dpop?: DpopMode
  /** Seconds before expiry at which {@link DeviceClient.getAccessToken} refreshes. Default: 60. */
  refreshMarginSeconds?: number
  /**
   * {@link DeviceClient.getAccessToken} never refreshes a token younger than this fraction of its
   * lifetime (`expires_in`), whatever the margin — a 60 s token with the 60 s margin would otherwise
   * be refreshed on every call. An expired token is always refreshed. 0–1. Default: 0.5.
   */
  minRefreshFraction?: number
  /**
   * Directory of the cross-process refresh lock (`<account>.refresh.lock`): processes sharing a
   * store then share one refresh instead of racing with the same refresh token. Default: none
   * (refreshes are shared within this process only). The CLI uses its config directory.
   */
  lockDir?: string
  fetch?: FetchLike
  clock?: FlowClock
  /**
   * User-Agent sent on every request, e.g. `mytool/1.2 devicegate-client/0.1.0 (linux; x64) node/20`.
   * Default: `devicegate-client/<version> (<platform>; <arch>) node/<version>`.
   */
  userAgent?: string
}

/** Options for {@link DeviceClient.login}. */
export interface LoginOptions {
  /** Show the user code and URL; awaited before polling starts. */
  onPrompt: (authorization: Readonly<DeviceAuthorization>, metadata: Readonly<AuthorizationServerMetadata>) => void | Promise<void>
  /** Progress while waiting (time left, interval). */
  onProgress?: (progress: PollProgress) => void
  /** Cancels the login; the promise rejects with the signal's reason. */
  signal?: AbortSignal
  /** Extra device authorization parameters (e.g. `resource`). */
  extraParams?: Record<string, string>
}

/** What {@link DeviceClient.logout} did. */
export interface LogoutResult {
  /** Whether a stored login existed. */
  wasLoggedIn: boolean
  /** Whether the server confirmed revocation (RFC 7009 §2.2). */
  revoked: boolean
  /** Why revocation did not happen or failed; the local copy is deleted either way. */
  revocationError?: Error
}

/** The default account name for an issuer and client: `s` + 24 hex digits of SHA-256. */
export function defaultAccountName(issuer: string, clientId: string): string {
  return 's' + createHash('sha256').update(`${issuer}\n${clientId}`).digest('hex').slice(0, 24)
}

function grantRecord(account: string): string {
  return `grant-${account}`
}

/**
 * Reads a stored login.
 * @throws {ClientError} `ERR_STORE_CORRUPT` when the record is not a grant; store errors as thrown.
 */
export async function readStoredGrant(store: TokenStore, account: string): Promise<StoredGrant | undefined> {
  const raw = await store.get(grantRecord(account))
  if (raw === undefined) return undefined
  let grant: StoredGrant
  try {
    grant = JSON.parse(raw) as StoredGrant
  } catch (err) {
    throw new ClientError('ERR_STORE_CORRUPT', `the stored login "${account}" is not valid JSON`, { cause: err })
  }
  if (grant?.v !== 1 || typeof grant.accessToken !== 'string' || typeof grant.issuer !== 'string' || typeof grant.tokenEndpoint !== 'string')
    throw new ClientError('ERR_STORE_CORRUPT', `the stored login "${account}" has an unknown shape`)
  return grant
}

/** The token-free view of a grant. */
export function describeGrant(grant: StoredGrant, account: string): SessionInfo {
  const info: SessionInfo = {
    issuer: grant.issuer,
    clientId: grant.clientId,
    account,
    tokenType: grant.tokenType,
    hasRefreshToken: grant.refreshToken !== undefined,
    obtainedAt: grant.obtainedAt,
  }
  if (grant.expiresAt !== undefined) info.expiresAt = grant.expiresAt
  if (grant.scope !== undefined) info.scope = grant.scope
  if (grant.dpopJkt !== undefined) info.dpopJkt = grant.dpopJkt
  return info
}

/**
 * Decodes a JWT's claims WITHOUT verifying its signature: for display only (e.g. `whoami`), never
 * for decisions. Returns undefined for opaque tokens.
 */
export function decodeClaimsUnverified(token: string): JWTPayload | undefined {
  try {
    return decodeJwt(token)
  } catch {
    return undefined
  }
}

/**
 * A device-flow client for one issuer, client and account.
 *
 * ```ts
 * const { store } = await openTokenStore()
 * const client = new DeviceClient({ issuer: 'https://auth.example.com', clientId: 'deploy-cli', store })
 * await client.login({ onPrompt: (a) => console.error(formatInstructions(a)) })
 * const res = await client.fetch('https://api.example.com/whoami')
 * ```
 */
export class DeviceClient {
  readonly issuer: string
  readonly clientId: string
  readonly account: string
  readonly store: TokenStore
  readonly #opts: DeviceClientOptions
  readonly #fetch: FetchLike
  readonly #clock: FlowClock
  #metadata: Promise<AuthorizationServerMetadata> | undefined
  #dpopKey: Promise<DpopKey> | undefined
  #refreshing: Promise<StoredGrant> | undefined

  constructor(opts: DeviceClientOptions) {
    this.issuer = opts.issuer
    this.clientId = opts.clientId
    this.store = opts.store
    this.account = opts.account ?? defaultAccountName(opts.issuer, opts.clientId)
    this.#opts = opts
    this.#fetch = withUserAgent(opts.fetch ?? ((input, init) => globalThis.fetch(input, init)), opts.userAgent ?? SDK_USER_AGENT)
    this.#clock = opts.clock ?? systemFlowClock
  }

  /**
   * A client for the login already stored under `account` (issuer and client come from the store).
   * @throws {ClientError} `ERR_LOGIN_REQUIRED` when nothing is stored there.
   */
  static async fromStore(store: TokenStore, account: string, opts: Omit<DeviceClientOptions, 'issuer' | 'clientId' | 'store' | 'account'> = {}): Promise<DeviceClient> {
    const grant = await readStoredGrant(store, account)
    if (!grant) throw new ClientError('ERR_LOGIN_REQUIRED', 'not logged in; run the device login first')
    return new DeviceClient({ ...opts, issuer: grant.issuer, clientId: grant.clientId, store, account })
  }

  /** The server's metadata (RFC 8414), fetched once. */
  metadata(signal?: AbortSignal): Promise<AuthorizationServerMetadata> {
    this.#metadata ??= discover(this.issuer, { fetch: this.#fetch, ...(signal ? { signal } : {}) })
    this.#metadata.catch(() => {
      this.#metadata = undefined
    })
    return this.#metadata
  }

  /**
   * The installation's DPoP key: read from the store, or generated and stored on first use.
   * @throws {ClientError} `ERR_STORE_CORRUPT` for an unusable stored key.
   */
  dpopKey(): Promise<DpopKey> {
    this.#dpopKey ??= (async () => {
      const raw = await this.store.get(DPOP_KEY_RECORD)
      if (raw !== undefined) {
        let jwk: DpopPrivateJwk
        try {
          jwk = JSON.parse(raw) as DpopPrivateJwk
        } catch (err) {
          throw new ClientError('ERR_STORE_CORRUPT', 'the stored DPoP key is not valid JSON', { cause: err })
        }
        return DpopKey.fromJwk(jwk)
      }
      const { key, privateJwk } = await DpopKey.generate()
      await this.store.set(DPOP_KEY_RECORD, JSON.stringify(privateJwk))
      return key
    })()
    this.#dpopKey.catch(() => {
      this.#dpopKey = undefined
    })
    return this.#dpopKey
  }

  /**
   * Runs the device flow (RFC 8628 §3) and stores the result.
   *
   * DPoP: with mode `auto`, proofs are sent when the metadata lists ES256 in
   * `dpop_signing_alg_values_supported`; `required` fails when it does not. When proofs are sent,
   * the device authorization request also carries `dpop_jkt` (the key's RFC 7638 thumbprint), so
   * on devicegate the device code can only be redeemed with this installation's key (a devicegate
   * extension of RFC 8628; other servers ignore the parameter, RFC 6749 §3.1).
   *
   * @returns the token-free view of the new login.
   * @throws {OAuthResponseError} `access_denied`, `expired_token`, `invalid_client`,
   *   `unauthorized_client`, `invalid_scope`, …
   * @throws {ClientError} `ERR_NETWORK`, `ERR_DISCOVERY`, `ERR_BAD_RESPONSE`, store errors.
   */
  async login(opts: LoginOptions): Promise<SessionInfo> {
    const metadata = await this.metadata(opts.signal)
    const mode = this.#opts.dpop ?? 'auto'
    const useDpop = mode !== 'off' && supportsDpop(metadata)
    if (mode === 'required' && !useDpop)
      throw new ClientError('ERR_DISCOVERY', `${this.issuer} does not list ES256 in dpop_signing_alg_values_supported, and DPoP is required`)
    const dpopKey = useDpop ? await this.dpopKey() : undefined
    // Storage rules: declare where the tokens will live, to servers that list the extension.
    const storageClass = this.#declarableStorage(metadata)
    const extraParams = { ...opts.extraParams, ...(storageClass ? { storage_class: storageClass } : {}) }
    const tokens = await this.#refusingStorage(storageClass, async () => {
      const authorization = await startDeviceAuthorization(metadata, {
        clientId: this.clientId,
        fetch: this.#fetch,
        clock: this.#clock,
        // Only to servers that advertise DPoP, to stay conservative with the others.
        ...(dpopKey && advertisesDpop(metadata) ? { dpopKey } : {}),
        ...(this.#opts.scope ? { scope: this.#opts.scope } : {}),
        ...(Object.keys(extraParams).length > 0 ? { extraParams } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
      await opts.onPrompt(authorization, metadata)
      return pollForToken(metadata, authorization, {
        clientId: this.clientId,
        dpopKey,
        fetch: this.#fetch,
        clock: this.#clock,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
    })
    const grant: StoredGrant = {
      v: 1,
      issuer: this.issuer,
      clientId: this.clientId,
      tokenEndpoint: metadata.token_endpoint,
      ...this.#tokenFields(tokens, dpopKey),
      ...(storageClass ? { storageClass } : {}),
    }
    if (metadata.revocation_endpoint) grant.revocationEndpoint = metadata.revocation_endpoint
    if (metadata.userinfo_endpoint) grant.userinfoEndpoint = metadata.userinfo_endpoint
    await this.store.set(grantRecord(this.account), JSON.stringify(grant))
    return describeGrant(grant, this.account)
  }

  /** The store's `storage_class`, when it has one and the server lists it as supported. */
  #declarableStorage(metadata: AuthorizationServerMetadata): DeclaredStorageClass | undefined {
    const cls = this.store.storageClass
    const supported = (metadata as { storage_classes_supported?: unknown }).storage_classes_supported
    return cls !== undefined && Array.isArray(supported) && supported.includes(cls) ? cls : undefined
  }

  /**
   * Runs `call`; a server refusal with `devicegate_reason: storage_not_accepted` becomes
   * {@link ClientError} `ERR_STORAGE_NOT_ACCEPTED` with a message that names the store. The SDK
   * never retries with another, weaker store: the caller chooses what to do.
   */
  async #refusingStorage<T>(storageClass: DeclaredStorageClass | undefined, call: () => Promise<T>, onRefused?: () => Promise<void>): Promise<T> {
    try {
      return await call()
    } catch (err) {
      if (!(err instanceof OAuthResponseError) || err.devicegateReason !== 'storage_not_accepted') throw err
      await onRefused?.()
      const declared = storageClass ?? 'unknown'
      throw new ClientError(
        'ERR_STORAGE_NOT_ACCEPTED',
        `${this.issuer} does not accept tokens for "${this.clientId}" kept in ${this.store.location} (storage "${declared}")` +
          `${err.error_description ? `: ${err.error_description}` : ''}. ` +
          'Nothing was stored in another place; use a store this app accepts (for example the OS keyring) and log in again.',
        { cause: err },
      )
    }
  }

  #tokenFields(tokens: TokenSet, dpopKey: DpopKey | undefined): Omit<StoredGrant, 'v' | 'issuer' | 'clientId' | 'tokenEndpoint'> {
    const fields: Omit<StoredGrant, 'v' | 'issuer' | 'clientId' | 'tokenEndpoint'> = {
      accessToken: tokens.accessToken,
      tokenType: tokens.tokenType,
      obtainedAt: Math.floor(this.#clock.nowSeconds()),
    }
    if (tokens.expiresAt !== undefined) fields.expiresAt = tokens.expiresAt
    if (tokens.refreshToken !== undefined) fields.refreshToken = tokens.refreshToken
    if (tokens.scope !== undefined) fields.scope = tokens.scope
    if (tokens.idToken !== undefined) fields.idToken = tokens.idToken
    // A server that lists DPoP but answers Bearer did not bind the token; don't claim it is bound.
    if (dpopKey && tokens.tokenType.toLowerCase() === 'dpop') fields.dpopJkt = dpopKey.thumbprint
    return fields
  }

  /** The stored login without token values, or undefined when not logged in. */
  async session(): Promise<SessionInfo | undefined> {
    const grant = await readStoredGrant(this.store, this.account)
    return grant && describeGrant(grant, this.account)
  }

  /**
   * The stored grant including token values. Prefer {@link getAccessToken} and {@link fetch};
   * this is for tools that must hand a token to another program.
   */
  storedGrant(): Promise<StoredGrant | undefined> {
    return readStoredGrant(this.store, this.account)
  }

  /**
   * A usable access token: the stored one, or a refreshed one when it expires within the refresh
   * margin (default 60 s).
   * @throws {ClientError} `ERR_LOGIN_REQUIRED` when not logged in, or expired with no refresh
   *   token, or the refresh was refused (the stored login is then wiped).
   */
  async getAccessToken(opts: { signal?: AbortSignal; forceRefresh?: boolean } = {}): Promise<{ accessToken: string; tokenType: string; expiresAt?: number }> {
    let grant = await readStoredGrant(this.store, this.account)
    if (!grant) throw new ClientError('ERR_LOGIN_REQUIRED', 'not logged in; run the device login first')
    if (opts.forceRefresh || this.#isDue(grant)) grant = await this.#refreshOnce(opts.signal, grant.refreshToken)
    return { accessToken: grant.accessToken, tokenType: grant.tokenType, ...(grant.expiresAt !== undefined ? { expiresAt: grant.expiresAt } : {}) }
  }

  /**
   * Uses the refresh token (RFC 6749 §6), with a DPoP proof from the same key when the grant is
   * bound (RFC 9449 §5). The rotated refresh token and new access token are written to the store
   * (atomically, one record) before this resolves, so a crash never leaves only the spent token.
   * Concurrent calls in one process share one request.
   *
   * @throws {ClientError} `ERR_LOGIN_REQUIRED` when there is no refresh token, or the server
   *   answers `invalid_grant` (reused, revoked or expired refresh token): the stored grant is
   *   deleted first, because it can never work again.
   * @throws {OAuthResponseError} other token endpoint errors (the stored grant is kept).
   * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
   */
  refresh(signal?: AbortSignal): Promise<StoredGrant> {
    return this.#refreshOnce(signal, undefined)
  }

  /** {@link refresh}, given the refresh token the caller judged (so a rotation since is seen). */
  #refreshOnce(signal: AbortSignal | undefined, judged: string | undefined): Promise<StoredGrant> {
    this.#refreshing ??= this.#refreshShared(signal, judged).finally(() => {
      this.#refreshing = undefined
    })
    return this.#refreshing
  }

  /**
   * Whether {@link getAccessToken} refreshes `grant` now: within the refresh margin of its expiry,
   * but never before `minRefreshFraction` of its lifetime has passed (unless it has expired).
   */
  #isDue(grant: StoredGrant): boolean {
    if (grant.expiresAt === undefined) return false
    const now = this.#clock.nowSeconds()
    if (now >= grant.expiresAt) return true
    const margin = this.#opts.refreshMarginSeconds ?? DEFAULT_REFRESH_MARGIN_SECONDS
    const fraction = this.#opts.minRefreshFraction ?? DEFAULT_MIN_REFRESH_FRACTION
    const lifetime = grant.expiresAt - grant.obtainedAt
    const earliest = grant.obtainedAt + lifetime * fraction
    return now >= grant.expiresAt - margin && now >= earliest
  }

  /**
   * One refresh shared across processes: under the lock file (when `lockDir` is set), the stored
   * grant is read again; when another process has rotated it since this one looked and it is not
   * due, that result is used instead of a second refresh.
   */
  async #refreshShared(signal: AbortSignal | undefined, judged: string | undefined): Promise<StoredGrant> {
    // The token the caller judged due, not one read now: another process may have rotated it in
    // between, and re-reading would take that fresh token for the one to refresh.
    const seen = judged ?? (await readStoredGrant(this.store, this.account))?.refreshToken
    const lockDir = this.#opts.lockDir
    const run = async () => {
      const current = await readStoredGrant(this.store, this.account)
      if (current && seen !== undefined && current.refreshToken !== seen && !this.#isDue(current)) return current
      return this.#refresh(signal)
    }
    return lockDir === undefined ? run() : withFileLock(join(lockDir, `${this.account}.refresh.lock`), run)
  }

  async #refresh(signal: AbortSignal | undefined): Promise<StoredGrant> {
    const name = grantRecord(this.account)
    const grant = await readStoredGrant(this.store, this.account)
    if (!grant) throw new ClientError('ERR_LOGIN_REQUIRED', 'not logged in; run the device login first')
    if (!grant.refreshToken) throw new ClientError('ERR_LOGIN_REQUIRED', 'the access token has expired and there is no refresh token; log in again')
    let dpopKey: DpopKey | undefined
    if (grant.dpopJkt !== undefined) {
      dpopKey = await this.dpopKey()
      if (dpopKey.thumbprint !== grant.dpopJkt) {
        await this.store.delete(name)
        throw new ClientError('ERR_LOGIN_REQUIRED', 'the stored login is bound to a DPoP key this installation no longer has; log in again')
      }
    }
    // Storage rules: declare the storage again when it was declared at login (the store may have changed).
    const storageClass = grant.storageClass !== undefined ? this.store.storageClass : undefined
    const refreshToken = grant.refreshToken
    let tokens: TokenSet
    try {
      tokens = await this.#refusingStorage(
        storageClass,
        () =>
          requestToken({
            tokenEndpoint: grant.tokenEndpoint,
            form: { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: grant.clientId, ...(storageClass ? { storage_class: storageClass } : {}) },
            dpopKey,
            // A key is used only for a grant whose tokens the server bound to it: it does DPoP.
            serverDoesDpop: dpopKey !== undefined,
            fetch: this.#fetch,
            signal,
            nowSeconds: this.#clock.nowSeconds(),
          }),
        // The refresh token is refused (and, on a deny, revoked): the stored login is useless.
        () => this.store.delete(name),
      )
    } catch (err) {
      if (err instanceof OAuthResponseError && err.error === 'invalid_grant') {
        await this.store.delete(name)
        throw new ClientError(
          'ERR_LOGIN_REQUIRED',
          `the server refused the stored refresh token (${err.error_description ?? 'invalid_grant'}); it may have been revoked or used elsewhere, so the stored login was deleted: log in again`,
          { cause: err },
        )
      }
      throw err
    }
    const next: StoredGrant = { ...grant, ...this.#tokenFields(tokens, dpopKey), ...(storageClass ? { storageClass } : {}) }
    // Servers that do not rotate send no new refresh token: keep the old one.
    if (tokens.refreshToken === undefined) next.refreshToken = grant.refreshToken
    if (tokens.scope === undefined && grant.scope !== undefined) next.scope = grant.scope
    if (tokens.expiresAt === undefined) delete next.expiresAt
    await this.store.set(name, JSON.stringify(next))
    return next
  }

  /**
   * `fetch` with the access token: `Authorization: DPoP <token>` plus a proof with `ath`
   * (RFC 9449 §7) for bound tokens, `Authorization: Bearer` (RFC 6750 §2.1) otherwise. Refreshes
   * first when due; retries once when a resource server asks for a nonce (RFC 9449 §9), or refuses
   * the proof while its `Date` shows a clock minutes off ours. Bodies must be replayable (string,
   * bytes, URLSearchParams) for that retry.
   */
  async fetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const target = String(url)
    const method = (init.method ?? 'GET').toUpperCase()
    for (let attempt = 0; ; attempt++) {
      const { accessToken, tokenType } = await this.getAccessToken(init.signal ? { signal: init.signal } : {})
      const headers = new Headers(init.headers)
      const bound = tokenType.toLowerCase() === 'dpop'
      const key = bound ? await this.dpopKey() : undefined
      if (key) {
        headers.set('authorization', `DPoP ${accessToken}`)
        headers.set('dpop', await key.proof({ method, url: target, accessToken }))
      } else {
        headers.set('authorization', `Bearer ${accessToken}`)
      }
      let res: Response
      try {
        res = await this.#fetch(target, { ...init, method, headers })
      } catch (err) {
        if (init.signal?.aborted) throw init.signal.reason
        throw new ClientError('ERR_NETWORK', `cannot reach ${new URL(target).origin}`, { cause: err })
      }
      const newNonce = key?.rememberNonce(target, res.headers) ?? false
      if (key && newNonce && attempt === 0 && isResourceNonceChallenge(res.status, res.headers)) continue
      // A proof refused by a resource server whose clock (its `Date`) is off from ours: once, on its clock.
      if (key && attempt === 0 && res.status === 401 && findChallenge(res.headers.get('www-authenticate'), 'DPoP')?.params.error === 'invalid_dpop_proof' && key.adjustClock(target, res.headers))
        continue
      return res
    }
  }

  /**
   * Calls the OpenID Connect UserInfo endpoint, when the server has one, with the access token.
   * The answer comes from the server, so unlike {@link decodeClaimsUnverified} it is trustworthy
   * as far as TLS is.
   * @returns undefined when the server has no userinfo endpoint.
   */
  async userinfo(signal?: AbortSignal): Promise<Record<string, unknown> | undefined> {
    const grant = await readStoredGrant(this.store, this.account)
    if (!grant?.userinfoEndpoint) return undefined
    const res = await this.fetch(grant.userinfoEndpoint, { headers: { accept: 'application/json' }, ...(signal ? { signal } : {}) })
    const text = await res.text()
    if (!res.ok) {
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        body = undefined
      }
      const challenge = /error="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')
      if (body === undefined && challenge) body = { error: challenge[1] }
      throw errorFromResponse(grant.userinfoEndpoint, { status: res.status, headers: res.headers, body })
    }
    try {
      return JSON.parse(text) as Record<string, unknown>
    } catch (err) {
      throw new ClientError('ERR_BAD_RESPONSE', `${grant.userinfoEndpoint} did not answer JSON`, { cause: err })
    }
  }

  /**
   * Revokes the refresh token (which, per RFC 7009 §2.1, should end its access tokens too) and
   * then the access token at the server's revocation endpoint, as a public client, then deletes
   * the stored login — also when revocation failed, so this machine holds no token either way.
   * @see https://www.rfc-editor.org/rfc/rfc7009#section-2.1
   */
  async logout(signal?: AbortSignal): Promise<LogoutResult> {
    const name = grantRecord(this.account)
    const grant = await readStoredGrant(this.store, this.account).catch(async (err) => {
      if (err instanceof ClientError && err.code === 'ERR_STORE_CORRUPT') return undefined
      throw err
    })
    if (!grant) {
      await this.store.delete(name)
      return { wasLoggedIn: false, revoked: false }
    }
    let revocationError: Error | undefined
    if (!grant.revocationEndpoint) {
      revocationError = new ClientError('ERR_DISCOVERY', `${grant.issuer} has no revocation endpoint; the tokens stay valid until they expire`)
    } else {
      try {
        const tokens: [string, string][] = []
        if (grant.refreshToken) tokens.push([grant.refreshToken, 'refresh_token'])
        tokens.push([grant.accessToken, 'access_token'])
        for (const [token, hint] of tokens) {
          const res = await postForm(this.#fetch, grant.revocationEndpoint, { token, token_type_hint: hint, client_id: grant.clientId }, signal ? { signal } : {})
          if (res.status !== 200) throw errorFromResponse(grant.revocationEndpoint, res)
        }
      } catch (err) {
        revocationError = err as Error
      }
    }
    await this.store.delete(name)
    return { wasLoggedIn: true, revoked: revocationError === undefined, ...(revocationError ? { revocationError } : {}) }
  }
}

