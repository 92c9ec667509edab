/**
 * The one storage contract. Every adapter (SQLite, PostgreSQL) implements it and passes the same
 * contract suite (`test/store-contract.test.ts`).
 *
 * Conventions: times are epoch seconds; secrets (device codes, refresh tokens, opaque access
 * tokens, session ids) arrive already hashed (hex SHA-256) and are stored only as hashes.
 * Methods named as one atomic operation (`registerPoll`, `redeemDeviceGrant`,
 * `rotateRefreshToken`, `decideDeviceGrant`) are a single conditional write or one transaction:
 * correct when several server instances race on the same row.
 */

/** Lifecycle of a device authorization (RFC 8628 §3). Expiry is derived from `expiresAt`. */
export type DeviceGrantStatus = 'pending' | 'approved' | 'denied' | 'redeemed'

/** A device authorization request and its decision (RFC 8628 §3.1–3.5). */
export interface DeviceGrantRecord {
  id: string
  /** SHA-256 (hex) of the `device_code`. */
  deviceCodeHash: string
  /** Canonical user code (8 characters, no dash). */
  userCode: string
  clientId: string
  /** Requested (and, once approved, granted) scope, space-delimited. */
  scope: string
  status: DeviceGrantStatus
  createdAt: number
  expiresAt: number
  /** Current minimum polling interval in seconds; grows by 5 on each `slow_down`. */
  intervalSeconds: number
  /** Time of the last poll, or null before the first. */
  lastPolledAt: number | null
  /** The approving or denying user, once decided. */
  subject: string | null
  decidedAt: number | null
  /** Client address of the device authorization request. */
  requestIp: string
  requestUserAgent: string | null
  /** RFC 7638 thumbprint of the DPoP key the device code is bound to (devicegate extension). */
  dpopJkt: string | null
  /** Token family created at redemption. */
  grantId: string | null
  /** RFC 8707 resource indicators requested at device authorization; absent or empty = none. */
  resources?: readonly string[]
}

/** A token family: everything issued from one authorization (RFC 9700 §4.14.2). */
export interface GrantRecord {
  id: string
  clientId: string
  /** Resource owner; null for client_credentials. */
  subject: string | null
  scope: string
  createdAt: number
  revokedAt: number | null
  /** The device authorization the family came from, if any. */
  deviceGrantId: string | null
  /** Refresh tokens of the family expire at this time, whatever the rotation. */
  expiresAt: number | null
  dpopJkt: string | null
  /** RFC 8707 resources the family may obtain tokens for; absent or empty = none (aud is the issuer). */
  resources?: readonly string[]
}

/** An issued access token (JWT per RFC 9068 or opaque). */
export interface AccessTokenRecord {
  /** SHA-256 (hex) of the full token string (JWT or opaque). */
  tokenHash: string
  jti: string
  grantId: string
  clientId: string
  subject: string | null
  scope: string
  issuedAt: number
  expiresAt: number
  revokedAt: number | null
  format: 'jwt' | 'opaque'
  /** `cnf.jkt` (RFC 9449 §6) when DPoP-bound. */
  dpopJkt: string | null
  /** The token's audience when resource indicators were used (RFC 8707 §2); absent or empty = the issuer. */
  resources?: readonly string[]
}

/** An opaque refresh token; rotated on every use (RFC 9700 §4.14.2). */
export interface RefreshTokenRecord {
  tokenHash: string
  id: string
  grantId: string
  clientId: string
  subject: string | null
  scope: string
  issuedAt: number
  expiresAt: number | null
  /** Set when the token was exchanged; a second use is reuse. */
  rotatedAt: number | null
  revokedAt: number | null
  dpopJkt: string | null
}

/** A token with the revocation time of its family, read in one query. */
export type WithGrantState<T> = T & { grantRevokedAt: number | null }

/** What {@link Store.redeemDeviceGrant} and {@link Store.issueTokens} write together. */
export interface TokenBundle {
  grant: GrantRecord
  accessToken: AccessTokenRecord
  refreshToken?: RefreshTokenRecord
}

/** Outcome of {@link Store.rotateRefreshToken}. */
export type RotationResult =
  | { ok: true }
  | { ok: false; reason: 'reused' | 'revoked' | 'expired' | 'unknown' }

/** Browser session of the verification pages. */
export interface WebSessionRecord {
  /** SHA-256 (hex) of the session cookie value. */
  idHash: string
  /** Anti-CSRF synchronizer token bound to this session. */
  csrfToken: string
  /** Signed-in user, or null. */
  subject: string | null
  /** When the user signed in (epoch seconds). */
  authTime: number | null
  /** When the user completed MFA in this sign-in (epoch seconds); absent or null: not done. */
  mfaAt?: number | null
  createdAt: number
  expiresAt: number
}

/**
 * Conditional-approval record of one device authorization (issue 3): the verified device posture
 * from the request, and the explained policy decision from the approval (`policy/`).
 */
export interface DeviceGrantPolicyRecord {
  deviceGrantId: string
  /** Verified posture facts (`PostureFacts`) as JSON text, or null when none was sent. */
  postureJson: string | null
  /** Decision at approval, or null before. */
  decision: 'allow' | 'deny' | 'step_up' | null
  /** The explained decision (`PolicyDecision`: rules, reason codes, both sides' IP/country/ASN) as JSON. */
  explanationJson: string | null
  decidedAt: number | null
}

/** A JWS signing key (the private half never leaves the server). */
export interface SigningKeyRecord {
  kid: string
  alg: string
  /** Public JWK as JSON text. */
  publicJwk: string
  /** Private JWK as JSON text. */
  privateJwk: string
  createdAt: number
  /** When this key stopped signing; null for the active key. */
  retiredAt: number | null
  /** Keep publishing in the JWKS until this time (last token signed + its lifetime). */
  publishUntil: number | null
}

/** A trusted device, known by the RFC 7638 thumbprint of its DPoP key. */
export interface DeviceRecord {
  /** SHA-256 JWK thumbprint (base64url) of the device's DPoP public key (RFC 9449 §6.1 `jkt`). */
  jkt: string
  /** Name shown to administrators, e.g. `build-agent-07`. */
  label: string
  registeredAt: number
  /** Administrator who registered it, if known. */
  registeredBy: string | null
  /** When it was retired (its tokens revoked); null while trusted. */
  retiredAt: number | null
}

/**
 * What the revocation feed reports since a given time: access tokens revoked one by one or with
 * their family, still unexpired, by `jti` (a JWT carries no family id), and revoked family ids.
 */
export interface RevocationsSince {
  accessTokens: { jti: string; revokedAt: number; expiresAt: number }[]
  grants: { id: string; revokedAt: number }[]
}

/** Thrown when a unique constraint is hit (e.g. a user-code collision). `code`: ERR_STORE_CONFLICT. */
export class StoreConflictError extends Error {
  override readonly name = 'StoreConflictError'
  readonly code = 'ERR_STORE_CONFLICT'
}

/** Thrown when the database cannot be reached. `code`: ERR_STORE_UNAVAILABLE. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError'
  readonly code = 'ERR_STORE_UNAVAILABLE'
}

export interface Store {
  /** Adapter name for logs and test titles (`sqlite`, `postgres`). */
  readonly kind: string

  /** Applies pending migrations. Idempotent. */
  migrate(): Promise<void>
  close(): Promise<void>

  // --- device authorizations (RFC 8628) ---
  /** @throws {StoreConflictError} when the user code or device code hash is taken. */
  createDeviceGrant(grant: DeviceGrantRecord): Promise<void>
  findDeviceGrantByDeviceCodeHash(deviceCodeHash: string): Promise<DeviceGrantRecord | undefined>
  /** Finds by canonical user code. */
  findDeviceGrantByUserCode(userCode: string): Promise<DeviceGrantRecord | undefined>
  /**
   * Records one poll atomically (RFC 8628 §3.5). When the previous poll was less than the current
   * interval ago, the interval grows by 5 s and `tooFast` is true. Either way `lastPolledAt`
   * becomes `now`. Returns the interval in force after this poll.
   */
  registerPoll(id: string, now: number): Promise<{ tooFast: boolean; intervalSeconds: number }>
  /**
   * Records the user's decision atomically: only a `pending`, unexpired grant changes.
   * @returns true when this call made the decision.
   */
  decideDeviceGrant(
    id: string,
    decision: 'approved' | 'denied',
    subject: string,
    now: number,
  ): Promise<boolean>
  /**
   * Redeems an approved, unexpired device grant and writes its tokens, in one transaction.
   * Exactly one caller wins under any concurrency, across instances.
   * @returns true when this call redeemed it; false when another did, or it expired.
   */
  redeemDeviceGrant(id: string, now: number, tokens: TokenBundle): Promise<boolean>

  // --- token families ---
  /** Writes a new grant with its first tokens (client_credentials). */
  issueTokens(tokens: TokenBundle): Promise<void>
  findGrant(id: string): Promise<GrantRecord | undefined>
  findAccessTokenByHash(tokenHash: string): Promise<WithGrantState<AccessTokenRecord> | undefined>
  findRefreshTokenByHash(tokenHash: string): Promise<WithGrantState<RefreshTokenRecord> | undefined>
  /**
   * Exchanges a refresh token atomically: marks it rotated only when it is live (not rotated,
   * not revoked, not expired, family not revoked), then writes the new access and refresh token.
   * A token already rotated yields `reused` and writes nothing (the caller revokes the family).
   */
  rotateRefreshToken(
    oldTokenHash: string,
    now: number,
    next: { accessToken: AccessTokenRecord; refreshToken: RefreshTokenRecord },
  ): Promise<RotationResult>
  /** Revokes a whole token family: every access and refresh token in it becomes inactive. */
  revokeGrant(grantId: string, now: number): Promise<void>
  /**
   * Revokes every live token family of a user (central revocation) in one UPDATE.
   * @returns the number of families revoked by this call.
   */
  revokeGrantsBySubject(subject: string, now: number): Promise<number>
  /**
   * Revokes every live token family of a client (central revocation) in one UPDATE.
   * @returns the number of families revoked by this call.
   */
  revokeGrantsByClient(clientId: string, now: number): Promise<number>
  /** Revokes one access token. */
  revokeAccessToken(tokenHash: string, now: number): Promise<void>

  // --- verification-page sessions ---
  createWebSession(session: WebSessionRecord): Promise<void>
  findWebSession(idHash: string, now: number): Promise<WebSessionRecord | undefined>
  deleteWebSession(idHash: string): Promise<void>
  /** Records that the session's user completed MFA at `now` (RFC 6238 TOTP). @returns false when the session is gone. */
  markWebSessionMfa(idHash: string, now: number): Promise<boolean>

  // --- conditional approval (policy) ---
  /** Stores the verified posture of a device authorization request (JSON text). */
  saveDevicePosture(deviceGrantId: string, postureJson: string): Promise<void>
  /** Stores (or replaces) the explained policy decision of a device authorization. */
  saveDeviceGrantDecision(deviceGrantId: string, decision: 'allow' | 'deny' | 'step_up', explanationJson: string, now: number): Promise<void>
  findDeviceGrantPolicy(deviceGrantId: string): Promise<DeviceGrantPolicyRecord | undefined>
  /** Stores a user's TOTP secret (base32), replacing any previous enrolment. */
  saveTotpSecret(username: string, secret: string, now: number): Promise<void>
  findTotpSecret(username: string): Promise<{ secret: string; createdAt: number } | undefined>
  /**
   * Revokes every live token family of one user at one client except `keepGrantId` (the
   * `single_session` constraint) in one UPDATE. @returns the number revoked.
   */
  revokeOtherSessions(subject: string, clientId: string, keepGrantId: string, now: number): Promise<number>

  // --- shared counters (rate limits) ---
  /**
   * Adds one to the counter `key` in the fixed window that contains `now` and returns the new
   * count. Windows are `windowSeconds` long, aligned to multiples of it.
   */
  incrementCounter(key: string, windowSeconds: number, now: number): Promise<number>
  /** Reads the counter `key` in the current window (0 when absent). */
  readCounter(key: string, windowSeconds: number, now: number): Promise<number>

  // --- signing keys ---
  listSigningKeys(): Promise<SigningKeyRecord[]>
  /** @throws {StoreConflictError} when the kid exists. */
  insertSigningKey(key: SigningKeyRecord): Promise<void>
  /** Marks a key retired; it stays published until `publishUntil`. */
  retireSigningKey(kid: string, now: number, publishUntil: number): Promise<void>

  // --- DPoP replay (RFC 9449 §11.1) ---
  /**
   * Remembers a proof identifier until `expiresAt`. Returns false when it was already seen
   * (a replay), atomically across instances.
   */
  rememberDpopJti(key: string, expiresAt: number): Promise<boolean>

  // --- server-wide secrets (e.g. the DPoP nonce key, RFC 9449 §8) ---
  /**
   * Returns the secret stored under `name`, storing `candidate` first when there is none, in one
   * `INSERT … ON CONFLICT DO NOTHING` followed by a read: every instance ends up with the same value.
   */
  ensureServerSecret(name: string, candidate: string, now: number): Promise<string>

  // --- revocation feed (resource servers) ---
  /**
   * Access tokens that were revoked (themselves or through their family) at or after `since` and
   * are still unexpired at `now`, and families revoked at or after `since`.
   */
  listRevocationsSince(since: number, now: number): Promise<RevocationsSince>

  // --- trusted device registry (keyed by DPoP jkt) ---
  /** @throws {StoreConflictError} when a device with this jkt exists (retired or not). */
  registerDevice(device: DeviceRecord): Promise<void>
  findDevice(jkt: string): Promise<DeviceRecord | undefined>
  /** All devices, newest first. */
  listDevices(): Promise<DeviceRecord[]>
  /** @returns false when no device has this jkt. */
  labelDevice(jkt: string, label: string): Promise<boolean>
  /** Marks a device retired. @returns false when unknown or already retired. */
  retireDevice(jkt: string, now: number): Promise<boolean>
  /** Token families bound to a DPoP key (`grants.dpop_jkt`), newest first. */
  listGrantsByDpopJkt(jkt: string): Promise<GrantRecord[]>
  /**
   * Revokes every live family bound to the key and every live access token bound to it (an
   * access token may be bound although its family is not), in one transaction.
   * @returns the number of families revoked by this call.
   */
  revokeGrantsByDpopJkt(jkt: string, now: number): Promise<number>

  // --- governance: audit log (issue 5) ---
  /**
   * Appends events to the hash-chained audit log in one transaction that first updates the
   * chain-head row (`audit_head`), which locks it: appends from several instances are serialised
   * and every event gets the next `seq` and the hash of its predecessor. `chain(prevHash, event)`
   * computes an event's hash (SHA-256 over the predecessor's hash and the event's canonical JSON);
   * it runs inside the transaction. Returns the stored records, in order.
   */
  appendAuditEvents(
    events: readonly NewAuditEvent[],
    chain: (prevHash: string, event: AuditEventBody) => string,
  ): Promise<AuditEventRecord[]>
  /** The chain head: last `seq` (0 when empty) and its hash (64 zeros when empty). */
  readAuditHead(): Promise<{ seq: number; hash: string }>
  /** Events in `seq` order with `seq > afterSeq` (default 0) and `time >= sinceTime`, at most `limit`. */
  listAuditEvents(query: { afterSeq?: number; sinceTime?: number; limit: number }): Promise<AuditEventRecord[]>
  /** Stores a signed checkpoint of the chain head; a second one for the same `seq` is ignored. */
  insertAuditCheckpoint(checkpoint: AuditCheckpointRecord): Promise<void>
  /** Every checkpoint, in `seq` order. */
  listAuditCheckpoints(): Promise<AuditCheckpointRecord[]>

  // --- governance: anomalies, principal overrides, inventory, central revocation (issue 5) ---
  /** Stores an anomaly. @returns false (nothing stored) when its `dedupeKey` was seen before. */
  insertAnomaly(anomaly: AnomalyRecord): Promise<boolean>
  /** Anomalies with `time >= sinceTime`, oldest first, at most `limit`. */
  listAnomalies(query: { sinceTime: number; kind?: string; limit: number }): Promise<AnomalyRecord[]>
  /** Sets (upserts) the administrator override of a configured user or client. */
  setPrincipalOverride(override: PrincipalOverrideRecord): Promise<void>
  /** Removes an override (the configured state applies again). @returns false when there was none. */
  clearPrincipalOverride(kind: PrincipalKind, id: string): Promise<boolean>
  listPrincipalOverrides(): Promise<PrincipalOverrideRecord[]>
  /**
   * Revokes every live family matching `filter` in one UPDATE (chunked by 500 ids when `ids` or
   * `deviceGrantIds` are given). Tokens are judged through the join on `grants`, so this takes
   * effect at once for introspection, refresh and the revocation feed.
   * @returns the number of families revoked by this call.
   * @throws {TypeError} when the filter names no criterion (use `createdBefore` to revoke all).
   */
  revokeGrantsWhere(filter: GrantFilter, now: number): Promise<number>
  /** Counts families matching `filter`. */
  countGrants(filter: GrantFilter): Promise<number>
  /**
   * Families matching `filter` with their issuance facts, newest first (`createdAt` desc, `id`),
   * keyset-paged: pass the last row's `createdAt` and `id` as `after`.
   */
  listGrantSummaries(
    filter: GrantFilter,
    page: { limit: number; after?: { createdAt: number; id: string } },
  ): Promise<GrantSummary[]>
  /** One family with its lineage: device authorization, access and refresh tokens (oldest first). */
  findGrantLineage(grantId: string): Promise<GrantLineage | undefined>
  /**
   * Records the last use of a family unless one was recorded less than `minIntervalSeconds` ago
   * (one conditional UPDATE). A null `ip` keeps the address recorded before. @returns true when
   * this call wrote.
   */
  touchGrant(grantId: string, now: number, ip: string | null, minIntervalSeconds: number): Promise<boolean>
  /** Device authorizations matching `filter`, oldest first, at most `limit` (phishing remediation). */
  listDeviceGrants(filter: DeviceGrantFilter, limit: number): Promise<DeviceGrantRecord[]>
  /**
   * Denies undecided or approved-but-unredeemed device authorizations matching `filter`, so they
   * can never be redeemed (id lists are chunked by 500, in one transaction). @returns how many
   * changed. @throws {TypeError} on an empty filter.
   */
  denyOpenDeviceGrants(filter: DeviceGrantFilter, now: number): Promise<number>
  /** Pending, unexpired device authorizations at `now` (the metrics gauge). */
  countPendingDeviceGrants(now: number): Promise<number>
  /** Distinct subjects and client ids that still have live families (start-up orphan check). */
  listLiveGrantOwners(): Promise<{ subjects: string[]; clientIds: string[] }>

  /** Deletes rows that can never matter again (expired sessions, counters, jtis). */
  purgeExpired(now: number): Promise<void>
}

// --- governance (issue 5) ---

/** The hashed part of an audit record: everything but the two hashes. */
export interface AuditEventBody {
  /** Position in the chain, from 1, without gaps. */
  seq: number
  /** Epoch seconds. */
  time: number
  /** `noun.verb` in the past tense, e.g. `device_code.approved`. */
  type: string
  /** Who acted: a username, `client:<id>`, `admin:<client id>`, `system`, or null. */
  actor: string | null
  clientId: string | null
  subject: string | null
  ip: string | null
  grantId: string | null
  /** Canonical JSON (RFC 8785) of the details object; never a token, code or secret value. */
  details: string
}

/** An audit record as stored: the body plus `prevHash` and `hash` (hex SHA-256). */
export interface AuditEventRecord extends AuditEventBody {
  prevHash: string
  hash: string
}

/** An event to append; the store assigns `seq` and the hashes. */
export type NewAuditEvent = Omit<AuditEventBody, 'seq'>

/** A signed statement that the chain had `hash` at `seq` at `time`. */
export interface AuditCheckpointRecord {
  seq: number
  hash: string
  time: number
  /** base64url HMAC-SHA256 over `seq.hash.time`, with a key kept outside the database. */
  signature: string
}

/** A detected anomaly and the action taken. */
export interface AnomalyRecord {
  id: string
  /** Stable detector name, e.g. `refresh_token_reuse`. */
  kind: string
  time: number
  /** At most one anomaly per key (e.g. one per grant and network); null = never de-duplicated. */
  dedupeKey: string | null
  clientId: string | null
  subject: string | null
  grantId: string | null
  ip: string | null
  /** `alert`, `revoke_grant` or `revoke_user`. */
  action: string
  /** JSON text. */
  details: string
}

export type PrincipalKind = 'user' | 'client'

/** An administrator's override of a user or client that comes from configuration. */
export interface PrincipalOverrideRecord {
  kind: PrincipalKind
  id: string
  state: 'disabled' | 'deleted'
  changedAt: number
  changedBy: string | null
}

/** Criteria for token families; all given criteria must hold. */
export interface GrantFilter {
  ids?: readonly string[]
  subject?: string
  clientId?: string
  dpopJkt?: string
  /** `created_at < createdBefore` (the kill switch). */
  createdBefore?: number
  /** `created_at >= createdFrom`. */
  createdFrom?: number
  /** Families minted from these device authorizations. */
  deviceGrantIds?: readonly string[]
  /** Families whose device authorization came from exactly this address. */
  requestIp?: string
  /** true: only unrevoked families; false: only revoked ones. */
  revoked?: boolean
  /** Only families not yet at their end of life at this time (epoch seconds). */
  unexpiredAt?: number
  /** `coalesce(last_used_at, created_at) < lastUsedBefore` (dormant families). */
  lastUsedBefore?: number
}

/** A family with the facts of its issuance (inventory row). */
export interface GrantSummary extends GrantRecord {
  lastUsedAt: number | null
  lastUsedIp: string | null
  /** Device authorization request: address, user agent, time; null for client_credentials. */
  requestIp: string | null
  requestUserAgent: string | null
  requestedAt: number | null
  /** When the user approved the device authorization. */
  approvedAt: number | null
}

/** A family and everything issued from it. */
export interface GrantLineage {
  grant: GrantSummary
  deviceGrant: DeviceGrantRecord | undefined
  accessTokens: { jti: string; issuedAt: number; expiresAt: number; revokedAt: number | null; dpopJkt: string | null }[]
  refreshTokens: { id: string; issuedAt: number; expiresAt: number | null; rotatedAt: number | null; revokedAt: number | null }[]
}

/** Criteria for device authorizations (phishing remediation). */
export interface DeviceGrantFilter {
  ids?: readonly string[]
  clientId?: string
  /** The approving (or denying) user. */
  subject?: string
  /** `created_at >= createdFrom`. */
  createdFrom?: number
  /** `created_at < createdTo`. */
  createdTo?: number
}
