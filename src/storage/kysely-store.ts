/**
 * The {@link Store} on Kysely: the composition of one implementation per storage domain (under
 * `kysely/`), all sharing one connection, group commit and error mapping ({@link KyselyContext}),
 * so that the SQLite and PostgreSQL adapters write every query once.
 *
 * Adapters (`sqlite.ts`, `postgres.ts`) supply the dialect, an error classifier (unique violation
 * → `StoreConflictError`, lost database → `StoreUnavailableError`) and how to migrate. Nothing
 * outside `src/storage/` imports this file or `kysely/`: code reaches storage through the domain
 * interfaces (`Store`, or one of `DeviceGrantStore`, `TokenFamilyStore`, …) and `openStore`.
 *
 * To add a domain: write its interface (`../<domain>.ts`) and its class (`kysely/<domain>.ts`,
 * constructor `(ctx: KyselyContext)`), add the interface to `Store` in `store.ts`, and add one
 * line `...methodsOf<YourStore>(new KyselyYourStore(ctx))` below. See `README.md`.
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
import { KyselyAccessReviewStore } from './kysely/access-reviews.js'
import type { PeopleStore } from './people.js'
import type { AuthContextStore } from './oidc-context.js'
import type { SignalOutboxStore } from './signals.js'
import { KyselyAuditLogStore } from './kysely/audit-log.js'
import { KyselyConditionalApprovalStore } from './kysely/conditional-approval.js'
import { KyselyConsoleViewStore } from './kysely/console-views.js'
import { KyselyContext, type KyselyStoreOptions } from './kysely/context.js'
import { createPollTimes, KyselyDeviceGrantStore } from './kysely/device-grants.js'
import { KyselyDpopReplayStore } from './kysely/dpop-replay.js'
import { createEphemeral } from './kysely/ephemeral.js'
import { KyselyGovernanceRecordStore } from './kysely/governance-records.js'
import { KyselyGrantInventoryStore } from './kysely/grant-inventory.js'
import { KyselyKeyStore } from './kysely/keys-and-secrets.js'
import { KyselyPeopleStore } from './kysely/people.js'
import { KyselyAuthContextStore } from './kysely/oidc-context.js'
import { KyselySignalOutboxStore } from './kysely/signals.js'
import { KyselyRateCounterStore } from './kysely/rate-counters.js'
import { KyselyStorageClassStore } from './kysely/storage-classes.js'
import { KyselyRateSlotStore } from './kysely/rate-slots.js'
import { KyselyTokenFamilyStore, TokenWriter } from './kysely/token-families.js'
import { KyselyTrustedDeviceStore } from './kysely/trusted-devices.js'
import { KyselyWebSessionStore } from './kysely/web-sessions.js'
import type { RateCounterStore } from './rate-counters.js'
import type { StorageClassStore } from './storage-classes.js'
import type { RateSlotStore } from './rate-slots.js'
import type { Store, StoreLifecycle } from './store.js'
import type { TokenFamilyStore } from './token-families.js'
import type { TrustedDeviceStore } from './trusted-devices.js'
import type { WebSessionStore } from './web-sessions.js'

export type { KyselyStoreOptions, StoreErrorKind } from './kysely/context.js'
export type { DevicegateDatabase } from './kysely/tables.js'

/**
 * Builds the store of one connection: every domain implementation on one {@link KyselyContext}.
 * Domains that delete expired rows or keep state in memory register that with the context
 * (`onPurge`, `onClose`); `purgeExpired` and `close` run those steps in registration order.
 */
export function createKyselyStore(options: KyselyStoreOptions): Store {
  const ctx = new KyselyContext(options)
  const tokens = new TokenWriter(ctx.db)
  // Poll times and DPoP jtis stay off the durable commit path: in memory where one process owns
  // the database (SQLite), else in the shared ephemeral store (UNLOGGED tables or Redis).
  // With Redis, the fixed-window rate-limit counters (sign-in, TOTP) are there as well.
  const { pollTimes, ephemeral, counters } =
    options.pollTimes === 'memory'
      ? { pollTimes: createPollTimes(ctx, options), ephemeral: undefined, counters: undefined }
      : createEphemeral(ctx, options.ephemeral ?? { kind: 'unlogged' }, options.onBackgroundError ?? (() => {}))
  const lifecycle: StoreLifecycle = {
    kind: options.kind,
    migrate: () => ctx.guard(() => options.migrate(ctx.db)),
    close: async () => {
      await ctx.runCloseHooks()
      await options.beforeClose?.()
      await ctx.db.destroy()
    },
    purgeExpired: (now) => ctx.purge(now),
  }
  // Purge order follows construction order: poll entries (PostgreSQL), sessions, counters, DPoP jtis, device grants.
  return {
    ...lifecycle,
    ...methodsOf<WebSessionStore>(new KyselyWebSessionStore(ctx)),
    ...rateCounters(counters, new KyselyRateCounterStore(ctx)),
    ...methodsOf<RateSlotStore>(new KyselyRateSlotStore(ctx)),
    ...methodsOf<DpopReplayStore>(new KyselyDpopReplayStore(ctx, ephemeral)),
    ...methodsOf<DeviceGrantStore>(new KyselyDeviceGrantStore(ctx, tokens, pollTimes, options.pendingGrants)),
    ...methodsOf<TokenFamilyStore>(new KyselyTokenFamilyStore(ctx, tokens)),
    ...methodsOf<ConditionalApprovalStore>(new KyselyConditionalApprovalStore(ctx)),
    ...methodsOf<KeyStore>(new KyselyKeyStore(ctx)),
    ...methodsOf<AuditLogStore>(new KyselyAuditLogStore(ctx)),
    ...methodsOf<GovernanceRecordStore>(new KyselyGovernanceRecordStore(ctx)),
    ...methodsOf<TrustedDeviceStore>(new KyselyTrustedDeviceStore(ctx)),
    ...methodsOf<GrantInventoryStore>(new KyselyGrantInventoryStore(ctx, pollTimes)),
    ...methodsOf<StorageClassStore>(new KyselyStorageClassStore(ctx)),
    ...methodsOf<AccessReviewStore>(new KyselyAccessReviewStore(ctx)),
    ...methodsOf<ConsoleViewStore>(new KyselyConsoleViewStore(ctx)),
    ...methodsOf<PeopleStore>(new KyselyPeopleStore(ctx)),
    ...methodsOf<SignalOutboxStore>(new KyselySignalOutboxStore(ctx)),
    ...methodsOf<AuthContextStore>(new KyselyAuthContextStore(ctx)),
  }
}

/**
 * The rate counters: those of the ephemeral store when it keeps them (Redis), else the table's. The
 * table's store is built either way, so its purge step keeps its place.
 */
function rateCounters(ephemeral: RateCounterStore | undefined, table: KyselyRateCounterStore): RateCounterStore {
  const source = ephemeral ?? table
  return { incrementCounter: source.incrementCounter.bind(source), readCounter: source.readCounter.bind(source) }
}

/**
 * The public methods of a domain implementation, bound to it, as an own-property object that can
 * be spread into the composition. Only the class's own prototype methods are taken (`#private`
 * members never are), so a domain class exposes exactly its interface.
 *
 * @throws {TypeError} when the object has no public method (a wrong argument).
 */
export function methodsOf<T extends object>(impl: T): T {
  const methods: Record<string, unknown> = {}
  const proto = Object.getPrototypeOf(impl) as object
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (name === 'constructor') continue
    const value = (impl as Record<string, unknown>)[name]
    if (typeof value === 'function') methods[name] = value.bind(impl)
  }
  if (Object.keys(methods).length === 0) throw new TypeError('methodsOf: no public method')
  return methods as T
}
