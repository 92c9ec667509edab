/**
 * Storage of token families (RFC 9700 §4.14.2): grants, their access tokens (RFC 9068 JWT or
 * opaque) and their rotating refresh tokens — the `grants`, `access_tokens` and `refresh_tokens`
 * tables. Kysely implementation: `kysely/token-families.ts`.
 */
import type { NewOutboxEvent } from './signals.js'

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
  /**
   * The family's current DPoP key: the `cnf.jkt` (RFC 9449 §6) of its latest access token, null
   * when that one is a bearer token. Set at issuance and moved at a refresh that binds the new
   * access token to another key or to none (a confidential client rotating its key, RFC 9449 §5;
   * a public client's unbound family bound by its first proof). Read by the inventory, console,
   * reviews and compliance evidence, and by device retirement (`revokeGrantsByDpopJkt`).
   */
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
  /** Set when the token was exchanged; a second use is reuse (outside the retry grace). */
  rotatedAt: number | null
  revokedAt: number | null
  dpopJkt: string | null
  /** Thumbprint of the DPoP key of the request that rotated this token; null without one. Absent: not rotated. */
  rotatedJkt?: string | null
  /** Id of the refresh token that replaced this one at its rotation (or its retry). */
  replacedBy?: string | null
}

/** A token with the revocation time of its family, read in one query. */
export type WithGrantState<T> = T & { grantRevokedAt: number | null }

/** What `redeemDeviceGrant` and {@link TokenFamilyStore.issueTokens} write together. */
export interface TokenBundle {
  grant: GrantRecord
  accessToken: AccessTokenRecord
  refreshToken?: RefreshTokenRecord
}

/** What replaces a rotated refresh token ({@link TokenFamilyStore.rotateRefreshToken}). */
export interface RotatedTokens {
  accessToken: AccessTokenRecord
  refreshToken: RefreshTokenRecord
  /**
   * The family's new current DPoP key (the new access token's `cnf.jkt`, null = bearer), when it
   * differs from the recorded one; absent: unchanged (the usual case, no extra write).
   */
  familyDpopJkt?: string | null
  /**
   * An outbox event (signals, e.g. CAEP token-claims-change) written in the rotating transaction:
   * committed with the rotation or not at all.
   */
  signal?: NewOutboxEvent
}

/** Outcome of {@link TokenFamilyStore.rotateRefreshToken}. */
export type RotationResult =
  /** `retried`: the token had been rotated; this was a retry within the grace (see `RetryGrace`). */
  | { ok: true; retried: boolean }
  | { ok: false; reason: 'reused' | 'revoked' | 'expired' | 'unknown' }

/**
 * When a presentation of an already rotated refresh token is a retry rather than reuse: the same
 * DPoP key as the rotating request (`dpopJkt`, null = none; callers allow null only for
 * confidential clients, whose authentication constrains the sender), within `graceSeconds` of the
 * rotation, while the token that replaced it is still unused.
 */
export interface RetryGrace {
  dpopJkt: string | null
  /** Seconds after the rotation during which a retry is answered; 0 = never. */
  graceSeconds: number
}

/**
 * What the revocation feed reports since a given time: access tokens revoked one by one or with
 * their family, still unexpired, by `jti` (a JWT carries no family id), and revoked family ids.
 */
export interface RevocationsSince {
  accessTokens: { jti: string; revokedAt: number; expiresAt: number }[]
  grants: { id: string; revokedAt: number }[]
}

/** Token families: issuance, lookup by token hash, rotation, revocation and the revocation feed. */
export interface TokenFamilyStore {
  /** Writes a new grant with its first tokens (client_credentials). */
  issueTokens(tokens: TokenBundle): Promise<void>
  findGrant(id: string): Promise<GrantRecord | undefined>
  findAccessTokenByHash(tokenHash: string): Promise<WithGrantState<AccessTokenRecord> | undefined>
  findRefreshTokenByHash(tokenHash: string): Promise<WithGrantState<RefreshTokenRecord> | undefined>
  /**
   * A refresh token with its whole family, in one read (the refresh-token grant needs both):
   * `token` is what {@link findRefreshTokenByHash} returns, `grant` what {@link findGrant} returns
   * for its `grantId`. Undefined when no refresh token has that hash.
   */
  findRefreshTokenWithGrant(tokenHash: string): Promise<{ token: WithGrantState<RefreshTokenRecord>; grant: GrantRecord } | undefined>
  /**
   * Exchanges a refresh token atomically: marks it rotated (with the request's DPoP key and its
   * successor's id) only when it is live (not rotated, not revoked, not expired, family not
   * revoked), then writes the new access and refresh token.
   *
   * A token already rotated is a retry when `grace` allows it ({@link RetryGrace}): in the same
   * transaction its unused successor is revoked, the new tokens replace it, and the result is
   * `{ ok: true, retried: true }` — concurrent retries race on one conditional update, so one wins.
   * Otherwise it yields `reused` and writes nothing (the caller revokes the family).
   *
   * With `next.familyDpopJkt` (given only when the key changes), the family's current key
   * ({@link GrantRecord.dpopJkt}) is set to it in the same transaction as the new tokens.
   *
   * `next.signal`, when given, is an outbox event (signals, e.g. CAEP token-claims-change)
   * written in the rotating transaction: committed with the rotation or not at all. A retry
   * within the grace writes none (the first rotation's event stands for the change).
   */
  rotateRefreshToken(
    oldTokenHash: string,
    now: number,
    next: RotatedTokens,
    grace?: RetryGrace,
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
  /**
   * Revokes every live token family of one user at one client except `keepGrantId` (the
   * `single_session` constraint of conditional approval) in one UPDATE. @returns the number revoked.
   */
  revokeOtherSessions(subject: string, clientId: string, keepGrantId: string, now: number): Promise<number>
  /**
   * Records the last use of a family unless one was recorded less than `minIntervalSeconds` ago
   * (one conditional UPDATE). A null `ip` keeps the address recorded before. @returns true when
   * this call wrote.
   */
  touchGrant(grantId: string, now: number, ip: string | null, minIntervalSeconds: number): Promise<boolean>
  /**
   * Revocation feed (resource servers): access tokens that were revoked (themselves or through
   * their family) at or after `since` and are still unexpired at `now`, and families revoked at
   * or after `since`.
   */
  listRevocationsSince(since: number, now: number): Promise<RevocationsSince>
}
