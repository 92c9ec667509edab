/**
 * PostgreSQL adapter: shared state for several devicegate instances behind a load balancer.
 * Atomicity comes from conditional writes, which PostgreSQL re-checks after waiting on a
 * concurrent writer's row lock (READ COMMITTED), so exactly one racing instance wins.
 */
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { createKyselyStore, type DevicegateDatabase, type StoreErrorKind } from './kysely-store.js'
import type { EphemeralBackend } from './ephemeral.js'
import { NAMED_STATEMENTS } from './kysely/prepared.js'
import { PendingGrantCache } from './pending-grant-cache.js'
import { listenForDeviceGrantChanges } from './postgres-listen.js'
import { migrateToLatest } from './migrations.js'
import { StoreUnavailableError, type Store } from './store.js'

/** PostgreSQL type OID of `int8` / `bigint`. */
const INT8_OID = 20

/**
 * Pool defaults (the configuration's `storage.pool_size`, `storage.connect_timeout_seconds` and
 * `storage.query_timeout_seconds` override them).
 */
export const POSTGRES_POOL_DEFAULTS = {
  /**
   * Connections per instance. Keep instances × (poolSize + 1) under the server's
   * `max_connections` (each instance also holds one listening connection, see `pendingGrantCache`).
   */
  poolSize: 10,
  /** Longest wait for a connection (a new one, or a free one from a busy pool). Milliseconds. */
  connectionTimeoutMillis: 5_000,
  /**
   * Longest a statement may run: the server's `statement_timeout`. The client gives up one
   * second later on its own (a server that stopped answering) and drops that connection.
   * Milliseconds.
   */
  statementTimeoutMillis: 5_000,
} as const

export interface PostgresStoreOptions {
  /** Maximum connections in the pool. Default: 10. */
  poolSize?: number
  /** Time to wait for a connection from the pool or the server. Milliseconds. Default: 5000. */
  connectionTimeoutMillis?: number
  /** Server-side `statement_timeout`; the client-side read timeout is 1000 ms more. Milliseconds. Default: 5000. */
  statementTimeoutMillis?: number
  /**
   * Where poll times and DPoP jtis live (see `ephemeral.ts`). Default: UNLOGGED tables in this
   * database.
   */
  ephemeral?: EphemeralBackend
  /**
   * Answer polls of device codes known to be pending from this instance's cache, kept true by
   * the database's change notifications (`pending-grant-cache.ts`; one more connection, which
   * listens). Default: true. Tests may pass the cache to use, to observe it.
   */
  pendingGrantCache?: boolean | PendingGrantCache
}

/**
 * Opens a pooled PostgreSQL {@link Store}. The pool connects lazily; the connection that listens
 * for device grant changes (unless `pendingGrantCache: false`) connects at once, in the background,
 * and is closed with the store. Does not migrate (call `migrate()`, or use `openStore`). Tables live in the connection's `current_schema()` (set `search_path`,
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
  const statementTimeoutMillis = opts.statementTimeoutMillis ?? POSTGRES_POOL_DEFAULTS.statementTimeoutMillis
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? POSTGRES_POOL_DEFAULTS.poolSize,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? POSTGRES_POOL_DEFAULTS.connectionTimeoutMillis,
    statement_timeout: statementTimeoutMillis,
    // A server that stops answering (network partition, frozen host) never sends the
    // statement_timeout error: the client gives up on its own a second later.
    query_timeout: statementTimeoutMillis + 1_000,
    keepAlive: true,
    // A transaction left open by a crashed request must not hold row locks forever.
    idle_in_transaction_session_timeout: 30_000,
    idleTimeoutMillis: 30_000,
    fallback_application_name: 'devicegate',
    types,
  })
  // An idle client losing its connection (server restart, 57P01) emits 'error' on the pool;
  // unhandled, that would crash the process. The next query gets a fresh connection or fails
  // with StoreUnavailableError.
  pool.on('error', () => {})
  pool.on('connect', (client) => hardenClient(client))
  const db = new Kysely<DevicegateDatabase>({ dialect: new PostgresDialect({ pool }) })
  const pendingGrants =
    opts.pendingGrantCache === false ? undefined : opts.pendingGrantCache instanceof PendingGrantCache ? opts.pendingGrantCache : new PendingGrantCache()
  const listener =
    pendingGrants &&
    listenForDeviceGrantChanges(url, pendingGrants, {
      connectionTimeoutMillis: opts.connectionTimeoutMillis ?? POSTGRES_POOL_DEFAULTS.connectionTimeoutMillis,
    })
  return createKyselyStore({
    kind: 'postgres',
    db,
    classifyError: classifyPostgresError,
    pollTimes: 'ephemeral',
    ephemeral: opts.ephemeral ?? { kind: 'unlogged' },
    ...(pendingGrants ? { pendingGrants, beforeClose: () => listener!.close() } : {}),
    migrate: async (kdb) => {
      const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(
        kdb,
      )
      const schema = rows[0]?.schema
      if (!schema) throw new StoreUnavailableError('no current schema: the schema named in search_path does not exist')
      await migrateToLatest(kdb, { migrationTableSchema: schema })
      // The change trigger may have just been created: the cache need not wait for the next check.
      await listener?.recheck()
    },
  })
}

/**
 * Makes a lost connection harmless while a request holds it: pg emits 'error' on a checked-out
 * client whose socket died (the pool listens only while it is idle), which would crash the
 * process. After a client-side read timeout the connection is in an unknown state (a reply may
 * still arrive), so it is destroyed; the pool drops it instead of lending it out again.
 */
function hardenClient(client: pg.PoolClient): void {
  client.on('error', () => {})
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  ;(client as { query: unknown }).query = (...args: unknown[]) => {
    // Hot statements run as named prepared statements (see NAMED_STATEMENTS): parsed and planned
    // once per connection. Kysely calls `query(text, values)`.
    const name = typeof args[0] === 'string' && args.length === 2 ? NAMED_STATEMENTS.get(args[0]) : undefined
    const result = name !== undefined ? query({ name, text: args[0], values: args[1] }) : query(...args)
    if (result instanceof Promise) {
      result.catch((error: unknown) => {
        if (error instanceof Error && error.message === 'Query read timeout') {
          ;(client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
        }
      })
    }
    return result
  }
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
  /timeout exceeded when trying to connect|Connection terminated|connection error and is not queryable|Client was closed and is not queryable|Query read timeout|timeout expired|Connection terminated due to connection timeout/i

/** Sorts pg and Node network errors. */
export function classifyPostgresError(error: unknown): StoreErrorKind {
  const code = (error as { code?: unknown } | null)?.code
  if (code === '23505') return 'conflict'
  if (typeof code === 'string') {
    if (UNAVAILABLE_NODE_CODES.has(code)) return 'unavailable'
    // Class 08 connection exception; 28 invalid authorization (wrong password, no such role);
    // 3D000 no such database; 53 insufficient resources (too many connections); 57P01–57P03
    // shutdown / cannot connect now; 57014 statement timeout; 25006 read-only (failover in
    // progress); 40001 serialization failure and 40P01 deadlock (the transaction was rolled back
    // whole, nothing of it written). None of these is the client's fault: it may retry later.
    if (
      code === '40001' ||
      code === '40P01' ||
      code.startsWith('08') ||
      code.startsWith('28') ||
      code === '3D000' ||
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
