/**
 * The stable errors every storage domain throws, whatever the database (SQLite, PostgreSQL).
 * Adapters sort driver errors into these (see `kysely/context.ts`).
 */

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
