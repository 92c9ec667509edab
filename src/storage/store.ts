/**
 * The storage contract, by domain. Each aggregate has one small interface in its own file
 * (`device-grants.ts`, `token-families.ts`, …) with one Kysely implementation under `kysely/`
 * that runs on SQLite and PostgreSQL; {@link Store} is their composition, for code that needs
 * several. Every adapter passes the same contract suite (`test/store-contract/`).
 *
 * Conventions: times are epoch seconds; secrets (device codes, refresh tokens, opaque access
 * tokens, session ids) arrive already hashed (hex SHA-256) and are stored only as hashes.
 * Methods named as one atomic operation (`registerPoll`, `redeemDeviceGrant`,
 * `rotateRefreshToken`, `decideDeviceGrant`) are a single conditional write or one transaction:
 * correct when several server instances race on the same row.
 *
 * Adding a domain: see `src/storage/README.md`.
 */
import type { AccessReviewStore } from './access-reviews.js'
import type { AuditLogStore } from './audit-log.js'
import type { ConditionalApprovalStore } from './conditional-approval.js'
import type { ConsoleViewStore } from './console-views.js'
import type { DeviceGrantStore } from './device-grants.js'
import type { DpopReplayStore } from './dpop-replay.js'
import type { GovernanceRecordStore } from './governance-records.js'
import type { GrantInventoryStore } from './grant-inventory.js'
import type { KeyStore } from './keys-and-secrets.js'
import type { PeopleStore } from './people.js'
import type { RateCounterStore } from './rate-counters.js'
import type { StorageClassStore } from './storage-classes.js'
import type { RateSlotStore } from './rate-slots.js'
import type { AuthContextStore } from './oidc-context.js'
import type { SignalOutboxStore } from './signals.js'
import type { TokenFamilyStore } from './token-families.js'
import type { TrustedDeviceStore } from './trusted-devices.js'
import type { WebSessionStore } from './web-sessions.js'

export * from './access-reviews.js'
export * from './audit-log.js'
export * from './conditional-approval.js'
export * from './console-views.js'
export * from './device-grants.js'
export * from './dpop-replay.js'
export * from './errors.js'
export * from './governance-records.js'
export * from './grant-inventory.js'
export * from './keys-and-secrets.js'
export * from './people.js'
export * from './rate-counters.js'
export * from './storage-classes.js'
export * from './rate-slots.js'
export * from './oidc-context.js'
export * from './signals.js'
export * from './token-families.js'
export * from './trusted-devices.js'
export * from './web-sessions.js'

/** What every store has whatever its domains: identity, schema, upkeep and shutdown. */
export interface StoreLifecycle {
  /** Adapter name for logs and test titles (`sqlite`, `postgres`). */
  readonly kind: string
  /** Applies pending migrations. Idempotent. */
  migrate(): Promise<void>
  close(): Promise<void>
  /**
   * Deletes rows that can never matter again (expired sessions, counters, jtis, device grants
   * never redeemed and expired more than a day ago); each domain contributes its own deletes.
   */
  purgeExpired(now: number): Promise<void>
}

/** Every storage domain in one object: what `openStore` returns. */
export interface Store
  extends StoreLifecycle,
    DeviceGrantStore,
    TokenFamilyStore,
    ConditionalApprovalStore,
    WebSessionStore,
    RateCounterStore,
    RateSlotStore,
    KeyStore,
    DpopReplayStore,
    AuditLogStore,
    GovernanceRecordStore,
    TrustedDeviceStore,
    GrantInventoryStore,
    StorageClassStore,
    AccessReviewStore,
    ConsoleViewStore,
    PeopleStore,
    SignalOutboxStore,
    AuthContextStore {}
