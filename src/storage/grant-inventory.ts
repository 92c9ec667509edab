/**
 * Governance queries over token families: the inventory (filters, keyset pages, lineage) and
 * central revocation by filter. Reads `grants` with their device authorization and tokens.
 * Kysely implementation: `kysely/grant-inventory.ts`.
 */
import type { DeviceGrantRecord, DeviceGrantStatus } from './device-grants.js'
import type { GrantRecord } from './token-families.js'

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
  /**
   * The explained policy decision at approval (`device_grant_policy.explanation_json`: both
   * sides' address, country and ASN), or null (no device authorization, or none recorded).
   */
  policyExplanationJson: string | null
}

/** A device authorization with its policy decision: one row of the flow inventory. */
export interface DeviceAuthorizationSummary extends DeviceGrantRecord {
  /** The policy's decision at approval, or null (undecided, or no policy record). */
  policyDecision: 'allow' | 'deny' | 'step_up' | null
  /** The explained decision as JSON (both sides' address, country, ASN), or null. */
  policyExplanationJson: string | null
}

/** Criteria for device authorizations; all given criteria must hold. */
export interface DeviceAuthorizationFilter {
  clientId?: string
  /** The approving (or denying) user. */
  subject?: string
  statuses?: readonly DeviceGrantStatus[]
  /** With `statuses`: only rows whose policy decision is (`deny`) or is not (`not_deny`) a denial. */
  policy?: 'deny' | 'not_deny'
  createdFrom?: number
  createdBefore?: number
  /** `expires_at > expiresAfter` (still within its code life). */
  expiresAfter?: number
  /** `expires_at <= expiredBy` (past its code life). */
  expiredBy?: number
}

/** A family and everything issued from it. */
export interface GrantLineage {
  grant: GrantSummary
  deviceGrant: DeviceGrantRecord | undefined
  accessTokens: { jti: string; issuedAt: number; expiresAt: number; revokedAt: number | null; dpopJkt: string | null }[]
  refreshTokens: { id: string; issuedAt: number; expiresAt: number | null; rotatedAt: number | null; revokedAt: number | null }[]
}

/** Inventory and central revocation of token families. */
export interface GrantInventoryStore {
  /**
   * Revokes every live family matching `filter` in one UPDATE (chunked by 500 ids when `ids` or
   * `deviceGrantIds` are given). Tokens are judged through the join on `grants`, so this takes
   * effect at once for introspection, refresh and the revocation feed.
   * A filter naming only a `subject` (every live family of one user) also writes, in the same
   * transaction and ahead of the per-family `grant.revoked` rows, one `user.revoked` outbox row
   * (none when nothing was revoked).
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
  /**
   * Device authorizations (every outcome: pending, approved, redeemed, denied by the person or
   * refused by policy) with their policy decision, newest first (`createdAt` desc, `id`),
   * keyset-paged like {@link listGrantSummaries}.
   */
  listDeviceAuthorizations(
    filter: DeviceAuthorizationFilter,
    page: { limit: number; after?: { createdAt: number; id: string } },
  ): Promise<DeviceAuthorizationSummary[]>
  /** One family with its lineage: device authorization, access and refresh tokens (oldest first). */
  findGrantLineage(grantId: string): Promise<GrantLineage | undefined>
  /** Distinct subjects and client ids that still have live families (start-up orphan check). */
  listLiveGrantOwners(): Promise<{ subjects: string[]; clientIds: string[] }>
}
