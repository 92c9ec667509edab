// Scenarios that are not throughput rounds: (e) memory, (f) growth, (g) revoke by subject.
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, statSync, readdirSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT, devicegate, findSqliteFile } from './targets.mjs'
import { SCENARIOS, runLoad } from './load.mjs'
import { readRssBytes } from './proc.mjs'

const requireFromRoot = createRequire(join(ROOT, 'package.json'))

// ---------------------------------------------------------------------------------------------
// (e) memory

/** RSS idle, then after `deviceCodes` pending device authorizations created over HTTP. */
export async function scenarioMemory({ targets, runDir, log, deviceCodes = 100_000, connections = 32 }) {
  const out = { deviceCodes, targets: {} }
  for (const t of targets) {
    log(`  (e) ${t.name}: creating ${deviceCodes.toLocaleString('en-US')} pending device codes`)
    const inst = await t.start({ runDir, tag: 'memory' })
    try {
      await sleep(1000)
      const idleRss = readRssBytes(inst.pid)
      const spec = SCENARIOS.a.request(inst, {})
      const r = await runLoad({ origin: inst.origin, spec, connections, amount: deviceCodes, targetPid: inst.pid })
      await sleep(2000)
      const afterRss = readRssBytes(inst.pid)
      // devicegate keeps codes in its SQLite file, not in the heap: report the file too.
      const dbBytes = inst.dataDir ? dirBytes(inst.dataDir) : null
      out.targets[t.name] = {
        dbBytes,
        idleRss,
        afterRss,
        perThousand: (afterRss - idleRss) / (deviceCodes / 1000),
        created: r.counts.ok ?? 0,
        errors: r.errors,
        createRps: r.rps,
      }
      log(`  (e) ${t.name}: idle ${(idleRss / 1048576).toFixed(1)} MB, after ${(afterRss / 1048576).toFixed(1)} MB (${r.counts.ok ?? 0} created, ${r.errorCount} errors)`)
    } finally {
      await inst.stop()
    }
  }
  return out
}

function dirBytes(dir) {
  let n = 0
  for (const f of readdirSync(dir)) {
    try {
      n += statSync(join(dir, f)).size
    } catch {
      // gone meanwhile
    }
  }
  return n
}

// ---------------------------------------------------------------------------------------------
// direct SQLite seeding (devicegate is stopped meanwhile)

export function openDb(file) {
  const Database = requireFromRoot('better-sqlite3')
  const db = new Database(file)
  // Seeding only, with the server stopped: no journal, a large page cache (random keys into six
  // B-tree indexes are cache-bound). WAL mode is restored before the file is handed back.
  db.pragma('journal_mode = OFF')
  db.pragma('synchronous = OFF')
  db.pragma('cache_size = -1000000') // ~1 GB
  db.pragma('temp_store = MEMORY')
  return db
}

/**
 * Prepares an INSERT for the columns the table has today. Values come from `row` by column name;
 * a NOT NULL column without default that `row` does not fill is an error naming the column, so a
 * schema change shows up as a clear message rather than a silent mis-seed.
 */
export function insertInto(db, table, sample) {
  const cols = db.prepare(`PRAGMA table_info(${table})`).all()
  if (!cols.length) throw new Error(`seed: table ${table} does not exist (schema changed?)`)
  const missing = cols.filter((c) => c.notnull && c.dflt_value == null && !(c.name in sample) && !c.pk)
  if (missing.length) throw new Error(`seed: ${table} has NOT NULL columns the bench does not fill: ${missing.map((c) => c.name).join(', ')}`)
  const use = cols.filter((c) => c.name in sample).map((c) => c.name)
  const stmt = db.prepare(`INSERT INTO ${table} (${use.join(', ')}) VALUES (${use.map(() => '?').join(', ')})`)
  return (row) => stmt.run(use.map((c) => row[c] ?? null))
}

const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ'
function userCodeFor(i) {
  let s = ''
  for (let k = 0; k < 8; k++) {
    s += USER_CODE_ALPHABET[i % 20]
    i = Math.floor(i / 20)
  }
  return s
}

export function hexIds(n) {
  const buf = randomBytes(32 * n)
  return (i) => buf.toString('hex', 32 * i, 32 * i + 32)
}

/**
 * Device grant keys as devicegate writes them today, for `n` rows: the `device_code` is
 * `<id>.<secret>` (src/protocol/device-code-key.ts) and migration 021 stores it as the row's `id`, a
 * record id (`recordId()` in src/system.ts: 12 hex digits of the creation time in milliseconds,
 * then 14 base64url characters), `device_secret_hash` (the secret's SHA-256 in hex, no index) and
 * `device_code_hash` NULL (its partial unique index holds only codes of the format before). The
 * seeded codes are never presented, so the secret's hash is random hex of the same shape.
 * @returns `(i, createdMs)`: the columns of row `i`, created at `createdMs` (epoch milliseconds).
 */
export function deviceGrantKeys(n) {
  const ids = recordIds(n)
  const secrets = hexIds(n)
  return (i, createdMs) => ({ id: ids(i, createdMs), device_code_hash: null, device_secret_hash: secrets(i) })
}

/**
 * Record ids as devicegate makes them for device grants, grants, access token `jti`s and refresh
 * token ids (`recordId()` in src/system.ts): 12 hex digits of the creation time in milliseconds,
 * then 14 base64url characters (80 random bits), so rows of one period sit together in their
 * primary key's B-tree, as in production (a random UUID scatters them).
 * @returns `(i, createdMs)`: the `i`-th of `n` ids, for a row created at `createdMs` (epoch milliseconds).
 */
export function recordIds(n) {
  const suffixes = randomBytes(10 * n)
  return (i, createdMs) => Math.floor(createdMs).toString(16).padStart(12, '0') + suffixes.toString('base64url', 10 * i, 10 * i + 10)
}

/**
 * Throws, naming them, when `table` lacks any of `columns`: a seed written for today's schema must
 * not silently drop a column on another.
 */
export function requireColumns(db, table, columns) {
  const have = new Set(db.prepare(`PRAGMA table_info(${table})`).all().map((c) => c.name))
  const missing = columns.filter((c) => !have.has(c))
  if (missing.length) throw new Error(`seed: ${table} lacks ${missing.join(', ')} (schema older than the bench?)`)
}

/**
 * Seeds `n` token families straight into devicegate's SQLite file, one transaction per 100,000:
 * a grant, its live access token and (when subject is given) a refresh token; plus, when
 * `deviceGrants`, as many pending, unexpired device authorizations.
 */
export function seedSqlite(file, { n, subject = null, clientId, refresh = false, deviceGrants = false }) {
  const db = openDb(file)
  try {
    const now = Math.floor(Date.now() / 1000)
    const CHUNK = 100_000
    const started = Date.now()
    const grantRow = (id) => ({ id, client_id: clientId, subject, scope: 'read', created_at: now, revoked_at: null, device_grant_id: null, expires_at: null, dpop_jkt: null })
    const insGrant = insertInto(db, 'grants', grantRow('x'))
    const atSample = { token_hash: '', jti: '', grant_id: '', client_id: clientId, subject, scope: 'read', issued_at: now, expires_at: now + 86_400, revoked_at: null, format: 'opaque', dpop_jkt: null }
    const insAt = insertInto(db, 'access_tokens', atSample)
    const rtSample = { token_hash: '', id: '', grant_id: '', client_id: clientId, subject, scope: 'read offline_access', issued_at: now, expires_at: now + 86_400, rotated_at: null, revoked_at: null, dpop_jkt: null }
    const insRt = refresh ? insertInto(db, 'refresh_tokens', rtSample) : null
    // Device codes in the current format (`<id>.<secret>`, deviceGrantKeys), as the server writes them.
    const dgSample = { id: '', device_code_hash: null, device_secret_hash: '', user_code: '', client_id: 'demo-cli', scope: 'read', status: 'pending', created_at: now, expires_at: now + 3600, interval_seconds: 5, last_polled_at: null, subject: null, decided_at: null, request_ip: '127.0.0.1', request_user_agent: 'devicegate-bench-seed', dpop_jkt: null, grant_id: null }
    if (deviceGrants) requireColumns(db, 'device_grants', ['device_secret_hash'])
    const insDg = deviceGrants ? insertInto(db, 'device_grants', dgSample) : null
    for (let base = 0; base < n; base += CHUNK) {
      const m = Math.min(CHUNK, n - base)
      const h1 = hexIds(m)
      const h2 = hexIds(m)
      const dgKeys = insDg ? deviceGrantKeys(m) : null
      const [grantIds, jtis, refreshIds] = [recordIds(m), recordIds(m), recordIds(m)]
      db.transaction(() => {
        for (let i = 0; i < m; i++) {
          const ms = Date.now()
          const gid = grantIds(i, ms)
          insGrant(grantRow(gid))
          insAt({ ...atSample, token_hash: h1(i), jti: jtis(i, ms), grant_id: gid })
          if (insRt) insRt({ ...rtSample, token_hash: h2(i), id: refreshIds(i, ms), grant_id: gid })
          // Seeded user codes start with V..Z in the last place only by chance; collisions with
          // the server's random codes are ~n / 20^8 and the server retries on conflict.
          if (insDg) insDg({ ...dgSample, ...dgKeys(i, ms), user_code: userCodeFor(base + i + 7_000_000_000) })
        }
      })()
      if (process.env.BENCH_SEED_DEBUG) console.error(`seed ${base + m}: ${((Date.now() - started) / 1000).toFixed(1)} s, cpu ${(process.cpuUsage().user / 1e6).toFixed(1)} s`)
    }
    return { seconds: (Date.now() - started) / 1000 }
  } finally {
    db.pragma('journal_mode = WAL')
    db.close()
  }
}

/** Starts devicegate once on a fresh data dir so it creates its schema and dev seed, then stops it. */
async function createSchema(runDir, tag) {
  const dataDir = mkdtempSync(join(runDir, `devicegate-data-${tag}-`))
  const inst = await devicegate.start({ runDir, tag, dataDir })
  await inst.stop()
  const file = findSqliteFile(dataDir)
  if (!file) throw new Error(`devicegate left no SQLite file in ${dataDir}`)
  return { dataDir, file }
}

// ---------------------------------------------------------------------------------------------
// (f) growth

export async function scenarioGrowth({ runDir, log, config, warnings }) {
  const rows = []
  for (const n of config.growthSizes) {
    const { dataDir, file } = await createSchema(runDir, `growth-${n}`)
    log(`  (f) seeding ${n.toLocaleString('en-US')} live access tokens and pending device codes into ${file}`)
    const seeded = seedSqlite(file, { n, clientId: 'demo-api', deviceGrants: true })
    log(`  (f) seeded in ${seeded.seconds.toFixed(1)} s`)
    const inst = await devicegate.start({ runDir, tag: `growth-${n}`, dataDir })
    try {
      for (const s of ['c', 'b']) {
        const state = await SCENARIOS[s].prepare(inst, config)
        const common = { origin: inst.origin, connections: config.connections, targetPid: inst.pid }
        if (config.warmupSeconds > 0) await runLoad({ ...common, spec: SCENARIOS[s].request(inst, state), durationSeconds: config.warmupSeconds })
        const r = await runLoad({ ...common, spec: SCENARIOS[s].request(inst, state), durationSeconds: config.durationSeconds })
        if (r.cpu.otherCores > 0.25) warnings.push(`(f) ${n} tokens, ${SCENARIOS[s].title}: other processes were busy (${r.cpu.otherCores.toFixed(2)} cores)`)
        rows.push({ liveTokens: n, scenario: s, title: SCENARIOS[s].title, seedSeconds: seeded.seconds, rps: r.rps, mean: r.mean, p50: r.p50, p99: r.p99, errorCount: r.errorCount, counts: r.counts, errors: r.errors })
        log(`  (f) ${n} tokens ${SCENARIOS[s].title}: ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms`)
      }
    } finally {
      await inst.stop()
    }
  }
  const ratios = {}
  const small = Math.min(...config.growthSizes)
  const large = Math.max(...config.growthSizes)
  for (const s of ['c', 'b']) {
    const a = rows.find((x) => x.liveTokens === small && x.scenario === s)
    const b = rows.find((x) => x.liveTokens === large && x.scenario === s)
    if (a && b && large !== small) ratios[SCENARIOS[s].title] = { mean: b.mean / a.mean, p50: b.p50 / a.p50, p99: b.p99 / a.p99, rps: b.rps / a.rps }
  }
  return {
    description: 'N grants + N live access tokens (client demo-api) + N pending device codes seeded into SQLite; 1,000 real tokens/codes measured (1 round each)',
    rows,
    ratios,
  }
}

// ---------------------------------------------------------------------------------------------
// (g) revoke all grants of one user

export async function scenarioRevokeBySubject({ runDir, log, notes, grants = 100_000 }) {
  const { dataDir, file } = await createSchema(runDir, 'revoke')
  log(`  (g) seeding ${grants.toLocaleString('en-US')} grants (with access and refresh tokens) for user demo`)
  seedSqlite(file, { n: grants, subject: 'demo', clientId: 'demo-cli', refresh: true })
  const storeModule = join(ROOT, 'dist', 'storage', 'index.js')
  if (!existsSync(storeModule)) throw new Error('(g) needs dist/storage/index.js (run npm run build)')
  const { openStore } = await import(pathToFileURL(storeModule).href)
  const store = await openStore(`sqlite:${file}`)
  try {
    if (typeof store.revokeGrantsBySubject !== 'function') {
      notes.push('(g) skipped: Store has no revokeGrantsBySubject yet')
      return null
    }
    const started = process.hrtime.bigint()
    const result = await store.revokeGrantsBySubject('demo', Math.floor(Date.now() / 1000))
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    let cliHelp = ''
    try {
      cliHelp = execFileSync(process.execPath, [join(ROOT, 'bin', 'devicegate.js'), '--help'], { encoding: 'utf8' })
    } catch {
      // no help: treat as no command
    }
    const hasCli = /^\s*revoke\b/m.test(cliHelp)
    notes.push(
      `(g) timed the store method revokeGrantsBySubject (dist/storage/index.js openStore, SQLite WAL synchronous=NORMAL) in-process; ${hasCli ? 'a `devicegate revoke` command exists now: time it too' : 'devicegate has no admin/CLI command for it yet'}`,
    )
    log(`  (g) revoked in ${seconds.toFixed(3)} s (${JSON.stringify(result)})`)
    return { grants, seconds, method: 'Store.revokeGrantsBySubject (in-process)', result }
  } finally {
    await store.close()
    // Check the effect, not just the timing: no live grant of the user is left.
    const db = openDb(file)
    const live = db.prepare("SELECT count(*) AS n FROM grants WHERE subject = 'demo' AND revoked_at IS NULL").get().n
    db.close()
    if (live !== 0) notes.push(`(g) WARNING: ${live} grants of demo still live after revokeGrantsBySubject`)
  }
}
