/**
 * SQLite adapter: the embedded default. One better-sqlite3 connection per store; Kysely
 * serialises queries and transactions on it, and SQLite's file locks (with `busy_timeout`)
 * serialise writers across processes sharing the file.
 */
import { chmod, mkdir, open } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, SqliteDialect, type DialectAdapter } from 'kysely'
import { createKyselyStore, type DevicegateDatabase, type StoreErrorKind } from './kysely-store.js'
import { DIRECT_EXECUTOR, type DirectExecutor } from './kysely/prepared.js'
import { migrateToLatest } from './migrations.js'
import { startCheckpointer, WAL_SIZE_LIMIT_BYTES, type Checkpointer } from './sqlite-checkpointer.js'
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
 * use PostgreSQL where that loss is not acceptable. The other connection settings are listed at
 * {@link configureSqliteConnection}. WAL checkpoints run in a worker thread, off the request path
 * ({@link startCheckpointer}).
 *
 * One process serves from the file (several instances need PostgreSQL), so RFC 8628 §3.5 poll
 * times are decided in memory and written back within a second (`pollTimes: 'memory'`); other
 * processes (the CLI) may still open the file.
 *
 * @param filePath Path of the database file, or `:memory:` for a private in-memory database.
 * @throws {StoreUnavailableError} when the file cannot be created or opened.
 */
export async function createSqliteStore(filePath: string): Promise<Store> {
  let database: Database.Database
  let checkpointer: Checkpointer | undefined
  try {
    if (filePath !== ':memory:') await createPrivateDatabaseFile(filePath)
    database = new Database(filePath)
    configureSqliteConnection(database, filePath)
    if (filePath !== ':memory:') {
      // If the worker cannot checkpoint, SQLite's own checkpoints (1,000 pages) take over.
      checkpointer = startCheckpointer(database.name, BUSY_TIMEOUT_MS, () => database.pragma('wal_autocheckpoint = 1000'))
    }
  } catch (error) {
    throw new StoreUnavailableError(`cannot open SQLite database ${filePath}`, { cause: error })
  }
  // Starts the WAL over when the checkpointer asks (see sqlite-checkpointer.ts): one checkpoint
  // here, right after a commit, of the few frames written since the worker's last pass.
  const group = new GroupCommit(database, () => {
    if (!checkpointer?.resetDue()) return
    checkpointer.resetDone()
    database.pragma('wal_checkpoint(PASSIVE)')
  })
  const handle = driverHandle(database, group)
  const db = new Kysely<DevicegateDatabase>({ dialect: new DirectSqliteDialect(database, handle, group) })
  return createKyselyStore({
    kind: 'sqlite',
    db,
    classifyError: classifySqliteError,
    migrate: (kdb) => migrateToLatest(kdb),
    pollTimes: 'memory',
    settled: () => group.settled(),
    ...(checkpointer ? { beforeClose: () => checkpointer.close() } : {}),
  })
}

/**
 * Applies the serving connection's settings to a freshly opened `database` (`filePath` as given
 * to {@link createSqliteStore}; `:memory:` skips the WAL settings, which need a file):
 *
 * - `journal_mode=WAL`, `synchronous=NORMAL`: see {@link createSqliteStore} for the durability.
 * - `busy_timeout` = 5,000 ms: how long a writer waits for another process's lock (the CLI).
 * - `foreign_keys=ON`.
 * - `temp_store=MEMORY`: statement journals of the savepoints that nest in the shared transaction
 *   ({@link GroupCommit}) stay in memory instead of spilling to a temporary file (created, written
 *   and unlinked per batch); they only serve to roll a savepoint back, never to recover a commit,
 *   so durability is unchanged.
 * - `cache_size` stays SQLite's default (2,000 KiB). 32 MiB removed the page reads of poll lookups
 *   replayed in random order over 100,000 pending grants, but under the bench's polling (codes in
 *   the order they were created, as clients polling each at its interval come) the serving
 *   thread's read system calls did not measurably change, and it costs up to 32 MiB of memory.
 * - With a file: `journal_size_limit` = {@link WAL_SIZE_LIMIT_BYTES} and `wal_autocheckpoint=0`
 *   (checkpoints run in a worker thread, {@link startCheckpointer}).
 *
 * The exclusive `locking_mode` is not set: other processes (the CLI) must still open the file.
 *
 * @throws the driver's error when a PRAGMA fails (e.g. the file is not a database).
 */
export function configureSqliteConnection(database: Database.Database, filePath: string): void {
  database.pragma('journal_mode = WAL')
  database.pragma('synchronous = NORMAL')
  database.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
  database.pragma('foreign_keys = ON')
  database.pragma('temp_store = MEMORY')
  if (filePath !== ':memory:') {
    database.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`)
    database.pragma('wal_autocheckpoint = 0')
  }
}

/**
 * Creates the database file (and missing directories) private to the server's user before SQLite
 * opens it: new directories 0700, the file 0600. SQLite's unix VFS gives the `-wal`
 * and `-shm` files the database file's permissions, so they are 0600 as well; files left 0644 by
 * an older version are tightened to 0600 here. An existing directory's mode is left alone.
 */
async function createPrivateDatabaseFile(filePath: string): Promise<void> {
  await mkdir(dirname(resolve(filePath)), { recursive: true, mode: 0o700 })
  await (await open(filePath, 'a', 0o600)).close()
  for (const path of [filePath, `${filePath}-wal`, `${filePath}-shm`]) {
    await chmod(path, 0o600).catch((err: NodeJS.ErrnoException) => {
      // Missing (no WAL yet) or another user's file (a CLI run as someone else): leave it.
      if (err.code !== 'ENOENT' && err.code !== 'EPERM') throw err
    })
  }
}

/** Most distinct SQL texts kept prepared. The store issues a few dozen; the bound guards misuse. */
const STATEMENT_CACHE_SIZE = 500

/**
 * Group commit.
 *
 * A commit costs as much as the writes it commits (the changed pages go to the WAL once per
 * transaction), so committing each request's writes alone was most of the cost of a device
 * authorization or a refresh. Instead, the first write of a turn of the event loop opens a
 * shared transaction; every write of that turn joins it, and it commits at the end of the turn
 * (`setImmediate`). The store waits for that commit before it answers ({@link settled}), so a
 * caller is told of success only once its write is committed: durability is the same as
 * committing alone.
 *
 * - A failing statement is undone alone (SQLite rolls back the statement, not the transaction).
 * - An explicit transaction (Kysely's `begin` … `commit` / `rollback`) runs as a SAVEPOINT in the
 *   shared transaction: atomic and isolated as before (Kysely holds the connection for its
 *   duration), committed with the others. The shared commit waits until it is released.
 * - If the commit itself fails, every write of the batch reports the error.
 *
 * Reads of the hot path (prepared statements, see {@link beforeRead}) share a read transaction
 * the same way: outside a transaction every statement is its own read transaction, and starting
 * and ending one costs SQLite file-lock system calls (two `fcntl` and a `stat` per statement) —
 * measured, about 40 % of an introspection's token lookup. The first such read of a turn opens
 * a read-only batch, later reads of the turn join it, and it ends at the end of the turn. Reads
 * never wait for it ({@link settled} is for writes). A write in the same turn first ends the
 * read-only batch and opens a write batch, so the write lock is taken as before (with
 * `busy_timeout`, never as an upgrade of an older snapshot that another process may have
 * outdated: SQLite would refuse that at once with SQLITE_BUSY_SNAPSHOT).
 */
class GroupCommit {
  readonly #database: Database.Database
  readonly #statements: Record<'begin' | 'commit' | 'rollback' | 'savepoint' | 'release' | 'rollbackTo', Database.Statement>
  #batch: { done: Promise<void>; resolve: () => void; reject: (error: unknown) => void } | undefined
  /** A read-only batch is open: `BEGIN` issued, no write yet, nobody waiting on it. */
  #readOnly = false
  /** The end-of-turn commit is scheduled (for a write batch or a read-only one). */
  #commitScheduled = false
  #explicitOpen = false

  readonly #afterCommit: () => void

  /** An explicit transaction (savepoint) is open; the shared commit waits for it. */
  get explicitOpen(): boolean {
    return this.#explicitOpen
  }

  /** @param afterCommit Runs after each successful shared commit (WAL upkeep). */
  constructor(database: Database.Database, afterCommit: () => void = () => {}) {
    this.#database = database
    this.#afterCommit = afterCommit
    this.#statements = {
      begin: database.prepare('BEGIN'),
      commit: database.prepare('COMMIT'),
      rollback: database.prepare('ROLLBACK'),
      savepoint: database.prepare('SAVEPOINT devicegate_tx'),
      release: database.prepare('RELEASE devicegate_tx'),
      rollbackTo: database.prepare('ROLLBACK TO devicegate_tx'),
    }
  }

  /**
   * Called before a read of the hot path outside an explicit transaction: joins the open batch
   * (write or read-only) or opens a read-only one, ended at the end of the turn.
   */
  beforeRead(): void {
    if (this.#batch !== undefined || this.#readOnly || this.#database.inTransaction) return
    this.#statements.begin.run()
    this.#readOnly = true
    this.#scheduleCommit()
  }

  /** Called before a statement that writes: joins the open batch or opens one. */
  beforeWrite(): void {
    if (this.#readOnly) {
      // End the read-only snapshot first: the write then takes the write lock afresh.
      this.#readOnly = false
      if (this.#database.inTransaction) this.#statements.commit.run()
    }
    if (this.#batch !== undefined) {
      if (this.#database.inTransaction) return
      // SQLite rolled the whole transaction back (disk full, I/O error): its writes are lost, and
      // every caller waiting on it hears so; this write starts a new batch.
      this.#settle(new Error('the shared SQLite transaction was rolled back by an earlier error'))
    }
    this.#statements.begin.run()
    let resolve!: () => void
    let reject!: (error: unknown) => void
    const done = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    done.catch(() => {}) // reported to each waiter through settled(); never unhandled
    this.#batch = { done, resolve, reject }
    this.#scheduleCommit()
  }

  #scheduleCommit(): void {
    if (this.#commitScheduled) return
    this.#commitScheduled = true
    setImmediate(() => {
      this.#commitScheduled = false
      this.commit()
    })
  }

  /** Kysely's `begin`: a savepoint in the shared transaction. */
  beginExplicit(): void {
    this.beforeWrite()
    this.#statements.savepoint.run()
    this.#explicitOpen = true
  }

  /** Kysely's `commit` (`rollback` when `undo`): ends the savepoint. */
  endExplicit(undo: boolean): void {
    this.#explicitOpen = false
    if (undo) this.#statements.rollbackTo.run()
    this.#statements.release.run()
  }

  /** Commits the open batch; while an explicit transaction is open, tries again next turn. */
  commit(): void {
    if (this.#readOnly) {
      // Nothing written: ending the read transaction cannot lose anything; a failure (none is
      // expected) leaves SQLite to end it.
      this.#readOnly = false
      try {
        if (this.#database.inTransaction) this.#statements.commit.run()
      } catch {
        // see above
      }
      return
    }
    if (this.#batch === undefined) return
    if (this.#explicitOpen) {
      this.#scheduleCommit()
      return
    }
    try {
      this.#statements.commit.run()
    } catch (error) {
      try {
        if (this.#database.inTransaction) this.#statements.rollback.run()
      } finally {
        this.#settle(error)
      }
      return
    }
    this.#settle()
    try {
      this.#afterCommit()
    } catch {
      // WAL upkeep failing does not touch committed data; the checkpointer tries again.
    }
  }

  /** Ends the open batch: its waiters resolve, or reject with `error`. */
  #settle(error?: unknown): void {
    const batch = this.#batch
    this.#batch = undefined
    if (error === undefined) batch?.resolve()
    else batch?.reject(error)
  }

  /** Resolves when the writes issued so far are committed; undefined when none are pending. */
  settled(): Promise<void> | undefined {
    return this.#batch?.done
  }
}

/**
 * The better-sqlite3 handle Kysely's driver sees. Kysely's SQLite driver prepares every statement
 * on every call, which profiles show as a large share of each request; Kysely compiles the same
 * query shape to the same SQL text, so prepared statements are cached by that text and reused
 * (better-sqlite3 statements are reusable and the connection is used synchronously, one statement
 * at a time). Writes and Kysely's transaction statements go through {@link GroupCommit}.
 */
type DriverHandle = { close(): void; prepare(sql: string): Database.Statement }

function driverHandle(database: Database.Database, group: GroupCommit): DriverHandle {
  const cache = new Map<string, Database.Statement>()
  const control = (run: () => void) => ({ reader: false, run: () => (run(), { changes: 0, lastInsertRowid: 0 }) }) as unknown as Database.Statement
  const wrap = (sql: string): Database.Statement => {
    // Transaction control counts as read-only to SQLite (sqlite3_stmt_readonly): sorted out first.
    const keyword = /^\s*(begin|commit|end|rollback)\s*(transaction)?\s*;?\s*$/i.exec(sql)?.[1]?.toLowerCase()
    if (keyword === 'begin') return control(() => group.beginExplicit())
    if (keyword === 'commit' || keyword === 'end') return control(() => group.endExplicit(false))
    if (keyword === 'rollback') return control(() => group.endExplicit(true))
    const statement = database.prepare(sql)
    if (statement.readonly) return statement
    const run = statement.run.bind(statement)
    const all = statement.all.bind(statement)
    // What Kysely's driver uses of a statement: `reader`, `run`, `all`, `iterate`.
    return {
      reader: statement.reader,
      readonly: false,
      run: (...params: unknown[]) => {
        group.beforeWrite()
        return run(...params)
      },
      // UPDATE … RETURNING is a reader that writes.
      all: (...params: unknown[]) => {
        group.beforeWrite()
        return all(...params)
      },
      iterate: statement.iterate.bind(statement),
    } as unknown as Database.Statement
  }
  return {
    close: () => {
      group.commit()
      cache.clear()
      database.close()
    },
    prepare: (sql) => {
      let statement = cache.get(sql)
      if (statement === undefined) {
        statement = wrap(sql)
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!)
        cache.set(sql, statement)
      }
      return statement
    },
  }
}

/**
 * Kysely's SQLite dialect whose adapter carries a {@link DirectExecutor}: prepared hot-path
 * statements (`kysely/prepared.ts`) run synchronously on the connection ({@link directStatement}),
 * through the same group commit as Kysely's driver, unless another caller's explicit transaction
 * holds the connection (then they queue behind it in Kysely, as before).
 */
class DirectSqliteDialect extends SqliteDialect {
  readonly #direct: DirectExecutor

  constructor(database: Database.Database, handle: DriverHandle, group: GroupCommit) {
    super({ database: handle })
    const cache = new Map<string, DirectStatement>()
    this.#direct = {
      execute(sql, parameters, inTransaction) {
        if (!inTransaction && group.explicitOpen) return undefined
        let statement = cache.get(sql)
        if (statement === undefined) {
          statement = directStatement(database, sql)
          if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!)
          cache.set(sql, statement)
        }
        if (!statement.readonly) group.beforeWrite()
        else if (!inTransaction) group.beforeRead()
        return statement.execute(parameters)
      },
    }
  }

  override createAdapter(): DialectAdapter {
    return Object.assign(super.createAdapter(), { [DIRECT_EXECUTOR]: this.#direct })
  }
}

/** A statement of the direct executor: `readonly` as SQLite says; rows as objects (none without RETURNING). */
interface DirectStatement {
  readonly readonly: boolean
  execute(parameters: readonly unknown[]): unknown[]
}

/**
 * Prepares `sql` for the direct executor. Rows come back from better-sqlite3 as arrays (raw mode)
 * and become objects in a function compiled once for the statement's column names: the driver
 * builds each row object in native code, one property at a time, which costs about twice as much
 * as the array plus an object literal with a fixed shape (measured on the poll lookup, 19 columns:
 * 5.5 µs against 3–4 µs). The objects are the same: one property per result column, in order, the
 * last one winning when two share a name (as better-sqlite3 does).
 */
function directStatement(database: Database.Database, sql: string): DirectStatement {
  const statement = database.prepare(sql)
  if (!statement.reader) {
    return {
      readonly: statement.readonly,
      execute: (parameters) => {
        statement.run(parameters)
        return []
      },
    }
  }
  const names = statement.columns().map((c) => c.name)
  // Column names come from the store's own SQL; JSON.stringify quotes any of them safely.
  const toRow = new Function('r', `return {${names.map((name, i) => `${JSON.stringify(name)}: r[${i}]`).join(', ')}}`) as (
    values: unknown[],
  ) => Record<string, unknown>
  statement.raw(true)
  return { readonly: statement.readonly, execute: (parameters) => (statement.all(parameters) as unknown[][]).map(toRow) }
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
