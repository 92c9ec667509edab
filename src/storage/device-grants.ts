/**
 * Storage of device authorizations (RFC 8628 §3) and their polling: the `device_grants` table.
 * Kysely implementation: `kysely/device-grants.ts`.
 */
import type { StorageClass } from '../core/storage-class.js'
import type { TokenBundle } from './token-families.js'

/** Lifecycle of a device authorization (RFC 8628 §3). Expiry is derived from `expiresAt`. */
export type DeviceGrantStatus = 'pending' | 'approved' | 'denied' | 'redeemed'

/** A device authorization request and its decision (RFC 8628 §3.1–3.5). */
export interface DeviceGrantRecord {
  id: string
  /**
   * The `device_code`'s lookup key (protocol/device-code-key.ts `deviceCodeLookupKey`): `<id>.` and
   * the SHA-256 (hex) of the secret for a code `<id>.<secret>`, where `<id>` is this record's `id`;
   * the SHA-256 (hex) of the whole code for one issued before (no `.`). The store keeps the first
   * kind as the hash beside the primary key and finds it by `id` (no index of its own), the second
   * under a unique index; either way it is unique and compared whole.
   */
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

/** Device authorizations: creation, lookup, polling, the decision and the one redemption. */
export interface DeviceGrantStore {
  /**
   * Creates a device authorization. With `storageClass`, also records the client's declared token
   * storage for it (as `StorageClassStore.declareStorageClass` with `declaredAt =
   * grant.createdAt`) in the same call, so both rows are committed together: one commit instead of
   * two on the device authorization path.
   * @throws {StoreConflictError} when the id, the user code or the device code hash is taken
   *   (nothing is written).
   * @throws {TypeError} when `deviceCodeHash` has a `.` and does not start with `<id>.` (a
   *   programming error; nothing is written).
   */
  createDeviceGrant(grant: DeviceGrantRecord, storageClass?: StorageClass): Promise<void>
  /**
   * Finds the device grant whose `deviceCodeHash` is this key (RFC 8628 §3.4: the device code
   * presented at the token endpoint). A key `<id>.<hash>` is found by `<id>` and matches only when
   * the whole key is equal, compared in constant time, so a real id with a wrong secret is simply
   * not found; a key without `.` (a code issued before that format) by the key itself.
   * @returns the record, or undefined when no grant has this key.
   */
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
   * Records the user's decision atomically: only a `pending`, unexpired grant changes, and — with
   * `reviewer` — only when no other reviewer holds a live claim on it (see
   * {@link DeviceGrantStore.claimDeviceGrantReview}); one conditional update.
   * @param reviewer The deciding browser session's claim id (a hash, never the cookie value).
   * @returns true when this call made the decision.
   */
  decideDeviceGrant(
    id: string,
    decision: 'approved' | 'denied',
    subject: string,
    now: number,
    reviewer?: string,
  ): Promise<boolean>
  /**
   * Claims the review of a pending, unexpired grant for `reviewer` until `until` (epoch seconds),
   * atomically (one conditional update): succeeds when the grant is unclaimed, claimed by the same
   * reviewer (the claim is renewed), or the other claim has run out (`claimed until <= now`).
   * @returns true when `reviewer` holds the claim now; false when another does, or the grant is
   *   no longer pending (decided, expired, unknown).
   */
  claimDeviceGrantReview(id: string, reviewer: string, until: number, now: number): Promise<boolean>
  /**
   * Hands every live review claim of `from` to `to` (a browser session rotated by a new sign-in
   * keeps the reviews it has open); one update over the `review_claim` index.
   * @returns How many claims moved.
   */
  moveDeviceGrantReviewClaims(from: string, to: string, now: number): Promise<number>
  /**
   * Redeems an approved, unexpired device grant and writes its tokens, in one transaction.
   * Exactly one caller wins under any concurrency, across instances.
   * @returns true when this call redeemed it; false when another did, or it expired.
   */
  redeemDeviceGrant(id: string, now: number, tokens: TokenBundle): Promise<boolean>
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
}
