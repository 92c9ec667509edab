/**
 * PostgreSQL adapter: shared state for several devicegate instances behind a load balancer.
 * Atomicity comes from conditional writes, which PostgreSQL re-checks after waiting on a
 * concurrent writer's row lock (READ COMMITTED), so exactly one racing instance wins.
 */
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { KyselyStore, type DevicegateDatabase, type StoreErrorKind } from './kysely-store.js'
import { migrateToLatest } from './migrations.js'
import type { Store } from './store.js'

/** PostgreSQL type OID of `int8` / `bigint`. */
const INT8_OID = 20

export interface PostgresStoreOptions {
  /** Maximum connections in the pool. Default: 10. */
  poolSize?: number
  /** Time to wait for a connection from the pool or the server. Milliseconds. Default: 5000. */
  connectionTimeoutMillis?: number
  /** Server-side `statement_timeout`. Milliseconds. Default: 10000. */
  statementTimeoutMillis?: number
}

/**
 * Opens a pooled PostgreSQL {@link Store}. Connects lazily; does not migrate (call `migrate()`,
 * or use `openStore`). Tables live in the connection's `current_schema()` (set `search_path`,
 * e.g. `?options=-c%20search_path%3Ddevicegate`, to use another schema).
 *
 * `bigint` columns (epoch seconds) are parsed to `number` by this pool only, not globally.
 * Connection failures, pool timeouts and server shutdowns surface as `StoreUnavailableError`.
 *
 * @param url `postgres://` or `postgresql://` connection string.
 */
export async function createPostgresStore(
  url: string,
  opts: PostgresStoreOptions = {},
): Promise<Store> {
  const types = new pg.TypeOverrides()
  // Epoch seconds are far below 2^53: Number is exact.
  types.setTypeParser(INT8_OID, Number)
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 5_000,
    statement_timeout: opts.statementTimeoutMillis ?? 10_000,
    // A transaction left open by a crashed request must not hold row locks forever.
    idle_in_transaction_session_timeout: 30_000,
    idleTimeoutMillis: 30_000,
    types,
  })
  // An idle client losing its connection (server restart, 57P01) emits 'error' on the pool;
  // unhandled, that would crash the process. The next query gets a fresh connection or fails
  // with StoreUnavailableError.
  pool.on('error', () => {})
  const db = new Kysely<DevicegateDatabase>({ dialect: new PostgresDialect({ pool }) })
  return new KyselyStore({
    kind: 'postgres',
    db,
    classifyError: classifyPostgresError,
    migrate: async (kdb) => {
      const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(
        kdb,
      )
      const schema = rows[0]?.schema
      if (!schema) throw new Error('PostgreSQL: no current schema; check search_path')
      await migrateToLatest(kdb, { migrationTableSchema: schema })
    },
  })
}

const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
])

const UNAVAILABLE_MESSAGES =
  /timeout exceeded when trying to connect|Connection terminated|connection error and is not queryable|Client was closed and is not queryable|Query read timeout/i

/** Sorts pg and Node network errors. */
export function classifyPostgresError(error: unknown): StoreErrorKind {
  const code = (error as { code?: unknown } | null)?.code
  if (code === '23505') return 'conflict'
  if (typeof code === 'string') {
    if (UNAVAILABLE_NODE_CODES.has(code)) return 'unavailable'
    // Class 08 connection exception; 53 insufficient resources (too many connections);
    // 57P01–57P03 shutdown / cannot connect now; 57014 statement timeout; 25006 read-only
    // (failover in progress).
    if (
      code.startsWith('08') ||
      code.startsWith('53') ||
      code.startsWith('57P') ||
      code === '57014' ||
      code === '25006'
    ) {
      return 'unavailable'
    }
  }
  // Node 20 reports a failed multi-address connect as AggregateError of system errors.
  if (error instanceof AggregateError) {
    return error.errors.some((e) => classifyPostgresError(e) === 'unavailable')
      ? 'unavailable'
      : undefined
  }
  if (error instanceof Error && UNAVAILABLE_MESSAGES.test(error.message)) return 'unavailable'
  return undefined
}
