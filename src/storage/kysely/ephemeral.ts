/**
 * The {@link EphemeralStore} of a PostgreSQL store (see ../ephemeral.ts): UNLOGGED tables in the
 * same database (the default), or Redis. Also the poll write-back both share.
 */
import { CompiledQuery, sql, type Kysely } from 'kysely'
import type { EphemeralBackend, EphemeralStore, PollDecision } from '../ephemeral.js'
import { SLOW_DOWN_INCREMENT_SECONDS, type PollState } from '../poll-times.js'
import type { RateCounterStore } from '../rate-counters.js'
import { RedisEphemeralStore } from '../redis-ephemeral.js'
import { SharedPollTimes } from '../shared-poll-times.js'
import type { KyselyContext } from './context.js'
import { insertDpopJti } from './dpop-replay.js'
import { BatchedWrite, padForGenericPlan } from './batched-read.js'
import { PreparedQuery, registerNamed } from './prepared.js'
import type { DevicegateDatabase } from './tables.js'

/**
 * Polls decided in one statement on the UNLOGGED `device_poll_times` (RFC 8628 §3.5), one row per
 * device grant (the ids are distinct: {@link BatchedWrite}). The first poll of a grant seeds the
 * entry from its `device_grants` row (and is judged against that row's last poll); later ones
 * update it under the row lock, so concurrent polls of one grant are serialised. Rows are taken in
 * id order, so two such statements (of this instance or another) sharing ids cannot deadlock. No
 * row for a grant that does not exist. Parameters: $1 ids, $2 their poll times (epoch seconds),
 * both padded with NULL to the same length by `padForGenericPlan` (a NULL id matches no grant).
 *
 * Each grant is read on its own (`cross join lateral … limit 1`): one primary-key probe per id,
 * where a join of `unnest` to `device_grants` became a hash join over the whole table while it was
 * small (1,000 grants: 0.5 ms per statement against 0.08 ms).
 */
const DECIDE_POLLS_SQL = `
insert into device_poll_times as p (id, last_polled_at, interval_seconds, too_fast, expires_at)
select g.id, v.now,
       g.interval_seconds + case when g.last_polled_at + g.interval_seconds > v.now then ${SLOW_DOWN_INCREMENT_SECONDS} else 0 end,
       coalesce(g.last_polled_at + g.interval_seconds > v.now, false),
       g.expires_at
  from unnest($1::text[], $2::bigint[]) as v(id, now)
 cross join lateral (
       select d.id, d.interval_seconds, d.last_polled_at, d.expires_at
         from device_grants d where d.id = v.id limit 1) as g
 order by v.id
on conflict (id) do update set
  too_fast = p.last_polled_at + p.interval_seconds > excluded.last_polled_at,
  interval_seconds = p.interval_seconds + case when p.last_polled_at + p.interval_seconds > excluded.last_polled_at then ${SLOW_DOWN_INCREMENT_SECONDS} else 0 end,
  last_polled_at = excluded.last_polled_at
returning p.id, p.too_fast, p.interval_seconds`
registerNamed(DECIDE_POLLS_SQL)

/** Poll times and DPoP jtis in UNLOGGED tables of the store's own PostgreSQL database. */
export class UnloggedEphemeralStore implements EphemeralStore {
  readonly kind = 'unlogged'
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#db = ctx.db
    ctx.onPurge(async (now) => {
      await this.#db.deleteFrom('device_poll_times').where('expires_at', '<=', now).execute()
    })
  }

  /** Concurrent polls of one event-loop turn are decided in one statement (one round trip). */
  decidePoll(id: string, now: number): Promise<PollDecision | undefined> {
    return this.#decisions.call(id, now)
  }

  readonly #decisions = new BatchedWrite<number, PollDecision>(async (calls) => {
    const { rows } = await this.#db.executeQuery<{ id: string; too_fast: boolean; interval_seconds: number }>(
      CompiledQuery.raw(DECIDE_POLLS_SQL, [padForGenericPlan(calls.map((c) => c.key)), padForGenericPlan(calls.map((c) => c.arg))]),
    )
    return new Map(rows.map((row) => [row.id, { tooFast: row.too_fast, intervalSeconds: row.interval_seconds }]))
  })

  /** `dpop_jtis` is UNLOGGED on PostgreSQL (migration 008); expired rows go with `purgeExpired`. */
  rememberJti(key: string, expiresAt: number): Promise<boolean> {
    return insertDpopJti(this.#db, key, expiresAt)
  }

  async close(): Promise<void> {}
}

/**
 * The ephemeral store of a PostgreSQL store, and the poll times on top of it whose decisions are
 * written back to `device_grants` in batches (closed and flushed with the store).
 *
 * Redis is connected on first use; until it answers, calls fail with `StoreUnavailableError`.
 * On Redis the fixed-window rate-limit counters live there too (`counters`); on UNLOGGED tables
 * they stay in the `rate_counters` table.
 */
export function createEphemeral(
  ctx: KyselyContext,
  backend: EphemeralBackend,
  onBackgroundError: (error: unknown) => void,
): { ephemeral: EphemeralStore; pollTimes: SharedPollTimes; counters?: RateCounterStore } {
  const db = ctx.db
  let ephemeral: EphemeralStore
  let counters: RateCounterStore | undefined
  if (backend.kind === 'redis') {
    const pollState = new PreparedQuery<{ last_polled_at: number | null; interval_seconds: number }>(1, (id) =>
      db.selectFrom('device_grants').select(['last_polled_at', 'interval_seconds']).where('id', '=', id),
    )
    const redis = new RedisEphemeralStore({
      url: backend.url,
      keyPrefix: backend.keyPrefix,
      loadPollState: async (id): Promise<PollState | undefined> => {
        const [row] = await pollState.execute(db, id)
        return row && { lastPolledAt: row.last_polled_at, intervalSeconds: row.interval_seconds }
      },
    })
    ephemeral = redis
    counters = redis
  } else ephemeral = new UnloggedEphemeralStore(ctx)
  // Callers run inside the store's guard (registerPoll), which maps database errors.
  const pollTimes = new SharedPollTimes(
    (id, now) => ephemeral.decidePoll(id, now),
    (changes) => writeBackPolls(db, changes),
    onBackgroundError,
  )
  ctx.onClose(async () => {
    await pollTimes.flush()
    await ephemeral.close()
  })
  return { ephemeral, pollTimes, ...(counters ? { counters } : {}) }
}

/**
 * Writes decided poll states back to their rows in one statement, moving each value only
 * forward (`greatest`), so that instances flushing in any order leave the newest state. A row
 * that already holds a state at least as new (another instance polled it later and flushed
 * first, as it does for about every grant that instances share) is not written: an UPDATE that
 * changes nothing still writes a new row version, with its index entries when no HOT update is
 * possible, for vacuum to clean up. Not worth a WAL flush: `synchronous_commit = off` (still
 * atomic and crash-consistent).
 */
async function writeBackPolls(db: Kysely<DevicegateDatabase>, changes: ReadonlyArray<readonly [string, PollState]>): Promise<void> {
  const ids = changes.map(([id]) => id)
  const last = changes.map(([, p]) => p.lastPolledAt)
  const interval = changes.map(([, p]) => p.intervalSeconds)
  await db.transaction().execute(async (trx) => {
    await sql`SET LOCAL synchronous_commit = off`.execute(trx)
    await sql`
      update device_grants g
         set last_polled_at = greatest(coalesce(g.last_polled_at, 0), v.last),
             interval_seconds = greatest(g.interval_seconds, v.interval)
        from unnest(${ids}::text[], ${last}::bigint[], ${interval}::int[]) as v(id, last, interval)
       where g.id = v.id
         and (g.last_polled_at is null or g.last_polled_at < v.last or g.interval_seconds < v.interval)`.execute(trx)
  })
}
