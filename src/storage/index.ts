/**
 * Storage entry point: opens the configured {@link Store} and brings its schema up to date.
 */
import { createPostgresStore, type PostgresStoreOptions } from './postgres.js'
import { createSqliteStore } from './sqlite.js'
import { StoreUnavailableError, type Store } from './store.js'

export { createPostgresStore, POSTGRES_POOL_DEFAULTS, type PostgresStoreOptions } from './postgres.js'
export { createSqliteStore } from './sqlite.js'
export * from './store.js'

/**
 * Opens a store by URL and applies pending migrations.
 *
 * - `postgres://…` or `postgresql://…` → PostgreSQL (pooled; several instances may share it).
 * - `sqlite:PATH`, `sqlite://PATH` or a plain file path → SQLite (created if missing).
 *
 * @param pool PostgreSQL pool settings (defaults in `POSTGRES_POOL_DEFAULTS`) and where its ephemeral
 *   state lives (`ephemeral`, default UNLOGGED tables); ignored for SQLite.
 * @throws {StoreUnavailableError} when the database cannot be reached or opened; for PostgreSQL
 *   the message starts with the URL, password hidden.
 * @throws {TypeError} when the URL is empty or names another scheme.
 */
export async function openStore(url: string, pool: PostgresStoreOptions = {}): Promise<Store> {
  const store = await createStoreFor(url, pool)
  try {
    await store.migrate()
  } catch (error) {
    await store.close().catch(() => {})
    if (error instanceof StoreUnavailableError && store.kind === 'postgres') {
      throw new StoreUnavailableError(`${redactUrl(url)}: ${error.message}`, { cause: error })
    }
    throw error
  }
  return store
}

/** The URL with its password (and any `password` parameter) replaced by `***`, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    if (u.searchParams.has('password')) u.searchParams.set('password', '***')
    return decodeURIComponent(u.toString())
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@')
  }
}

async function createStoreFor(url: string, pool: PostgresStoreOptions): Promise<Store> {
  if (/^postgres(ql)?:\/\//i.test(url)) return createPostgresStore(url, pool)
  if (/^sqlite:/i.test(url)) {
    const path = url.replace(/^sqlite:(\/\/)?/i, '')
    if (path === '') throw new TypeError(`storage url: missing SQLite file path in "${url}"`)
    return createSqliteStore(path)
  }
  if (url === '') throw new TypeError('storage url: empty')
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw new TypeError(`storage url: unsupported scheme in "${url.replace(/\/\/[^@/]*@/, '//…@')}"`)
  }
  return createSqliteStore(url)
}
