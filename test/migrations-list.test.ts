/**
 * The one ordered list of migrations (src/storage/migrations.ts, bodies in src/storage/migrations/)
 * must migrate a database exactly as it did when every migration lived in one file: same keys in
 * the same order, the same SQL statements byte for byte, and the same resulting schema — on
 * SQLite and, with DEVICEGATE_TEST_PG_URL, on PostgreSQL.
 *
 * The golden files in test/fixtures/migrations.<dialect>.json were recorded from the single-file
 * list (commit before the split). Set `DEVICEGATE_RECORD_MIGRATIONS=1` to record them again; only
 * do so when appending a migration, and check that the diff adds entries and changes none.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { migrations } from '../src/storage/migrations.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
const RECORD = process.env.DEVICEGATE_RECORD_MIGRATIONS === '1'

/** The keys of the landed migrations, in the order they are applied. */
const LANDED = [
  '0001_initial',
  '002_dpop_resources_devices',
  '003_governance',
  '004_policy_mfa',
  '005_rate_slots',
  '005_review_claims',
  '006_refresh_rotation_grace',
  '007_audit_record_mac',
  '008_ephemeral_unlogged',
  '010_identity',
  '011_signals',
  '012_console',
  '013_storage_class',
  '014_reviews',
  '015_signals_review_events',
  '016_signals_secrets',
  '017_audit_seq_rowid',
  '018_partial_indexes',
  '019_signals_review_trigger_or',
  '020_device_grant_changes',
  '021_device_code_by_id',
]

interface Recording {
  /** Per migration key, the SQL statements its `up` runs, in order. */
  statements: Record<string, string[]>
  /** The resulting schema, one line per table, column, index, trigger (sorted). */
  schema: string[]
}

/** Runs every landed migration's `up` in list order on `db`, recording each statement's SQL. */
async function record(open: (log: (sql: string) => void) => Kysely<any>, dump: (db: Kysely<any>) => Promise<string[]>): Promise<Recording> {
  const statements: Record<string, string[]> = {}
  let current: string[] = []
  const db = open((s) => current.push(s))
  try {
    for (const key of LANDED) {
      current = []
      await migrations[key]!.up(db)
      statements[key] = current
    }
    return { statements, schema: await dump(db) }
  } finally {
    await db.destroy()
  }
}

function compare(dialect: string, actual: Recording): void {
  const file = join(import.meta.dirname, 'fixtures', `migrations.${dialect}.json`)
  if (RECORD || !existsSync(file)) writeFileSync(file, JSON.stringify(actual, null, 2) + '\n')
  const golden = JSON.parse(readFileSync(file, 'utf8')) as Recording
  expect(Object.keys(actual.statements)).toEqual(Object.keys(golden.statements))
  for (const key of Object.keys(golden.statements)) expect(actual.statements[key], key).toEqual(golden.statements[key])
  expect(actual.schema).toEqual(golden.schema)
}

describe('migration list (src/storage/migrations.ts)', () => {
  it('starts with the landed migrations, in their order, and appends new ones after the last of them', () => {
    const keys = Object.keys(migrations)
    expect(keys.slice(0, LANDED.length)).toEqual(LANDED)
    // Kysely applies migrations in key order: every appended key must sort after the last landed one.
    expect([...keys].sort()).toEqual(keys)
    for (const key of keys.slice(LANDED.length)) expect(key > LANDED.at(-1)!, key).toBe(true)
  })
})

describe('SQLite: migrating runs the same SQL and yields the same schema as the single-file list', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-migrations-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('matches test/fixtures/migrations.sqlite.json', async () => {
    const recording = await record(
      (log) =>
        new Kysely<any>({
          dialect: new SqliteDialect({ database: new Database(join(dir, 'm.db')) }),
          log: (e) => log(e.query.sql),
        }),
      async (db) => {
        const rows = await sql<{ type: string; name: string; tbl_name: string; sql: string | null }>`
          select type, name, tbl_name, sql from sqlite_master order by type, name`.execute(db)
        return rows.rows.map((r) => `${r.type} ${r.name} on ${r.tbl_name}: ${r.sql ?? ''}`)
      },
    )
    compare('sqlite', recording)
  })
})

describe.skipIf(!PG_URL)('PostgreSQL: migrating runs the same SQL and yields the same schema as the single-file list', () => {
  const schema = `mig_${randomBytes(6).toString('hex')}`
  afterAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL })
    await client.connect()
    await client.query(`drop schema if exists ${schema} cascade`)
    await client.end()
  })

  it('matches test/fixtures/migrations.postgres.json', async () => {
    const admin = new pg.Client({ connectionString: PG_URL })
    await admin.connect()
    await admin.query(`create schema ${schema}`)
    await admin.end()
    const recording = await record(
      (log) =>
        new Kysely<any>({
          dialect: new PostgresDialect({
            pool: new pg.Pool({ connectionString: PG_URL, max: 1, options: `-c search_path=${schema}` }),
          }),
          log: (e) => log(e.query.sql),
        }),
      async (db) => {
        const strip = (s: string) => s.replaceAll(`${schema}.`, '')
        const columns = await sql<Record<string, unknown>>`
          select table_name, column_name, data_type, is_nullable, column_default, ordinal_position
          from information_schema.columns where table_schema = ${schema}`.execute(db)
        const tables = await sql<Record<string, unknown>>`
          select c.relname, c.relkind, c.relpersistence from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = ${schema}`.execute(db)
        const indexes = await sql<{ indexname: string; indexdef: string }>`
          select indexname, indexdef from pg_indexes where schemaname = ${schema}`.execute(db)
        const constraints = await sql<{ conname: string; def: string }>`
          select con.conname, pg_get_constraintdef(con.oid) as def from pg_constraint con
          join pg_namespace n on n.oid = con.connamespace where n.nspname = ${schema}`.execute(db)
        const triggers = await sql<{ tgname: string; def: string }>`
          select t.tgname, pg_get_triggerdef(t.oid) as def from pg_trigger t join pg_class c on c.oid = t.tgrelid
          join pg_namespace n on n.oid = c.relnamespace where n.nspname = ${schema} and not t.tgisinternal`.execute(db)
        const functions = await sql<{ proname: string; prosrc: string }>`
          select p.proname, p.prosrc from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where n.nspname = ${schema}`.execute(db)
        return [
          ...columns.rows.map((r) => `column ${JSON.stringify(r)}`),
          ...tables.rows.map((r) => `relation ${JSON.stringify(r)}`),
          ...indexes.rows.map((r) => `index ${r.indexname}: ${strip(r.indexdef)}`),
          ...constraints.rows.map((r) => `constraint ${r.conname}: ${strip(r.def)}`),
          ...triggers.rows.map((r) => `trigger ${r.tgname}: ${strip(r.def)}`),
          ...functions.rows.map((r) => `function ${r.proname}: ${strip(r.prosrc)}`),
        ].sort()
      },
    )
    compare('postgres', recording)
  })
})
