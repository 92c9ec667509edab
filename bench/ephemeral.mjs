#!/usr/bin/env node
// The ephemeral state of several instances, measured alone: one RFC 8628 §3.5 poll decision and
// one RFC 9449 §11.1 DPoP jti insert, on PostgreSQL with the durable commit path (before: each
// poll a transaction of UPDATEs, each jti a logged INSERT), on UNLOGGED tables, and on Redis.
//
//   npm run build && node bench/ephemeral.mjs [--pg-url URL] [--redis-url URL] [--seconds 3]
//        [--rounds 3] [--concurrency 32] [--grants 1000] [--out FILE.json]
//
// In-process, through the same store code the server runs (dist/storage), round-robin over
// --grants pending device grants (so nearly every poll is too fast, as in scenario b). Variants
// alternate within each round. Reported per variant (medians over rounds): operations per second,
// and CPU per operation of this process (the driver side of a server) plus the database backends
// (pg_stat_activity by application_name, /proc) plus the Redis server (INFO cpu).
import { parseArgs } from 'node:util'
import { randomBytes, randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ROOT } from './lib/targets.mjs'
import { CLK_TCK, loadAverage, processTicks } from './lib/proc.mjs'
import { median } from './lib/report.mjs'
import { benchPgUrl, benchRedisUrl } from './postgres.mjs'

const { values: opts } = parseArgs({
  options: {
    'pg-url': { type: 'string' },
    'redis-url': { type: 'string' },
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '32' },
    grants: { type: 'string', default: '1000' },
    out: { type: 'string' },
  },
})
const pgUrl = benchPgUrl(opts['pg-url'])
if (!pgUrl) throw new Error('give --pg-url or set DEVICEGATE_BENCH_PG_URL / DEVICEGATE_TEST_PG_URL')
const redisUrl = benchRedisUrl(opts['redis-url'])
const seconds = Number(opts.seconds)
const concurrency = Number(opts.concurrency)
const log = (...a) => console.error(...a)

const { openStore } = await import(pathToFileURL(join(ROOT, 'dist', 'storage', 'index.js')).href)
const { default: pg } = await import('pg')
const { Redis } = await import('ioredis')

const schema = `dg_eph_${randomBytes(4).toString('hex')}`
const admin = new pg.Client({ connectionString: pgUrl })
await admin.connect()
await admin.query(`create schema ${schema}`)
const schemaUrl = (app) => {
  const u = new URL(pgUrl)
  u.searchParams.set('options', `-c search_path=${schema}`)
  u.searchParams.set('application_name', app)
  return u.toString()
}
const keyPrefix = `dg_bench:${schema}:`
const unlogged = await openStore(schemaUrl(`${schema}_unlogged`))
const redisStore = await openStore(schemaUrl(`${schema}_redis`), { ephemeral: { kind: 'redis', url: redisUrl, keyPrefix } })
// The durable path as it was (commit 07af49f): each poll one transaction, synchronous_commit off,
// an on-time UPDATE then a too-fast UPDATE; each jti a logged INSERT with the server's durability.
const durable = new pg.Pool({ connectionString: schemaUrl(`${schema}_durable`), max: 10 })
await admin.query(`create table ${schema}.dpop_jtis_logged (jti text primary key, expires_at bigint not null)`)

const now0 = Math.floor(Date.now() / 1000)
const ids = []
for (let i = 0; i < Number(opts.grants); i++) {
  const id = `dg_${randomUUID()}`
  ids.push(id)
  await unlogged.createDeviceGrant({
    id, deviceCodeHash: randomBytes(32).toString('hex'), userCode: randomBytes(4).toString('hex').toUpperCase(), clientId: 'cli',
    scope: 'read', status: 'pending', createdAt: now0, expiresAt: now0 + 3600, intervalSeconds: 5, lastPolledAt: null,
    subject: null, decidedAt: null, requestIp: '127.0.0.1', requestUserAgent: null, dpopJkt: null, grantId: null,
  })
}

async function durablePoll(id, now) {
  const c = await durable.connect()
  try {
    await c.query('begin')
    await c.query('set local synchronous_commit = off')
    const onTime = await c.query(
      'update device_grants set last_polled_at = $1 where id = $2 and (last_polled_at is null or last_polled_at + interval_seconds <= $1) returning interval_seconds',
      [now, id],
    )
    if (onTime.rowCount === 0) await c.query('update device_grants set interval_seconds = interval_seconds + 5, last_polled_at = $1 where id = $2 returning interval_seconds', [now, id])
    await c.query('commit')
  } finally {
    c.release()
  }
}

const variants = {
  'poll: durable (before)': { app: `${schema}_durable`, op: (i, now) => durablePoll(ids[i % ids.length], now) },
  'poll: UNLOGGED': { app: `${schema}_unlogged`, op: (i, now) => unlogged.registerPoll(ids[i % ids.length], now) },
  'poll: Redis': { app: `${schema}_redis`, redis: true, op: (i, now) => redisStore.registerPoll(ids[i % ids.length], now) },
  'jti: durable (before)': { app: `${schema}_durable`, op: (i, now) => durable.query('insert into dpop_jtis_logged (jti, expires_at) values ($1, $2) on conflict (jti) do nothing', [randomUUID(), now + 65]) },
  'jti: UNLOGGED': { app: `${schema}_unlogged`, op: (i, now) => unlogged.rememberDpopJti(randomUUID(), now + 65, now) },
  'jti: Redis': { app: `${schema}_redis`, redis: true, op: (i, now) => redisStore.rememberDpopJti(randomUUID(), now + 65, now) },
}

const redisInfo = new Redis(redisUrl)
const redisCpu = async () => {
  const info = await redisInfo.info('cpu')
  const f = (k) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)
  return f('used_cpu_user') + f('used_cpu_sys')
}
const backendTicks = async (app) => {
  const { rows } = await admin.query('select pid from pg_stat_activity where application_name = $1', [app])
  return new Map(rows.map((r) => [r.pid, processTicks(r.pid)]))
}

async function measure(name) {
  const v = variants[name]
  const deadline = Date.now() + seconds * 1000
  const cpu0 = process.cpuUsage()
  const db0 = await backendTicks(v.app)
  const r0 = v.redis ? await redisCpu() : 0
  const t0 = process.hrtime.bigint()
  let n = 0
  let errors = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < deadline) {
        const i = n++
        try {
          await v.op(i, Math.floor(Date.now() / 1000))
        } catch {
          errors++
        }
      }
    }),
  )
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  const db1 = await backendTicks(v.app)
  let dbTicks = 0
  for (const [pid, t] of db1) dbTicks += t - (db0.get(pid) ?? 0)
  const redisSeconds = v.redis ? (await redisCpu()) - r0 : 0
  const us = (s) => (s * 1e6) / n
  return {
    opsPerSecond: n / wall,
    clientCpuUs: us((cpu.user + cpu.system) / 1e6),
    databaseCpuUs: us(dbTicks / CLK_TCK),
    redisCpuUs: us(redisSeconds),
    errors,
    loadavg1: loadAverage(),
  }
}

const results = Object.fromEntries(Object.keys(variants).map((k) => [k, []]))
log(`bench/ephemeral: schema ${schema}, ${opts.rounds} round(s) × ${seconds} s per variant, concurrency ${concurrency}, ${ids.length} grants; loadavg ${loadAverage()}`)
try {
  for (let round = 1; round <= Number(opts.rounds); round++) {
    const names = Object.keys(variants)
    const order = names.map((_, i) => names[(i + round - 1) % names.length])
    for (const name of order) {
      const r = await measure(name)
      results[name].push(r)
      log(`  [round ${round}] ${name}: ${Math.round(r.opsPerSecond)}/s, CPU µs/op client ${r.clientCpuUs.toFixed(0)} + database ${r.databaseCpuUs.toFixed(0)} + redis ${r.redisCpuUs.toFixed(0)}, errors ${r.errors}, loadavg ${r.loadavg1}`)
    }
  }
} finally {
  await unlogged.close()
  await redisStore.close()
  await durable.end()
  await admin.query(`drop schema if exists ${schema} cascade`)
  await admin.end()
  const cleaner = new Redis(redisUrl)
  let cursor = '0'
  do {
    const [next, keys] = await cleaner.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000)
    if (keys.length) await cleaner.del(...keys)
    cursor = next
  } while (cursor !== '0')
  cleaner.disconnect()
  redisInfo.disconnect()
}

const rows = Object.entries(results).map(([name, rs]) => {
  const m = (k) => median(rs.map((r) => r[k]))
  return { name, opsPerSecond: m('opsPerSecond'), clientCpuUs: m('clientCpuUs'), databaseCpuUs: m('databaseCpuUs'), redisCpuUs: m('redisCpuUs'), errors: rs.reduce((a, r) => a + r.errors, 0) }
})
const pad = (s, w) => String(s).padStart(w)
console.log(`\nephemeral state, ${opts.rounds} round(s) × ${seconds} s, concurrency ${concurrency}, medians; CPU per operation in µs`)
console.log(`${'variant'.padEnd(24)} ${pad('ops/s', 8)} ${pad('client', 7)} ${pad('database', 9)} ${pad('redis', 6)} ${pad('total', 6)} ${pad('errors', 6)}`)
for (const r of rows) {
  const total = r.clientCpuUs + r.databaseCpuUs + r.redisCpuUs
  console.log(`${r.name.padEnd(24)} ${pad(Math.round(r.opsPerSecond), 8)} ${pad(r.clientCpuUs.toFixed(0), 7)} ${pad(r.databaseCpuUs.toFixed(0), 9)} ${pad(r.redisCpuUs.toFixed(0), 6)} ${pad(total.toFixed(0), 6)} ${pad(r.errors, 6)}`)
}
if (opts.out) writeFileSync(opts.out, JSON.stringify({ startedAt: new Date().toISOString(), opts, results, rows }, null, 2))
