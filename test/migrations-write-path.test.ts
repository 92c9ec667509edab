/**
 * Migrations 017_audit_seq_rowid, 018_partial_indexes and 019_signals_review_trigger_or (issue 17,
 * write path):
 * - on SQLite `audit_events.seq` becomes the rowid, the log is copied unchanged (same rows, the
 *   chain still verifies), and the table's indexes and signal triggers are still there and fire;
 * - `device_grants.decided_at` / `review_claim` and `audit_events.grant_id` are indexed only where
 *   set, and the queries that filter on them still use those indexes (SQLite and PostgreSQL);
 * - on SQLite the access-review trigger's condition has no IN list, and exactly the same audit
 *   records get the same outbox rows, in the same order, before, after and back down.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { chainHash, GENESIS_HASH, verifyAuditLog } from '../src/governance/audit.js'
import { migrations } from '../src/storage/migrations.js'
import { createSqliteStore } from '../src/storage/sqlite.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL

/** Migrates `db` up to and including `last` (a key of the ordered list). */
async function migrateThrough(db: Kysely<any>, last: string): Promise<void> {
  const keys = Object.keys(migrations)
  const subset = Object.fromEntries(keys.slice(0, keys.indexOf(last) + 1).map((k) => [k, migrations[k]!]))
  const { error } = await new Migrator({ db, provider: { getMigrations: async () => subset } }).migrateToLatest()
  if (error !== undefined) throw error
}

/**
 * @param schema PostgreSQL: the schema holding Kysely's bookkeeping tables. Without it Kysely looks
 *   for them in every schema and, should another test's schema hold them at that moment, skips
 *   creating its own (as the server does, src/storage/postgres.ts).
 */
async function migrateAll(db: Kysely<any>, schema?: string): Promise<void> {
  const { error } = await new Migrator({ db, provider: { getMigrations: async () => migrations }, ...(schema ? { migrationTableSchema: schema } : {}) }).migrateToLatest()
  if (error !== undefined) throw error
}

/** Three chained records, as the audit log writes them (no seal). */
function chainedRecords(): Record<string, unknown>[] {
  let prev = GENESIS_HASH
  return [1, 2, 3].map((seq) => {
    const body = { seq, time: 1_800_000_000 + seq, type: seq === 2 ? 'admin.action' : 'device_code.approved', actor: seq === 2 ? 'admin:ops' : 'alice', clientId: 'cli', subject: 'alice', ip: null, grantId: seq === 3 ? 'g-3' : null, details: '{}' }
    const hash = chainHash(prev, body)
    const row = { seq, time: body.time, type: body.type, actor: body.actor, client_id: 'cli', subject: 'alice', ip: null, grant_id: body.grantId, details: '{}', prev_hash: prev, hash, mac: null }
    prev = hash
    return row
  })
}

const DECIDED_QUERY = `select count(*) from device_grants where decided_at >= 1 and decided_at < 2`
const CLAIM_QUERY = `select id from device_grants where review_claim = 'bob'`
const GRANT_QUERY = `select seq from audit_events where grant_id = 'g-3' order by seq limit 200`

describe('SQLite: 017_audit_seq_rowid and 018_partial_indexes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-mig-write-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('copies the audit log unchanged into a table whose seq is the rowid; the chain verifies and the signal triggers still fire', async () => {
    const file = join(dir, 'a.db')
    const raw = new Database(file)
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) })
    await migrateThrough(db, '016_signals_secrets')
    const records = chainedRecords()
    await db.insertInto('audit_events').values(records).execute()
    await db.updateTable('audit_head').set({ seq: 3, hash: records[2]!.hash }).where('id', '=', 1).execute()
    const outboxBefore = raw.prepare(`select count(*) from signal_outbox where type = 'admin.action'`).pluck().get()
    expect(outboxBefore).toBe(1)
    await migrateAll(db)

    // seq is the rowid: declared INTEGER PRIMARY KEY, no separate unique index on it.
    const seqColumn = raw.prepare(`select type, pk from pragma_table_info('audit_events') where name = 'seq'`).get()
    expect(seqColumn).toEqual({ type: 'INTEGER', pk: 1 })
    expect(raw.prepare(`select name from sqlite_master where tbl_name = 'audit_events' and type = 'index' order by name`).pluck().all()).toEqual([
      'audit_events_grant_id_idx',
      'audit_events_time_idx',
    ])
    expect(raw.prepare(`select name from sqlite_master where tbl_name = 'audit_events' and type = 'trigger' order by name`).pluck().all()).toEqual([
      'audit_admin_signal',
      'audit_review_signal',
    ])
    expect(raw.prepare('select * from audit_events order by seq').all()).toEqual(records)
    // The copy did not fire the triggers; a new administrator action does.
    expect(raw.prepare(`select count(*) from signal_outbox where type = 'admin.action'`).pluck().get()).toBe(1)
    raw.prepare(`insert into audit_events (seq, time, type, actor, details, prev_hash, hash) values (4, 1, 'admin.action', 'admin:ops', '{}', 'x', 'y')`).run()
    expect(raw.prepare(`select count(*) from signal_outbox where type = 'admin.action'`).pluck().get()).toBe(2)
    raw.prepare('delete from audit_events where seq = 4').run()
    // A duplicate seq is still refused.
    expect(() => raw.prepare(`insert into audit_events (seq, time, type, details, prev_hash, hash) values (3, 1, 't', '{}', 'x', 'y')`).run()).toThrow(/UNIQUE|PRIMARY KEY/)
    await db.destroy()

    const store = await createSqliteStore(file)
    try {
      const result = await verifyAuditLog(store)
      expect(result).toMatchObject({ ok: true, checked: 3, lastSeq: 3 })
    } finally {
      await store.close()
    }
  })

  it('rolls back to a bigint key and forward again (down, then up) without losing a record', async () => {
    const raw = new Database(join(dir, 'b.db'))
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) })
    await migrateAll(db)
    const records = chainedRecords()
    await db.insertInto('audit_events').values(records).execute()
    await migrations['018_partial_indexes']!.down!(db)
    await migrations['017_audit_seq_rowid']!.down!(db)
    expect(raw.prepare(`select type from pragma_table_info('audit_events') where name = 'seq'`).pluck().get()).toBe('bigint')
    await migrations['017_audit_seq_rowid']!.up(db)
    await migrations['018_partial_indexes']!.up(db)
    expect(raw.prepare('select * from audit_events order by seq').all()).toEqual(records)
    await db.destroy()
  })

  it('declares the three indexes partial (WHERE <column> IS NOT NULL), and the queries filtering on those columns still search them', async () => {
    const raw = new Database(join(dir, 'c.db'))
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) })
    await migrateAll(db)
    for (const name of ['device_grants_decided_at_idx', 'device_grants_review_claim_idx', 'audit_events_grant_id_idx'])
      expect(raw.prepare(`select sql from sqlite_master where name = ?`).pluck().get(name), name).toMatch(/where .* is not null$/i)
    const plan = (q: string) => raw.prepare(`explain query plan ${q}`).all().map((r: any) => r.detail as string).join('; ')
    expect(plan(DECIDED_QUERY)).toMatch(/SEARCH device_grants USING (COVERING )?INDEX device_grants_decided_at_idx/)
    expect(plan(CLAIM_QUERY)).toMatch(/SEARCH device_grants USING (COVERING )?INDEX device_grants_review_claim_idx/)
    expect(plan(GRANT_QUERY)).toMatch(/SEARCH audit_events USING (COVERING )?INDEX audit_events_grant_id_idx/)
    await db.destroy()
  })
})

describe('SQLite: 019_signals_review_trigger_or', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-mig-trigger-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  /** Audit records (type, actor) covering both triggers, neither, and both at once. */
  const EVENTS: [string, string | null][] = [
    ['device_authorization.requested', 'client:cli'],
    ['review.round_opened', 'system'],
    ['review.reminder_due', null],
    ['review.item_decided', 'admin:ops'],
    ['review.round_closed', 'bob'],
    ['review.round', 'bob'],
    ['Review.round_opened', 'bob'],
    ['admin.action', 'admin:ops'],
    ['token.revoked', 'admin:ops'],
    ['token.revoked', 'ADMIN:ops'],
  ]

  /** Inserts EVENTS after the last record; returns the outbox rows they wrote (type, and the record's place in EVENTS). */
  function appendEvents(raw: Database.Database): [string, number][] {
    const first = (raw.prepare('select coalesce(max(seq), 0) + 1 from audit_events').pluck().get() as number)
    const outboxFrom = raw.prepare('select coalesce(max(seq), 0) from signal_outbox').pluck().get() as number
    const insert = raw.prepare(`insert into audit_events (seq, time, type, actor, details, prev_hash, hash) values (?, 1, ?, ?, '{}', 'x', 'y')`)
    EVENTS.forEach(([type, actor], i) => insert.run(first + i, type, actor))
    return raw
      .prepare('select type, ref from signal_outbox where seq > ? order by seq')
      .all(outboxFrom)
      .map((r: any) => [r.type as string, Number(r.ref) - first])
  }

  const triggerSql = (raw: Database.Database) => raw.prepare(`select sql from sqlite_master where type = 'trigger' and name = 'audit_review_signal'`).pluck().get() as string

  it('writes the review condition as equalities, keeps every record and outbox row, and signals the same records in the same order; down restores the IN list', async () => {
    const raw = new Database(join(dir, 'd.db'))
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) })
    try {
      await migrateThrough(db, '018_partial_indexes')
      const before = triggerSql(raw)
      expect(before).toContain('NEW.type IN (')
      const signalled = appendEvents(raw)
      expect(signalled).toEqual([
        ['review.round_opened', 1],
        ['review.reminder_due', 2],
        // Both triggers: SQLite fires the one created last (the review trigger) first.
        ['review.item_decided', 3],
        ['admin.action', 3],
        ['review.round_closed', 4],
        ['admin.action', 7],
        ['admin.action', 8],
        ['admin.action', 9],
      ])
      const dump = () => ({ events: raw.prepare('select * from audit_events order by seq').all(), outbox: raw.prepare('select * from signal_outbox order by seq').all() })
      const data = dump()

      await migrateAll(db)
      expect(triggerSql(raw)).not.toMatch(/ IN \(/i)
      expect(triggerSql(raw)).toContain(`NEW.type = 'review.round_opened' OR NEW.type = 'review.reminder_due'`)
      expect(dump()).toEqual(data)
      expect(appendEvents(raw)).toEqual(signalled)

      const after = dump()
      await migrations['019_signals_review_trigger_or']!.down!(db)
      expect(triggerSql(raw)).toBe(before)
      expect(dump()).toEqual(after)
      expect(appendEvents(raw)).toEqual(signalled)
    } finally {
      await db.destroy()
    }
  })
})

describe.skipIf(!PG_URL)('PostgreSQL: 017_audit_seq_rowid and 018_partial_indexes', () => {
  const schema = `migw_${randomBytes(6).toString('hex')}`
  afterAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL })
    await client.connect()
    await client.query(`drop schema if exists ${schema} cascade`)
    await client.end()
  })

  it('keeps the bigint key, and the filtering queries can use the partial indexes', async () => {
    const admin = new pg.Client({ connectionString: PG_URL })
    await admin.connect()
    await admin.query(`create schema ${schema}`)
    await admin.end()
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: PG_URL, max: 1, options: `-c search_path=${schema}` }) }) })
    try {
      await migrateAll(db, schema)
      const seqType = await sql<{ data_type: string }>`select data_type from information_schema.columns where table_schema = ${schema} and table_name = 'audit_events' and column_name = 'seq'`.execute(db)
      expect(seqType.rows[0]?.data_type).toBe('bigint')
      await sql`set enable_seqscan = off`.execute(db)
      const plan = async (q: string) => (await sql.raw<{ 'QUERY PLAN': string }>(`explain ${q}`).execute(db)).rows.map((r) => r['QUERY PLAN']).join('\n')
      expect(await plan(DECIDED_QUERY)).toContain('device_grants_decided_at_idx')
      expect(await plan(CLAIM_QUERY)).toContain('device_grants_review_claim_idx')
      expect(await plan(GRANT_QUERY)).toContain('audit_events_grant_id_idx')
    } finally {
      await db.destroy()
    }
  })
})
