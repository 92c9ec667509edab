// PostgreSQL mode of the bench: devicegate on PostgreSQL, one instance and two
// instances sharing the load, next to the SQLite target of run.mjs.
//
//   node bench/run.mjs --store postgres [--pg-url postgres://postgres@127.0.0.1:5432/test]
//        [--rounds 1 --duration 5 --scenarios b,c]
//
// Targets added: devicegate-pg (one `devicegate serve`), devicegate-pg-x2 (two, same config and
// issuer, one fresh schema). The load generator splits its keep-alive connections evenly between
// the two instances (connection i goes to instance i mod 2), as an L4 load balancer on a host of
// its own would; a balancer in this box would take its CPU from the two cores the instances, the
// database and the load generator share. The issuer's own address is a round-robin TCP proxy,
// used only by the set-up before the measured window (seeding, approvals).
// Their poll times and DPoP jtis live in UNLOGGED tables (the default). With
// --pg-ephemeral unlogged,redis also devicegate-pg-redis and devicegate-pg-redis-x2: the same with
// `storage.ephemeral.url` (--redis-url, default redis://127.0.0.1:6379), a key prefix per
// (round, target), deleted at stop.
// Every (round, target) gets a fresh schema, dropped at stop. The database server (and Redis) is
// not a child of the bench, so its CPU shows as "other processes" in the report.
//
// Run directly, this file is that proxy: node bench/postgres.mjs proxy PORT HOST:PORT,HOST:PORT
import { writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { randomBytes } from 'node:crypto'
import { ROOT, DEMO_PASSWORD, DEMO_CLIENT_SECRET, devicegateEndpoints } from './lib/targets.mjs'
import { freePort, startProcess, stopProcess } from './lib/proc.mjs'

const HOST = '127.0.0.1'

/** The PostgreSQL URL for the bench: --pg-url, else DEVICEGATE_BENCH_PG_URL, DEVICEGATE_TEST_PG_URL, DATABASE_URL. */
export function benchPgUrl(flag) {
  return flag || process.env.DEVICEGATE_BENCH_PG_URL || process.env.DEVICEGATE_TEST_PG_URL || process.env.DATABASE_URL || ''
}

async function withPg(pgUrl, fn) {
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** The `--dev` preset's clients and user, on PostgreSQL in `schema` (ephemeral state in Redis with `redis`), as a config file. */
async function writeConfig(runDir, tag, pgUrl, schema, redis) {
  const { devConfigFile } = await import(pathToFileURL(join(ROOT, 'dist', 'config', 'load.js')).href)
  const { stringify } = await import('yaml')
  const { file, env } = devConfigFile({ password: DEMO_PASSWORD, clientSecret: DEMO_CLIENT_SECRET })
  const url = new URL(pgUrl)
  url.searchParams.set('options', `-c search_path=${schema}`)
  // Names this target's database backends, so the bench can count their CPU (pg_stat_activity).
  url.searchParams.set('application_name', schema)
  const path = join(runDir, `devicegate-pg-${tag}.yaml`)
  const ephemeral = redis ? { ephemeral: { url: redis.url, key_prefix: redis.keyPrefix } } : {}
  writeFileSync(path, stringify({ ...file, storage: { url: url.toString(), ...ephemeral } }))
  return { path, env }
}

/** Deletes the bench's Redis keys under `prefix`. */
async function deleteRedisKeys(url, prefix) {
  const { Redis } = await import('ioredis')
  const redis = new Redis(url)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      if (keys.length) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

/** pids of the PostgreSQL backends serving `applicationName` (same machine). */
async function backendPids(pgUrl, applicationName) {
  const { rows } = await withPg(pgUrl, (c) => c.query('select pid from pg_stat_activity where application_name = $1', [applicationName]))
  return rows.map((r) => r.pid)
}

/** CPU seconds the Redis server has used (INFO cpu; its other clients count too). */
async function redisCpuSeconds(url) {
  const { Redis } = await import('ioredis')
  const redis = new Redis(url)
  try {
    const info = await redis.info('cpu')
    const field = (k) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)
    return field('used_cpu_user') + field('used_cpu_sys')
  } finally {
    redis.disconnect()
  }
}

/** BENCH_DEVICEGATE_NODE_FLAGS as node arguments (see lib/targets.mjs). */
const nodeFlags = () => (process.env.BENCH_DEVICEGATE_NODE_FLAGS ?? '').split(' ').filter(Boolean)

function pgTarget(name, instances, pgUrl, redisUrl) {
  return {
    name,
    describe: () =>
      `devicegate on PostgreSQL (${new URL(pgUrl).host}), ${instances === 1 ? 'one instance' : `${instances} instances, the load generator's connections split evenly between them`}; --dev clients, pool 10 per instance, fresh schema; poll times and DPoP jtis in ${redisUrl ? `Redis (${new URL(redisUrl).host})` : 'UNLOGGED tables'}`,
    async start({ runDir, tag }) {
      const schema = `dg_bench_${tag}_${randomBytes(4).toString('hex')}`.toLowerCase()
      const redis = redisUrl ? { url: redisUrl, keyPrefix: `dg_bench:${schema}:` } : undefined
      await withPg(pgUrl, (c) => c.query(`create schema ${schema}`))
      const children = []
      const stop = async () => {
        for (const c of children.reverse()) await stopProcess(c)
        await withPg(pgUrl, (c) => c.query(`drop schema if exists ${schema} cascade`)).catch(() => {})
        if (redis) await deleteRedisKeys(redis.url, redis.keyPrefix).catch(() => {})
      }
      try {
        const { path, env } = await writeConfig(runDir, `${name}-${tag}`, pgUrl, schema, redis)
        const ports = []
        for (let i = 0; i < instances; i++) ports.push(await freePort(HOST))
        const publicPort = instances === 1 ? ports[0] : await freePort(HOST)
        const origin = `http://${HOST}:${publicPort}`
        // One after the other: the first migrates the schema and creates the signing key.
        for (const [i, port] of ports.entries()) {
          children.push(
            await startProcess({
              cmd: process.execPath,
              // BENCH_DEVICEGATE_NODE_FLAGS (e.g. --cpu-prof) apply to every instance, as to the SQLite target.
              args: [...nodeFlags(), 'bin/devicegate.js', 'serve', '--config', path, '--host', HOST, '--port', String(port), '--issuer', origin],
              cwd: ROOT,
              env,
              logFile: join(runDir, `${name}-${tag}-${i}.log`),
              readyUrl: `http://${HOST}:${port}/healthz`,
            }),
          )
        }
        if (instances > 1) {
          children.push(
            await startProcess({
              cmd: process.execPath,
              args: ['bench/postgres.mjs', 'proxy', String(publicPort), ports.map((p) => `${HOST}:${p}`).join(',')],
              cwd: ROOT,
              logFile: join(runDir, `${name}-${tag}-proxy.log`),
              readyUrl: `${origin}/healthz`,
            }),
          )
        }
        const servers = children.slice(0, instances)
        return {
          name,
          child: children[0],
          pid: children[0].pid,
          // Where the measured load goes: each instance directly (see the top of this file).
          loadOrigins: ports.map((p) => `http://${HOST}:${p}`),
          // The instances and their database backends.
          serverPids: async () => [...servers.map((c) => c.pid), ...(await backendPids(pgUrl, schema))],
          // The same split for the report; the set-up proxy is shown apart and not counted (the
          // measured load does not pass through it, so it shows about 0).
          cpuParts: async () => ({
            devicegate: servers.map((c) => c.pid),
            postgres: await backendPids(pgUrl, schema),
            ...(instances > 1 ? { proxy: [children[instances].pid] } : {}),
          }),
          ...(redis ? { externalCpuSeconds: () => redisCpuSeconds(redis.url) } : {}),
          ...(await devicegateEndpoints(origin)),
          stop,
        }
      } catch (err) {
        await stop()
        throw err
      }
    },
  }
}

/** The Redis URL for the bench: --redis-url, else DEVICEGATE_BENCH_REDIS_URL, DEVICEGATE_TEST_REDIS_URL, redis://127.0.0.1:6379. */
export function benchRedisUrl(flag) {
  return flag || process.env.DEVICEGATE_BENCH_REDIS_URL || process.env.DEVICEGATE_TEST_REDIS_URL || 'redis://127.0.0.1:6379'
}

/**
 * Adds the PostgreSQL targets to `targets` (run.mjs's TARGETS), one and two instances for each
 * ephemeral backend in `ephemeral` (`unlogged`, `redis`), each running only `scenarios` when given
 * (scenario ids; run.mjs's `--pg-scenarios`).
 * @returns their names, or throws when no PostgreSQL URL is known.
 */
export function registerPostgresTargets(targets, pgUrl, { ephemeral = ['unlogged'], redisUrl, scenarios } = {}) {
  if (!pgUrl) throw new Error('--store postgres: give --pg-url or set DEVICEGATE_BENCH_PG_URL / DEVICEGATE_TEST_PG_URL')
  const names = []
  for (const kind of ephemeral) {
    if (kind !== 'unlogged' && kind !== 'redis') throw new TypeError(`--pg-ephemeral: expected unlogged or redis, got "${kind}"`)
    const base = kind === 'redis' ? 'devicegate-pg-redis' : 'devicegate-pg'
    for (const [name, n] of [[base, 1], [`${base}-x2`, 2]]) {
      targets[name] = { ...pgTarget(name, n, pgUrl, kind === 'redis' ? redisUrl : undefined), ...(scenarios ? { scenarios } : {}) }
      names.push(name)
    }
  }
  return names
}

/** The round-robin TCP proxy: each accepted connection goes to the next backend. */
function runProxy(port, backends) {
  let next = 0
  createServer((down) => {
    const [host, p] = backends[next++ % backends.length].split(':')
    const up = connect(Number(p), host)
    down.setNoDelay(true)
    up.setNoDelay(true)
    down.pipe(up).pipe(down)
    down.on('error', () => up.destroy())
    up.on('error', () => down.destroy())
  }).listen(port, HOST)
  process.on('SIGTERM', () => process.exit(0))
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href && process.argv[2] === 'proxy') {
  runProxy(Number(process.argv[3]), process.argv[4].split(','))
}
