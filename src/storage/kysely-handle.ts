/**
 * The Kysely handle behind a {@link Store}, for domain storage modules that keep their own
 * queries (the console's read models, `src/console/storage.ts`) on the same connection, pool and
 * SQLite group commit as the store.
 *
 * TODO(storage-split): the split introduces one shared connection/transaction helper per store;
 * when it lands, domain modules take their handle from it and this registry goes away.
 */
import type { Kysely } from 'kysely'
import type { DevicegateDatabase } from './kysely-store.js'
import type { Store } from './store.js'

const handles = new WeakMap<Store, Kysely<DevicegateDatabase>>()

/** Records the Kysely instance an adapter built `store` on (called by the adapters only). */
export function attachKysely(store: Store, db: Kysely<DevicegateDatabase>): Store {
  handles.set(store, db)
  return store
}

/**
 * The Kysely instance of a store opened by `openStore` / the adapters.
 * @throws {TypeError} for a store built some other way (a test double).
 */
export function kyselyOf(store: Store): Kysely<DevicegateDatabase> {
  const db = handles.get(store)
  if (db === undefined) throw new TypeError(`store "${store.kind}" has no Kysely handle`)
  return db
}
