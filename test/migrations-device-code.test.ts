/**
 * Migration 021_device_code_by_id (write path of a device authorization): a device code
 * `<id>.<secret>` is found by its device grant's id and its secret's hash compared in constant
 * time; `device_code_hash` keeps only the codes issued before that format, under a partial unique
 * index. On SQLite and, with DEVICEGATE_TEST_PG_URL, on PostgreSQL (skipped loudly otherwise):
 * - codes stored before the migration — the format without `.` (SHA-256 of the whole code) and
 *   `<id>.<secret>` stored as `<id>.<hash>` in `device_code_hash` — still poll and redeem after it
 *   (RFC 8628 §3.5), and a redeemed one presented again is still refused;
 * - a code with a real id and a wrong secret is `invalid_grant` (400), found by the same read and
 *   refused by a constant-time comparison, and it changes nothing for the rightful client;
 * - the lookups search the primary key and the partial index (query plans); down and up again keep
 *   every row and key.
 */
import { randomBytes } from 'node:crypto'
import * as nodeCrypto from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely'
import pg from 'pg'
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { migrations } from '../src/storage/migrations.js'
import { recordId, sha256Hex, systemRandom } from '../src/system.js'
import { freshPgSchema } from './support/pg-schema.js'
import { approveAs, postForm, startTestServer, type TestServer } from './support/server.js'
import { userCode } from './support/store-fixtures.js'

// Every constant-time comparison goes through node:crypto's timingSafeEqual: watched, not changed.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>()
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) }
})

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('migration 021 (device codes by id) tests on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL')

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const NEW_CODE = /^([0-9a-f]{12}[A-Za-z0-9_-]{14})\.([A-Za-z0-9_-]{43})$/
const secret = () => randomBytes(32).toString('base64url')

/** Migrates `db` up to and including `last` (a key of the ordered list). */
async function migrateThrough(db: Kysely<any>, last: string, schema?: string): Promise<void> {
  const keys = Object.keys(migrations)
  const subset = Object.fromEntries(keys.slice(0, keys.indexOf(last) + 1).map((k) => [k, migrations[k]!]))
  const { error } = await new Migrator({ db, provider: { getMigrations: async () => subset }, ...(schema ? { migrationTableSchema: schema } : {}) }).migrateToLatest()
  if (error !== undefined) throw error
}

/** A pending `device_grants` row as the release before wrote it, expiring 10 minutes after `now`. */
function rowBefore(deviceCodeHash: string, now: number, id = recordId(systemRandom)) {
  return {
    id, device_code_hash: deviceCodeHash, user_code: userCode(), client_id: 'cli', scope: 'read offline_access', status: 'pending',
    created_at: now, expires_at: now + 600, interval_seconds: 5, last_polled_at: null, subject: null, decided_at: null,
    request_ip: '127.0.0.1', request_user_agent: null, dpop_jkt: null, grant_id: null, resources: null, review_claim: null, review_claim_until: null,
  }
}

/** The stores to run on: a migrated-through-020 database each, and how to open it as Kysely. */
const STORES: Array<{
  name: string
  run: boolean
  /** A fresh database: its storage URL, a Kysely on it, and how to drop it. */
  open(): Promise<{ url: string; db: Kysely<any>; schema?: string; drop(): Promise<void> }>
}> = [
  {
    name: 'sqlite',
    run: true,
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'devicegate-mig-021-'))
      const file = join(dir, 'devicegate.db')
      const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new Database(file) }) })
      return { url: `sqlite:${file}`, db, drop: async () => rmSync(dir, { recursive: true, force: true }) }
    },
  },
  {
    name: 'postgres',
    run: Boolean(PG_URL),
    async open() {
      const s = await freshPgSchema(PG_URL!, 'dg_mig021')
      const schema = new URL(s.url).searchParams.get('options')!.replace('-c search_path=', '')
      const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: s.url, max: 1 }) }) })
      return { url: s.url, db, schema, drop: s.drop }
    },
  },
]

for (const store of STORES) {
  describe.skipIf(!store.run)(`${store.name}: device codes stored before 021_device_code_by_id (RFC 8628 §3.5)`, () => {
    let t: TestServer | undefined
    let drop: (() => Promise<void>) | undefined
    afterEach(async () => {
      await t?.close()
      t = undefined
      await drop?.()
    })

    it('still polls and redeems both earlier formats exactly once, and refuses them once redeemed', async () => {
      const d = await store.open()
      drop = d.drop
      const now = Math.floor(Date.now() / 1000)
      await migrateThrough(d.db, '020_device_grant_changes', d.schema)
      const oldCode = secret() // the first format: 43 base64url characters, no "."
      const idKeyed = recordId(systemRandom)
      const idKeyedCode = `${idKeyed}.${secret()}` // `<id>.<secret>`, stored as `<id>.<hash>`
      const rows = [rowBefore(sha256Hex(oldCode), now), rowBefore(`${idKeyed}.${sha256Hex(idKeyedCode.slice(27))}`, now, idKeyed)]
      await d.db.insertInto('device_grants').values(rows).execute()
      await d.db.destroy()

      t = await startTestServer({ storageUrl: d.url })
      const poll = (code: string) => postForm(`${t!.url}/token`, { grant_type: DEVICE_GRANT, device_code: code, client_id: 'cli' })
      for (const [code, row] of [[oldCode, rows[0]!], [idKeyedCode, rows[1]!]] as const) {
        const pending = await poll(code)
        expect([pending.status, pending.json.error], code).toEqual([400, 'authorization_pending'])
        await approveAs(t.url, row.user_code)
        const ok = await poll(code)
        expect(ok.status, code).toBe(200)
        expect(ok.json.access_token).toEqual(expect.any(String))
        const again = await poll(code)
        expect([again.status, again.json.error], code).toEqual([400, 'invalid_grant'])
        expect(await t.server.store.findDeviceGrantByUserCode(row.user_code)).toMatchObject({ id: row.id, status: 'redeemed', deviceCodeHash: row.device_code_hash })
      }
    })

    it('moves the hash of an "<id>.<secret>" code out of device_code_hash into device_secret_hash, and back down and up again', async () => {
      const d = await store.open()
      drop = d.drop
      const now = Math.floor(Date.now() / 1000)
      await migrateThrough(d.db, '020_device_grant_changes', d.schema)
      const legacy = rowBefore(sha256Hex(secret()), now)
      const id = recordId(systemRandom)
      const keyed = rowBefore(`${id}.${sha256Hex(secret())}`, now, id)
      await d.db.insertInto('device_grants').values([legacy, keyed]).execute()
      const read = () => d.db.selectFrom('device_grants').selectAll().orderBy('id').execute()
      const before = await read()
      await migrateThrough(d.db, '021_device_code_by_id', d.schema)
      const after = await read()
      expect(after.find((r) => r.id === legacy.id)).toMatchObject({ device_code_hash: legacy.device_code_hash, device_secret_hash: null })
      expect(after.find((r) => r.id === keyed.id)).toMatchObject({ device_code_hash: null, device_secret_hash: keyed.device_code_hash.slice(id.length + 1) })
      await migrations['021_device_code_by_id']!.down!(d.db)
      expect(await read()).toEqual(before)
      await migrations['021_device_code_by_id']!.up(d.db)
      expect(await read()).toEqual(after)
      await d.db.destroy()
    })
  })

  describe.skipIf(!store.run)(`${store.name}: a device code with a real id and a wrong secret (RFC 8628 §3.5, §5.2)`, () => {
    let t: TestServer
    let drop: () => Promise<void>
    beforeEach(async () => {
      const d = await store.open()
      await d.db.destroy()
      drop = d.drop
      t = await startTestServer({ storageUrl: d.url })
    })
    afterEach(async () => {
      await t?.close()
      await drop?.()
    })

    it('is invalid_grant (400), refused by a constant-time comparison of the whole key after the same read, and changes nothing for the rightful client', async () => {
      const res = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
      const { device_code, user_code } = res.json as { device_code: string; user_code: string }
      const [, id, s] = NEW_CODE.exec(device_code)!
      const compare = vi.mocked(nodeCrypto.timingSafeEqual)
      /** The comparisons of a 91-byte key (26-character id, ".", 64 hex digits) since `from`. */
      const keyComparisons = (from: number) => compare.mock.calls.slice(from).filter(([a, b]) => (a as Buffer).length === 91 && (b as Buffer).length === 91)
      const poll = (code: string) => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: code, client_id: 'cli' })

      const from = compare.mock.calls.length
      const wrong = await poll(`${id}.${secret()}`)
      expect([wrong.status, wrong.json.error]).toEqual([400, 'invalid_grant'])
      expect(wrong.headers.get('cache-control')).toBe('no-store')
      const refused = keyComparisons(from)
      expect(refused).toHaveLength(1)
      expect(compare.mock.results[compare.mock.calls.indexOf(refused[0]!)]!.value).toBe(false)
      // Nothing was recorded for the real code: its first poll is on time.
      expect(await t.server.store.findDeviceGrantByUserCode(user_code.replace('-', ''))).toMatchObject({ lastPolledAt: null, intervalSeconds: 5 })

      const right = compare.mock.calls.length
      const pending = await poll(device_code)
      expect([pending.status, pending.json.error]).toEqual([400, 'authorization_pending'])
      const matched = keyComparisons(right)
      expect(matched).toHaveLength(1)
      expect(compare.mock.results[compare.mock.calls.indexOf(matched[0]!)]!.value).toBe(true)
      expect(s).toHaveLength(43)
    })
  })
}

describe('SQLite: the device grant lookups after 021_device_code_by_id search the primary key and the partial index', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-mig-021-plan-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('indexes device_code_hash only where set, and each query on device_grants still searches an index', async () => {
    const raw = new Database(join(dir, 'p.db'))
    const db = new Kysely<any>({ dialect: new SqliteDialect({ database: raw }) })
    try {
      await migrateThrough(db, '021_device_code_by_id')
      expect(raw.prepare(`select sql from sqlite_master where name = 'device_grants_device_code_hash_idx'`).pluck().get()).toMatch(/^create unique index .* where "device_code_hash" is not null$/i)
      // Two automatic indexes: the primary key (id) and the unique user code; no other unique one.
      expect(raw.prepare(`select name from sqlite_master where tbl_name = 'device_grants' and type = 'index' order by name`).pluck().all()).toEqual([
        'device_grants_created_at_idx',
        'device_grants_decided_at_idx',
        'device_grants_device_code_hash_idx',
        'device_grants_review_claim_idx',
        'device_grants_status_expires_idx',
        'sqlite_autoindex_device_grants_1',
        'sqlite_autoindex_device_grants_2',
      ])
      const plan = (q: string) => raw.prepare(`explain query plan ${q}`).all().map((r: any) => r.detail as string).join('; ')
      expect(plan(`select * from device_grants where device_code_hash = 'x'`)).toMatch(/SEARCH device_grants USING INDEX device_grants_device_code_hash_idx \(device_code_hash=\?\)/)
      expect(plan(`select * from device_grants where id = 'x'`)).toMatch(/SEARCH device_grants USING INDEX sqlite_autoindex_device_grants_1 \(id=\?\)/)
      expect(plan(`select * from device_grants where user_code = 'x'`)).toMatch(/SEARCH device_grants USING INDEX sqlite_autoindex_device_grants_2 \(user_code=\?\)/)
      expect(plan(`select count(*) from device_grants where status = 'pending' and expires_at > 1`)).toMatch(/device_grants_status_expires_idx/)
      expect(plan(`select * from device_grants where created_at >= 1 and created_at < 2 order by created_at, id limit 10`)).toMatch(/device_grants_created_at_idx/)
    } finally {
      await db.destroy()
    }
  })
})

describe.skipIf(!PG_URL)('PostgreSQL: the lookup of a code of the format before searches the partial index', () => {
  let drop: (() => Promise<void>) | undefined
  afterAll(async () => drop?.())

  it('indexes device_code_hash only where set, and `device_code_hash = $1` uses that index', async () => {
    const d = await STORES[1]!.open()
    drop = d.drop
    try {
      await migrateThrough(d.db, '021_device_code_by_id', d.schema)
      const def = await sql<{ indexdef: string }>`select indexdef from pg_indexes where indexname = 'device_grants_device_code_hash_idx' and schemaname = ${d.schema}`.execute(d.db)
      expect(def.rows[0]?.indexdef).toMatch(/CREATE UNIQUE INDEX .* WHERE \(device_code_hash IS NOT NULL\)$/)
      await sql`set enable_seqscan = off`.execute(d.db)
      const plan = async (q: string) => (await sql.raw<{ 'QUERY PLAN': string }>(`explain ${q}`).execute(d.db)).rows.map((r) => r['QUERY PLAN']).join('\n')
      expect(await plan(`select * from device_grants where device_code_hash = 'x'`)).toContain('device_grants_device_code_hash_idx')
      await sql`prepare by_hash(text) as select * from device_grants where device_code_hash = $1`.execute(d.db)
      await sql`set plan_cache_mode = force_generic_plan`.execute(d.db)
      expect(await plan(`execute by_hash('x')`)).toContain('device_grants_device_code_hash_idx')
    } finally {
      await d.db.destroy()
    }
  })
})
