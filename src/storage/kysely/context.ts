/**
 * The one connection every Kysely storage domain shares, and what each call goes through: the
 * wait for the group commit (SQLite) and the mapping of driver errors to the store's stable
 * errors. Domains also register here what they do at close and at purge time.
 */
import type { Kysely } from 'kysely'
import type { EphemeralBackend } from '../ephemeral.js'
import type { PendingGrantCache } from '../pending-grant-cache.js'
import { StoreConflictError, StoreUnavailableError } from '../errors.js'
import type { DevicegateDatabase } from './tables.js'

/** How an adapter sorts a driver error. */
export type StoreErrorKind = 'conflict' | 'unavailable' | undefined

/** What an adapter (sqlite.ts, postgres.ts) supplies to build a store. */
export interface KyselyStoreOptions {
  kind: string
  db: Kysely<DevicegateDatabase>
  /** Sorts driver errors; anything unclassified is rethrown unchanged. */
  classifyError(error: unknown): StoreErrorKind
  /** Applies pending migrations (dialect-specific bookkeeping). */
  migrate(db: Kysely<DevicegateDatabase>): Promise<void>
  /**
   * Where RFC 8628 §3.5 poll times are decided: `memory` (one process owns the database: decided
   * in memory and written back in batches, see `InMemoryPollTimes`) or `ephemeral` (several
   * instances: in the shared ephemeral store, see `../ephemeral.ts`). Default `ephemeral`.
   */
  pollTimes?: 'memory' | 'ephemeral'
  /**
   * With `pollTimes: 'ephemeral'`: where the ephemeral state (poll times, DPoP jtis) lives.
   * Default: UNLOGGED tables (PostgreSQL only).
   */
  ephemeral?: EphemeralBackend
  /**
   * When the adapter commits writes in groups: resolves once the writes issued so far are
   * committed (undefined when none are pending). Every store call waits for it before it returns.
   */
  settled?: () => Promise<void> | undefined
  /**
   * Several instances (PostgreSQL): each instance's cache of pending device grants, kept true by
   * change notifications (`../pending-grant-cache.ts`), so that a poll of a code known to be
   * pending reads nothing. Absent: every poll reads its device grant.
   */
  pendingGrants?: PendingGrantCache
  /** Runs before the connection closes (e.g. stops a checkpointer). */
  beforeClose?: () => Promise<void>
  /** Receives failures of background writes (poll write-back); default: ignored. */
  onBackgroundError?: (error: unknown) => void
}

/** The shared connection and call wrapper of one store; one per `createKyselyStore`. */
export class KyselyContext {
  /** Adapter name (`sqlite`, `postgres`); a few statements differ by dialect. */
  readonly kind: string
  readonly db: Kysely<DevicegateDatabase>
  readonly #classify: (error: unknown) => StoreErrorKind
  readonly #settled: (() => Promise<void> | undefined) | undefined
  readonly #closeHooks: (() => Promise<void>)[] = []
  readonly #purgeSteps: ((now: number) => Promise<void>)[] = []

  constructor(options: Pick<KyselyStoreOptions, 'kind' | 'db' | 'classifyError' | 'settled'>) {
    this.kind = options.kind
    this.db = options.db
    this.#classify = options.classifyError
    this.#settled = options.settled
  }

  /**
   * Runs `fn`, then waits until its writes are committed (group commit, see
   * `KyselyStoreOptions.settled`); turns driver errors into the store's stable error types.
   */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn()
      // Most reads find no write waiting for its commit: no turn spent awaiting nothing.
      const settled = this.#settled?.()
      if (settled !== undefined) await settled
      return result
    } catch (error) {
      switch (this.#classify(error)) {
        case 'conflict':
          throw new StoreConflictError(errorMessage(error), { cause: error })
        case 'unavailable':
          throw new StoreUnavailableError(errorMessage(error), { cause: error })
        default:
          throw error
      }
    }
  }

  /** Registers work for `close()`, run in registration order before the connection goes (e.g. a flush). */
  onClose(hook: () => Promise<void>): void {
    this.#closeHooks.push(hook)
  }

  /** Registers deletes for `purgeExpired(now)`, run in registration order inside one guarded call. */
  onPurge(step: (now: number) => Promise<void>): void {
    this.#purgeSteps.push(step)
  }

  /** Runs the close hooks. */
  async runCloseHooks(): Promise<void> {
    for (const hook of this.#closeHooks) await hook()
  }

  /** Runs every purge step in one guarded call. */
  purge(now: number): Promise<void> {
    return this.guard(async () => {
      for (const step of this.#purgeSteps) await step(now)
    })
  }
}

function errorMessage(error: unknown): string {
  // Node reports a failed connect to several addresses as an AggregateError with no message.
  if (error instanceof AggregateError && !error.message) return error.errors.map(errorMessage).join('; ')
  return error instanceof Error ? error.message : String(error)
}
