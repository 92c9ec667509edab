/**
 * SQLite adapter: the embedded default. One better-sqlite3 connection per store; Kysely
 * serialises queries and transactions on it, and SQLite's file locks (with `busy_timeout`)
 * serialise writers across processes sharing the file.
 */
import { mkdir } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, SqliteDialect } from 'kysely'
import { KyselyStore, type DevicegateDatabase, type StoreErrorKind } from './kysely-store.js'
import { migrateToLatest } from './migrations.js'
import { StoreUnavailableError, type Store } from './store.js'

/** How long a writer waits for another connection's lock before failing. Milliseconds. */
const BUSY_TIMEOUT_MS = 5_000

/**
 * Opens (creating it and its parent directory if needed) a SQLite database file as a
 * {@link Store}. Does not migrate; call `migrate()` (or use `openStore`).
 *
 * Durability: `journal_mode=WAL` with `synchronous=NORMAL`. A committed transaction survives a
 * crash of the process, but the last transactions before an operating-system crash or power
 * loss may be lost (the database itself stays consistent). That trade buys much faster commits;
 * use PostgreSQL where that loss is not acceptable. Also set: `busy_timeout` (5 s) and
 * `foreign_keys=ON`.
 *
 * @param filePath Path of the database file, or `:memory:` for a private in-memory database.
 * @throws {StoreUnavailableError} when the file cannot be created or opened.
 */
export async function createSqliteStore(filePath: string): Promise<Store> {
  let database: Database.Database
  try {
    if (filePath !== ':memory:') await mkdir(dirname(resolve(filePath)), { recursive: true })
    database = new Database(filePath)
    database.pragma('journal_mode = WAL')
    database.pragma('synchronous = NORMAL')
    database.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    database.pragma('foreign_keys = ON')
  } catch (error) {
    throw new StoreUnavailableError(`cannot open SQLite database ${filePath}`, { cause: error })
  }
  const db = new Kysely<DevicegateDatabase>({ dialect: new SqliteDialect({ database: withStatementCache(database) }) })
  return new KyselyStore({
    kind: 'sqlite',
    db,
    classifyError: classifySqliteError,
    migrate: (kdb) => migrateToLatest(kdb),
  })
}

/** Most distinct SQL texts kept prepared. The store issues a few dozen; the bound guards misuse. */
const STATEMENT_CACHE_SIZE = 500

/**
 * Kysely's SQLite driver prepares every statement on every call, which profiles show as a large
 * share of each request. Kysely compiles the same query shape to the same SQL text, so prepared
 * statements are cached by that text and reused (better-sqlite3 statements are reusable and the
 * connection is used synchronously, one statement at a time).
 */
function withStatementCache(database: Database.Database): { close(): void; prepare(sql: string): Database.Statement } {
  const cache = new Map<string, Database.Statement>()
  return {
    close: () => {
      cache.clear()
      database.close()
    },
    prepare: (sql) => {
      let statement = cache.get(sql)
      if (statement === undefined) {
        statement = database.prepare(sql)
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!)
        cache.set(sql, statement)
      }
      return statement
    },
  }
}

/** Sorts better-sqlite3 errors by their (extended) result code. */
export function classifySqliteError(error: unknown): StoreErrorKind {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return undefined
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return 'conflict'
  }
  // Lock not obtained within busy_timeout, or the file became unusable.
  if (
    code.startsWith('SQLITE_BUSY') ||
    code.startsWith('SQLITE_LOCKED') ||
    code.startsWith('SQLITE_CANTOPEN') ||
    code.startsWith('SQLITE_IOERR') ||
    code === 'SQLITE_FULL' ||
    code.startsWith('SQLITE_READONLY')
  ) {
    return 'unavailable'
  }
  return undefined
}
