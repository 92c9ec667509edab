// Deprovisioning latency (issue 12, "Speed and reliability"): the time from a SCIM deactivation
// (PATCH /scim/v2/Users/{id} `active: false`, RFC 7644 §3.5.2, as Entra ID and Okta send it) to
// token introspection (RFC 7662) answering `active: false`, for a person with 1 and with 10,000
// grants. Target: under 1 s.
//
//   node bench/identity.mjs [--grants 1,10000] [--pg postgres://postgres@127.0.0.1:5432/test]
//
// Per store: start the server on a fresh data dir (or a fresh PostgreSQL schema), create the people
// over SCIM, stop it, seed their grants with a live opaque access token each straight into the
// database, start it again, check that one known token introspects active, then PATCH and poll
// introspection back to back until it answers active:false.
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { loadavg } from 'node:os'
import { ROOT, findSqliteFile, makeRunDir } from './lib/targets.mjs'
import { openDb, insertInto } from './lib/extra.mjs'
import { PROVISIONER_SECRET, startConfigured, writeConfig } from './lib/configured.mjs'

const requireFromRoot = createRequire(join(ROOT, 'package.json'))
const args = process.argv.slice(2)
const arg = (name) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
const SIZES = (arg('grants') ?? '1,10000').split(',').map(Number)
const PG = arg('pg')
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User'
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
const basic = 'Basic ' + Buffer.from(`provisioner:${PROVISIONER_SECRET}`).toString('base64')
const log = (s) => console.error(s)
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6

async function clientToken(origin, scope) {
  const res = await fetch(`${origin}/token`, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', scope }).toString() })
  const j = await res.json()
  if (!j.access_token) throw new Error(`client_credentials failed: ${res.status} ${JSON.stringify(j)}`)
  return j.access_token
}

async function scim(origin, token, method, path, body) {
  const res = await fetch(`${origin}/scim/v2${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json' }, ...(body ? { body: JSON.stringify(body) } : {}) })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : undefined }
}

async function introspect(endpoint, token) {
  const res = await fetch(endpoint, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }).toString() })
  const j = await res.json()
  if (res.status !== 200) throw new Error(`introspection: ${res.status} ${JSON.stringify(j)}`)
  return j.active
}

/** Rows for `n` grants of `subject` with one live opaque access token each; the first token is `known`. */
function rowsFor(subject, n, known) {
  const now = Math.floor(Date.now() / 1000)
  const grants = []
  const tokens = []
  for (let i = 0; i < n; i++) {
    const id = randomUUID()
    grants.push({ id, client_id: 'cli', subject, scope: 'read', created_at: now - i })
    const raw = i === 0 ? known : randomBytes(32).toString('base64url')
    tokens.push({ token_hash: createHash('sha256').update(raw).digest('hex'), jti: randomUUID(), grant_id: id, client_id: 'cli', subject, scope: 'read', issued_at: now - i, expires_at: now + 86_400, format: 'opaque' })
  }
  return { grants, tokens }
}

function seedSqliteRows(file, sets) {
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

async function seedPgRows(url, sets) {
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

async function runStore(store, runDir) {
  let storageUrl
  let schema
  if (store === 'postgres') {
    schema = `bench_identity_${process.pid}`
    const pg = requireFromRoot('pg')
    const c = new pg.Client({ connectionString: PG })
    await c.connect()
    await c.query(`CREATE SCHEMA ${schema}`)
    await c.end()
    const u = new URL(PG)
    u.searchParams.set('options', `-c search_path=${schema}`)
    storageUrl = u.toString()
  }
  try {
    const { configFile, dataDir } = await writeConfig(runDir, `identity-${store}`, storageUrl ? { storageUrl } : {})
    // 1. people over SCIM
    let inst = await startConfigured(runDir, `identity-${store}-setup`, configFile)
    const people = []
    try {
      const token = await clientToken(inst.origin, 'scim')
      for (const n of SIZES) {
        const res = await scim(inst.origin, token, 'POST', '/Users', { schemas: [USER], userName: `bench-${n}@example.com`, name: { givenName: 'Bench', familyName: String(n) }, active: true })
        if (res.status !== 201) throw new Error(`SCIM POST /Users: ${res.status} ${JSON.stringify(res.json)}`)
        people.push({ n, id: res.json.id, known: randomBytes(32).toString('base64url') })
      }
    } finally {
      await inst.stop()
    }
    // 2. grants, straight into the database
    const sets = people.map((p) => rowsFor(p.id, p.n, p.known))
    const seedStarted = Date.now()
    if (store === 'sqlite') {
      seedSqliteRows(findSqliteFile(dataDir), sets)
    } else {
      await seedPgRows(storageUrl, sets)
    }
    log(`  ${store}: seeded ${SIZES.join(' + ')} grants in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s`)
    // 3. deactivate and watch introspection
    inst = await startConfigured(runDir, `identity-${store}`, configFile)
    const out = []
    try {
      const endpoint = (await (await fetch(`${inst.origin}/.well-known/oauth-authorization-server`)).json()).introspection_endpoint
      const token = await clientToken(inst.origin, 'scim')
      for (const p of people) {
        if ((await introspect(endpoint, p.known)) !== true) throw new Error(`${store}: seeded token of ${p.n}-grant person is not active before the PATCH`)
        const t0 = process.hrtime.bigint()
        const patch = scim(inst.origin, token, 'PATCH', `/Users/${p.id}`, { schemas: [PATCH_OP], Operations: [{ op: 'replace', value: { active: false } }] }).then((r) => ({ ...r, ms: ms(t0) }))
        let polls = 0
        let inactiveMs
        for (;;) {
          polls++
          if ((await introspect(endpoint, p.known)) === false) {
            inactiveMs = ms(t0)
            break
          }
          if (ms(t0) > 30_000) throw new Error(`${store}: still active 30 s after the PATCH`)
        }
        const r = await patch
        if (r.status !== 200) throw new Error(`${store}: PATCH answered ${r.status} ${JSON.stringify(r.json)}`)
        out.push({ store, grants: p.n, patchMs: r.ms, inactiveMs, polls })
        log(`  ${store}, ${p.n} grants: PATCH answered in ${r.ms.toFixed(1)} ms, introspection inactive after ${inactiveMs.toFixed(1)} ms (${polls} polls)`)
      }
    } finally {
      await inst.stop()
    }
    return out
  } finally {
    if (schema) {
      const pg = requireFromRoot('pg')
      const c = new pg.Client({ connectionString: PG })
      await c.connect()
      await c.query(`DROP SCHEMA ${schema} CASCADE`)
      await c.end()
    }
  }
}

const runDir = makeRunDir()
log(`run dir ${runDir}`)
const rows = [...(await runStore('sqlite', runDir)), ...(PG ? await runStore('postgres', runDir) : [])]
console.log(`SCIM deactivation → introspection active:false; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)
console.log(`${'store'.padEnd(10)} ${'grants'.padStart(7)} ${'PATCH ms'.padStart(9)} ${'inactive ms'.padStart(12)}  < 1 s`)
for (const r of rows) console.log(`${r.store.padEnd(10)} ${String(r.grants).padStart(7)} ${r.patchMs.toFixed(1).padStart(9)} ${r.inactiveMs.toFixed(1).padStart(12)}  ${r.inactiveMs < 1000 ? 'yes' : 'NO'}`)
