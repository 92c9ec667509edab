// Seeding and inspecting a configured devicegate's database (SQLite file or PostgreSQL schema) for
// bench/identity.mjs and bench/signals.mjs: token families written straight into the tables while
// the server is stopped, a fresh PostgreSQL schema per run, and read-only counts while it runs.
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { ROOT } from './targets.mjs'
import { openDb, insertInto, recordIds } from './extra.mjs'

const requireFromRoot = createRequire(join(ROOT, 'package.json'))

/**
 * Rows for `n` grants of `subject` (client `clientId`), each with one live opaque access token.
 * @returns { grants, tokens, raw } — `raw[i]` is the i-th token as a client would present it.
 */
export function rowsFor(subject, n, { clientId = 'cli', known } = {}) {
  const now = Math.floor(Date.now() / 1000)
  const grants = []
  const tokens = []
  const raw = []
  // Record ids (grant id, jti) as the server makes them, for rows created at their `created_at`.
  const [grantIds, jtis] = [recordIds(n), recordIds(n)]
  for (let i = 0; i < n; i++) {
    const id = grantIds(i, (now - i - 1) * 1000)
    grants.push({ id, client_id: clientId, subject, scope: 'read', created_at: now - i - 1 })
    const token = i === 0 && known ? known : randomBytes(32).toString('base64url')
    raw.push(token)
    tokens.push({ token_hash: createHash('sha256').update(token).digest('hex'), jti: jtis(i, (now - i - 1) * 1000), grant_id: id, client_id: clientId, subject, scope: 'read', issued_at: now - i - 1, expires_at: now + 86_400, format: 'opaque' })
  }
  return { grants, tokens, raw }
}

/** Inserts the grants and tokens of `sets` into a stopped server's SQLite file, one transaction. */
export function seedSqliteRows(file, sets) {
  sets = sets.filter((s) => s.grants.length > 0)
  if (sets.length === 0) return
  const db = openDb(file)
  try {
    const insG = insertInto(db, 'grants', sets[0].grants[0])
    const insT = insertInto(db, 'access_tokens', sets[0].tokens[0])
    db.transaction(() => {
      for (const s of sets) {
        s.grants.forEach(insG)
        s.tokens.forEach(insT)
      }
    })()
  } finally {
    db.pragma('journal_mode = WAL')
    db.close()
  }
}

/** The same into a PostgreSQL schema (`url` carries its search_path), 1,000 rows per INSERT. */
export async function seedPgRows(url, sets) {
  sets = sets.filter((s) => s.grants.length > 0)
  if (sets.length === 0) return
  const pg = requireFromRoot('pg')
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query('BEGIN')
    for (const s of sets) {
      for (const [table, rows] of [['grants', s.grants], ['access_tokens', s.tokens]]) {
        const cols = Object.keys(rows[0])
        for (let b = 0; b < rows.length; b += 1000) {
          const chunk = rows.slice(b, b + 1000)
          const values = []
          const tuples = chunk.map((r, k) => `(${cols.map((c, j) => (values.push(r[c]), `$${k * cols.length + j + 1}`)).join(', ')})`)
          await client.query(`INSERT INTO ${table} (${cols.join(', ')}) VALUES ${tuples.join(', ')}`, values)
        }
      }
    }
    await client.query('COMMIT')
  } finally {
    await client.end()
  }
}

/**
 * A fresh PostgreSQL schema named after `tag` and this process. @returns { storageUrl, drop() }.
 */
export async function createPgSchema(baseUrl, tag) {
  const pg = requireFromRoot('pg')
  const schema = `bench_${tag}_${process.pid}`
  const c = new pg.Client({ connectionString: baseUrl })
  await c.connect()
  await c.query(`CREATE SCHEMA ${schema}`)
  await c.end()
  const u = new URL(baseUrl)
  u.searchParams.set('options', `-c search_path=${schema}`)
  return {
    schema,
    storageUrl: u.toString(),
    async drop() {
      const d = new pg.Client({ connectionString: baseUrl })
      await d.connect()
      await d.query(`DROP SCHEMA ${schema} CASCADE`)
      await d.end()
    },
  }
}

/**
 * A read-only query runner on a running server's database: `query(sql)` → rows. SQLite opens the
 * file read-only per call (WAL readers do not block the server); PostgreSQL keeps one connection.
 */
export async function openInspector({ sqliteFile, storageUrl }) {
  if (sqliteFile) {
    const Database = requireFromRoot('better-sqlite3')
    return {
      async query(text) {
        const db = new Database(sqliteFile, { readonly: true, fileMustExist: true })
        try {
          return db.prepare(text).all()
        } finally {
          db.close()
        }
      },
      async close() {},
    }
  }
  const pg = requireFromRoot('pg')
  const client = new pg.Client({ connectionString: storageUrl })
  await client.connect()
  return { query: async (text) => (await client.query(text)).rows, close: () => client.end() }
}

/** Pending outbox rows plus pending deliveries to push destinations (0 once everything left). */
export async function undelivered(inspector) {
  const [o] = await inspector.query('SELECT COUNT(*) AS n FROM signal_outbox')
  const [d] = await inspector.query("SELECT COUNT(*) AS n FROM signal_deliveries d JOIN signal_destinations s ON s.id = d.destination_id WHERE d.status = 'pending' AND (s.kind = 'webhook' OR s.config LIKE '%\"method\":\"push\"%')")
  return Number(o.n) + Number(d.n)
}

/** client_credentials at `origin` with HTTP Basic; @returns the access token. */
export async function clientToken(origin, basic, scope) {
  const res = await fetch(`${origin}/token`, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', scope }).toString() })
  const j = await res.json()
  if (!j.access_token) throw new Error(`client_credentials (${scope}) failed: ${res.status} ${JSON.stringify(j)}`)
  return j.access_token
}
