/**
 * Storage entry point: opens the configured {@link Store} and brings its schema up to date.
 */
import { createPostgresStore } from './postgres.js'
import { createSqliteStore } from './sqlite.js'
import type { Store } from './store.js'

export { createPostgresStore } from './postgres.js'
export { createSqliteStore } from './sqlite.js'
export * from './store.js'

/**
 * Opens a store by URL and applies pending migrations.
 *
 * - `postgres://…` or `postgresql://…` → PostgreSQL (pooled; several instances may share it).
 * - `sqlite:PATH`, `sqlite://PATH` or a plain file path → SQLite (created if missing).
 *
 * @throws {StoreUnavailableError} when the database cannot be reached or opened.
 * @throws {TypeError} when the URL is empty or names another scheme.
 */
export async function openStore(url: string): Promise<Store> {
  const store = await createStoreFor(url)
  try {
    await store.migrate()
  } catch (error) {
    await store.close().catch(() => {})
    throw error
  }
  return store
}

async function createStoreFor(url: string): Promise<Store> {
  if (/^postgres(ql)?:\/\//i.test(url)) return createPostgresStore(url)
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
