#!/usr/bin/env node
// devicegate benchmark: devicegate vs node-oidc-provider vs the bare node:http limit.
//
//   npm run bench                       # build, then 3 rounds × 10 s, 32 connections, 2 s warm-up
//   node bench/run.mjs --rounds 1 --duration 3 --scenarios a,b,c --out bench.json
//
// Throughput scenarios (a)–(d) alternate the targets over rounds; each (round, target) gets a
// fresh process (and for devicegate a fresh data dir). Scenarios (e)–(g) run once, after them.
import { parseArgs } from 'node:util'
import { writeFileSync, rmSync } from 'node:fs'
import { cpus } from 'node:os'
import { TARGETS, makeRunDir, devicegateAvailable } from './lib/targets.mjs'
import { SCENARIOS, runLoad } from './lib/load.mjs'
import { scenarioMemory, scenarioGrowth, scenarioRevokeBySubject } from './lib/extra.mjs'
import { printReport, median, medianParts } from './lib/report.mjs'
import { loadAverage, startServerCpuWindow } from './lib/proc.mjs'
import { benchPgUrl, benchRedisUrl, registerPostgresTargets } from './postgres.mjs'

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    warmup: { type: 'string', default: '2' },
    scenarios: { type: 'string', default: 'a,b,h,c,d,e,f,g' },
    targets: { type: 'string', default: 'devicegate,oidc-provider,limit' },
    out: { type: 'string' },
    'keep-data': { type: 'boolean', default: false },
    'growth-sizes': { type: 'string', default: '10000,1000000' },
    'pending-codes': { type: 'string', default: '100000' },
    'oidc-adapter': { type: 'string', default: 'map' },
    store: { type: 'string', default: 'auto' },
    'pg-scenarios': { type: 'string', default: 'b,c' },
    'pg-url': { type: 'string' },
    'pg-ephemeral': { type: 'string', default: 'unlogged' },
    'redis-url': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (opts.help) {
  console.log(`usage: node bench/run.mjs [--rounds 3] [--duration 10] [--connections 32] [--warmup 2]
       [--scenarios a,b,h,c,d,e,f,g] [--targets devicegate,oidc-provider,limit] [--out FILE]
       [--growth-sizes 10000,1000000] [--pending-codes 100000] [--oidc-adapter map|default] [--keep-data]
       [--store auto|sqlite|postgres [--pg-url URL] [--pg-ephemeral unlogged,redis] [--redis-url URL]
                                     [--pg-scenarios b,c]]
           auto (the default): postgres when a PostgreSQL URL is given (--pg-url, DEVICEGATE_BENCH_PG_URL,
           DEVICEGATE_TEST_PG_URL or DATABASE_URL), else sqlite alone.
           postgres
           adds devicegate-pg and devicegate-pg-x2 (one and two instances; poll times and DPoP jtis in
           UNLOGGED tables), and with redis devicegate-pg-redis(-x2) (see bench/postgres.mjs); naming
           some of these in --targets runs only those`)
  process.exit(0)
}

const config = {
  rounds: Number(opts.rounds),
  durationSeconds: Number(opts.duration),
  connections: Number(opts.connections),
  warmupSeconds: Number(opts.warmup),
  scenarios: opts.scenarios.split(',').map((s) => s.trim()).filter(Boolean),
  growthSizes: opts['growth-sizes'].split(',').map(Number),
  pendingCodes: Number(opts['pending-codes']),
}
const BUSY_OTHER_CORES = 0.25 // warn when other processes used more than a quarter of a core

let targetNames = opts.targets.split(',').map((s) => s.trim())
const notes = []
if (!['auto', 'sqlite', 'postgres'].includes(opts.store)) throw new TypeError(`--store: expected auto, sqlite or postgres, got "${opts.store}"`)
// The scenarios the PostgreSQL targets run (issue 17 sets its multi-instance target on polling and introspection).
const pgScenarios = opts['pg-scenarios'].split(',').map((s) => s.trim()).filter(Boolean)
if (opts.store === 'postgres' || (opts.store === 'auto' && benchPgUrl(opts['pg-url']))) {
  const pgOptions = { ephemeral: opts['pg-ephemeral'].split(',').map((s) => s.trim()).filter(Boolean), redisUrl: benchRedisUrl(opts['redis-url']), scenarios: pgScenarios }
  const pgNames = registerPostgresTargets(TARGETS, benchPgUrl(opts['pg-url']), pgOptions)
  // All PostgreSQL targets, unless --targets names some of them (e.g. to profile one).
  if (!targetNames.some((n) => pgNames.includes(n))) targetNames.push(...pgNames)
} else if (opts.store === 'auto') notes.push('PostgreSQL targets not run: no PostgreSQL URL (--pg-url, DEVICEGATE_BENCH_PG_URL or DEVICEGATE_TEST_PG_URL)')
const warnings = []
const log = (...a) => console.error(...a)

if (targetNames.includes('devicegate') && !devicegateAvailable()) {
  notes.push('devicegate not run: bin/devicegate.js or dist/ missing (run `npm run build`)')
  targetNames = targetNames.filter((n) => n !== 'devicegate')
}
TARGETS['oidc-provider'].adapter = opts['oidc-adapter']
const targets = targetNames.map((n) => {
  if (!TARGETS[n]) throw new TypeError(`--targets: unknown target "${n}" (devicegate, oidc-provider, limit)`)
  return TARGETS[n]
})

const runDir = makeRunDir()
log(`bench: run dir ${runDir}; ${cpus().length} CPUs; loadavg ${loadAverage()}`)
for (const t of targets) log(`  target ${t.describe()}`)

const throughputIds = config.scenarios.filter((s) => SCENARIOS[s])
/** results[scenario][target] = [per-round result] */
const results = Object.fromEntries(throughputIds.map((s) => [s, Object.fromEntries(targets.map((t) => [t.name, []]))]))
const sizes = {}

async function probeSizes(t, states) {
  // Response sizes of the real target, so the limit answers bodies of the same size.
  const { postForm, DEVICE_CODE_GRANT, basicAuth } = await import('./lib/http.mjs')
  const da = await postForm(t.endpoints.deviceAuthorization, { client_id: t.publicClientId, scope: t.deviceScope })
  sizes.device_authorization = da.text.length
  if (states.b) {
    const r = await postForm(t.endpoints.token, Object.fromEntries(new URLSearchParams(states.b.bodies[0])))
    sizes.pending = r.text.length
  } else {
    const r = await postForm(t.endpoints.token, { grant_type: DEVICE_CODE_GRANT, device_code: da.json.device_code, client_id: t.publicClientId })
    sizes.pending = r.text.length
  }
  if (states.c) {
    const r = await postForm(t.endpoints.introspection, Object.fromEntries(new URLSearchParams(states.c.bodies[0])), {
      authorization: basicAuth(t.confidentialClient.id, t.confidentialClient.secret),
    })
    sizes.introspection = r.text.length
  }
  if (states.d) {
    const rt = states.d.pool.pop()
    const r = await postForm(t.endpoints.token, { grant_type: 'refresh_token', refresh_token: rt, client_id: t.publicClientId })
    if (r.json?.refresh_token) states.d.pool.push(r.json.refresh_token)
    sizes.token = r.text.length
  }
  sizes.source = t.name
}

let journalChecked = false
async function runRound(round, t) {
  const tag = `r${round}`
  const inst = await t.start({ runDir, tag, sizes })
  if (t.name === 'devicegate' && !journalChecked) {
    journalChecked = true
    notes.push(`devicegate SQLite file header says journal mode: ${inst.journalMode} (synchronous=NORMAL per src/storage/sqlite.ts; not visible from outside the process)`)
  }
  try {
    const states = {}
    // A target may run only some scenarios (the PostgreSQL targets: --pg-scenarios).
    const ids = t.scenarios ? throughputIds.filter((s) => t.scenarios.includes(s)) : throughputIds
    for (const s of ids) {
      log(`  [round ${round}] ${t.name}: preparing ${SCENARIOS[s].title}`)
      states[s] = await SCENARIOS[s].prepare(inst, config)
    }
    // The limit's answer sizes come from a target that ran every scenario.
    if (t.name !== 'limit' && !t.scenarios && !sizes.source) await probeSizes(inst, states)
    for (const s of ids) {
      const spec = () => SCENARIOS[s].request(inst, states[s])
      const common = { origin: inst.loadOrigins ?? inst.origin, connections: config.connections, targetPid: inst.pid }
      if (config.warmupSeconds > 0) await runLoad({ ...common, spec: spec(), durationSeconds: config.warmupSeconds })
      const serverCpu = t.name === 'limit' ? undefined : await startServerCpuWindow(inst)
      const r = await runLoad({ ...common, spec: spec(), durationSeconds: config.durationSeconds })
      if (serverCpu) r.serverCpuMsPerRequest = await serverCpu.stop(r.total)
      if (serverCpu?.parts) r.cpuParts = serverCpu.parts
      if (states[s].lost) r.errors['refresh pool exhausted'] = states[s].lost
      r.round = round
      results[s][t.name].push(r)
      const other = r.cpu.otherCores
      if (other > BUSY_OTHER_CORES) {
        const w = `round ${round}, ${t.name}, ${SCENARIOS[s].title}: other processes were busy (${other.toFixed(2)} cores not used by the bench or the target; loadavg ${r.loadavg1})`
        warnings.push(w)
        log(`  WARNING ${w}`)
      }
      const cls = Object.entries(r.counts).map(([k, v]) => `${k}=${v}`).join(' ')
      log(`  [round ${round}] ${t.name} ${SCENARIOS[s].title}: ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errorCount} ${cls}`)
    }
  } finally {
    await inst.stop()
  }
}

const started = Date.now()
if (throughputIds.length) {
  for (let round = 1; round <= config.rounds; round++) {
    // Alternate: round r starts with target r-1 (mod n), so no target always goes first.
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length])
    for (const t of order) await runRound(round, t)
  }
}

const extra = {}
const dgInTargets = targets.some((t) => t.name === 'devicegate')
if (config.scenarios.includes('e')) {
  extra.e = await scenarioMemory({ targets: targets.filter((t) => t.name !== 'limit'), runDir, log, notes })
}
if (config.scenarios.includes('f')) {
  if (dgInTargets) extra.f = await scenarioGrowth({ runDir, log, notes, config, warnings })
  else notes.push('(f) growth skipped: needs devicegate')
}
if (config.scenarios.includes('g')) {
  if (dgInTargets) extra.g = await scenarioRevokeBySubject({ runDir, log, notes })
  else notes.push('(g) revoke by subject skipped: needs devicegate')
}

const summary = {}
for (const s of throughputIds) {
  summary[s] = {}
  for (const t of targets) {
    const rs = results[s][t.name]
    if (!rs.length) continue
    const counts = {}
    const errors = {}
    for (const r of rs) {
      for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + v
      for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v
    }
    summary[s][t.name] = {
      rps: median(rs.map((r) => r.rps)),
      mean: median(rs.map((r) => r.mean)),
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      serverCpuMsPerRequest: median(rs.map((r) => r.serverCpuMsPerRequest)),
      ...(rs.some((r) => r.cpuParts) ? { cpuParts: medianParts(rs.map((r) => r.cpuParts ?? {})) } : {}),
      errorCount: Object.values(errors).reduce((a, b) => a + b, 0),
      counts,
      errors,
    }
  }
  const dg = summary[s].devicegate
  const peer = summary[s]['oidc-provider']
  const lim = summary[s].limit
  summary[s].ratios = {
    devicegate_over_peer: dg && peer ? dg.rps / peer.rps : null,
    devicegate_over_limit: dg && lim ? dg.rps / lim.rps : null,
    peer_over_limit: peer && lim ? peer.rps / lim.rps : null,
    devicegate_p99_over_peer_p99: dg && peer && peer.p99 > 0 ? dg.p99 / peer.p99 : null,
    peer_cpu_over_devicegate_cpu: dg?.serverCpuMsPerRequest && peer?.serverCpuMsPerRequest ? peer.serverCpuMsPerRequest / dg.serverCpuMsPerRequest : null,
    // Each PostgreSQL target against one SQLite instance, measured in this run.
    over_sqlite: Object.fromEntries(
      targets.filter((t) => t.name.startsWith('devicegate-pg')).map((t) => [t.name, dg && summary[s][t.name] ? summary[s][t.name].rps / dg.rps : null]),
    ),
    // The same from CPU per request (SQLite's over the target's): what the run would give on an
    // otherwise idle machine where CPU is the bound, less sensitive to other load than req/s.
    cpu_over_sqlite: Object.fromEntries(
      targets
        .filter((t) => t.name.startsWith('devicegate-pg'))
        .map((t) => {
          const pgCpu = summary[s][t.name]?.serverCpuMsPerRequest
          return [t.name, dg?.serverCpuMsPerRequest && pgCpu ? dg.serverCpuMsPerRequest / pgCpu : null]
        }),
    ),
  }
}

if (!targets.some((t) => t.name === 'oidc-provider')) notes.push('node-oidc-provider not run')
notes.push('oidc-provider never answers slow_down (it does not implement RFC 8628 §3.5 interval enforcement); devicegate does, so its polling mix differs')

const report = {
  startedAt: new Date(started).toISOString(),
  elapsedSeconds: Math.round((Date.now() - started) / 1000),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
  config,
  targets: Object.fromEntries(targets.map((t) => [t.name, t.describe()])),
  limitResponseSizes: sizes,
  scenarios: Object.fromEntries(throughputIds.map((s) => [s, { title: SCENARIOS[s].title, ...summary[s] }])),
  rounds: results,
  extra,
  warnings,
  notes,
}
printReport(report)
if (opts.out) {
  writeFileSync(opts.out, JSON.stringify(report, null, 2))
  log(`bench: JSON written to ${opts.out}`)
}
if (!opts['keep-data']) rmSync(runDir, { recursive: true, force: true })
else log(`bench: data and logs kept in ${runDir}`)
