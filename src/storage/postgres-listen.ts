/**
 * Keeps a {@link PendingGrantCache} true to the database: one dedicated PostgreSQL connection per
 * instance runs `LISTEN devicegate_device_grants` and forgets each device grant whose status
 * change is announced (trigger of migration 020, sent on commit; payload `<schema> <id>`, split at
 * its last space since a schema name may hold spaces; other schemas' are ignored).
 *
 * The cache is live only while that connection listens and the trigger is in place and enabled
 * (checked on connecting and every {@link HEALTH_CHECK_MS}: an operator disabling it, or a schema
 * not migrated yet, turns the cache off). When the connection is lost — an error, the server
 * closing it, or the check not answering within {@link HEALTH_CHECK_TIMEOUT_MS}, which also
 * catches a connection that died silently — the cache is dropped wholly and the listener
 * reconnects after a growing delay (1 s to 30 s). Polls then read the database, as without it.
 */
import pg from 'pg'
import { DEVICE_GRANT_CHANNEL, type PendingGrantCache } from './pending-grant-cache.js'

/** Period of the listening connection's health check, in milliseconds. */
export const HEALTH_CHECK_MS = 5_000
/** How long the health check may take before the connection counts as lost, in milliseconds. */
export const HEALTH_CHECK_TIMEOUT_MS = 2_000
/** First and longest delay before reconnecting, in milliseconds (doubling in between). */
const RECONNECT_MIN_MS = 1_000
const RECONNECT_MAX_MS = 30_000
/** Whether migration 020's trigger exists on this schema's `device_grants` and is enabled. */
const TRIGGER_IN_PLACE_SQL = `select exists (
  select 1 from pg_trigger t join pg_class c on c.oid = t.tgrelid
   where c.relname = 'device_grants' and t.tgname = 'device_grants_status_changed' and t.tgenabled <> 'D'
     and c.relnamespace = (select oid from pg_namespace where nspname = current_schema())) as ok`

/** A running listener. */
export interface DeviceGrantListener {
  /** Checks for the trigger now (after migrating), rather than at the next health check. */
  recheck(): Promise<void>
  /** Stops listening and drops the cache. */
  close(): Promise<void>
}

/**
 * Starts listening in the background (returns at once; the cache goes live once `LISTEN` is in
 * place). Never throws: failures only keep the cache off.
 *
 * @param url The store's connection string (same database and `search_path`).
 * @param cache The cache to keep; started and stopped by this listener.
 * @param opts.connectionTimeoutMillis Longest wait for the connection, milliseconds.
 */
export function listenForDeviceGrantChanges(
  url: string,
  cache: PendingGrantCache,
  opts: { connectionTimeoutMillis: number },
): DeviceGrantListener {
  let closed = false
  let client: pg.Client | undefined
  let health: NodeJS.Timeout | undefined
  let retry: NodeJS.Timeout | undefined
  let delay = RECONNECT_MIN_MS

  const lost = (which: pg.Client): Promise<void> => {
    if (client !== which) return Promise.resolve()
    client = undefined
    cache.stop()
    clearInterval(health)
    which.removeAllListeners('notification')
    if (!closed) {
      retry = setTimeout(() => void connect(), delay).unref()
      delay = Math.min(delay * 2, RECONNECT_MAX_MS)
    }
    return which.end().catch(() => {})
  }

  /** Turns the cache on or off by whether the trigger is in place; a failed check is a lost connection. */
  const check = async (c: pg.Client): Promise<void> => {
    try {
      const { rows } = await c.query<{ ok: boolean }>(TRIGGER_IN_PLACE_SQL)
      if (client !== c || closed) return
      if (rows[0]?.ok !== true) cache.stop()
      else if (!cache.live) cache.start()
    } catch {
      void lost(c)
    }
  }

  const connect = async (): Promise<void> => {
    const c = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: opts.connectionTimeoutMillis,
      query_timeout: HEALTH_CHECK_TIMEOUT_MS,
      keepAlive: true,
      fallback_application_name: 'devicegate',
    })
    client = c
    c.on('error', () => void lost(c))
    c.on('end', () => void lost(c))
    try {
      await c.connect()
      const { rows } = await c.query<{ schema: string | null }>('select current_schema() as schema')
      const schema = rows[0]?.schema
      if (!schema) throw new Error('no current schema')
      c.on('notification', (message) => {
        if (message.channel !== DEVICE_GRANT_CHANNEL || message.payload === undefined) return
        // Split at the last space: a schema name may hold spaces, an id holds none.
        const space = message.payload.lastIndexOf(' ')
        if (message.payload.slice(0, space) === schema) cache.forget(message.payload.slice(space + 1))
      })
      await c.query(`listen ${DEVICE_GRANT_CHANNEL}`)
      if (client !== c || closed) return
      delay = RECONNECT_MIN_MS
      await check(c)
      if (client !== c) return
      health = setInterval(() => void check(c), HEALTH_CHECK_MS).unref()
    } catch {
      void lost(c)
    }
  }

  void connect()
  return {
    async recheck() {
      if (client !== undefined && health !== undefined) await check(client)
    },
    async close() {
      closed = true
      clearTimeout(retry)
      cache.stop()
      if (client !== undefined) await lost(client)
    },
  }
}
