// Outbox delivery (issue 13, "Tests and figures"): the time from a revocation to a receiver having
// the Shared Signals SET (CAEP session-revoked, RFC 8935 push to a node:http receiver) — p50 and
// p99, target p99 < 1 s — and to a signed webhook (Standard Webhooks) arriving; and delivery
// throughput for 10,000 revocations by push (one receiver) and by RFC 8936 poll. SQLite and (with
// --pg) PostgreSQL.
//
//   npm run build && node bench/signals.mjs [--latency 200] [--bulk 10000] [--no-webhook] [--no-poll]
//        [--pg postgres://postgres@127.0.0.1:5432/test]
//
// Per store: `bin/devicegate.js serve -c <config>` (a fresh data dir, or a fresh PostgreSQL schema
// dropped afterwards) with `signals.ssf.allow_http_push` (the receivers are on 127.0.0.1 over http)
// and one webhook endpoint taking `grant.revoked`. The grants are seeded straight into the database
// while the server is stopped: `--latency` people with one grant each, and two people with `--bulk`
// grants each. A receiver client (`ssf` scope) creates a push stream to this process.
//   1. latency: one admin revocation at a time (`POST /admin/api/revocations {kind: grant}`),
//      timed from when the request is sent to the arrival of the SET naming that grant (its
//      `sub_id.session`) and of its webhook; the next revocation follows the arrival.
//   2. push throughput: one admin revocation of a person with `--bulk` grants (one UPDATE); the
//      time until all their SETs (one per grant, plus the user-level one) and webhooks arrived.
//   3. poll throughput: the push stream is deleted and a poll stream created; the other bulk
//      person is revoked, and this process polls (maxEvents 1000, returnImmediately, acknowledging
//      each page with the next) until it has every SET.
// Every SET received is verified afterwards with jose against the server's JWKS, every webhook
// against its HMAC; the server's CPU time (its process only, not PostgreSQL) is read from /proc.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose'
import { ROOT, findSqliteFile, makeRunDir } from './lib/targets.mjs'
import { startConfigured, writeConfig } from './lib/configured.mjs'
import { clientToken, createPgSchema, rowsFor, seedPgRows, seedSqliteRows } from './lib/seed.mjs'
import { CLK_TCK, processTicks } from './lib/proc.mjs'
import { percentile } from './lib/configured.mjs'

const requireFromRoot = createRequire(join(ROOT, 'package.json'))
const args = process.argv.slice(2)
const arg = (name) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
const LATENCY_N = Number(arg('latency') ?? 200)
const BULK = Number(arg('bulk') ?? 10_000)
const WEBHOOK = !args.includes('--no-webhook')
const POLL = !args.includes('--no-poll')
const PG = arg('pg')
const RECEIVER_SECRET = 'bench-receiver-secret-0123456789'
const ADMIN_SECRET = 'bench-admin-client-secret-0123456789'
const PUSH_AUTH = `Bearer ${randomBytes(24).toString('base64url')}`
const WEBHOOK_SECRET = `whsec_${randomBytes(32).toString('base64')}`
const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const log = (s) => console.error(s)
const nowMs = () => performance.now()
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
const b64 = (id, secret) => 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64')

/** The receiving side: an RFC 8935 push endpoint and a webhook endpoint, recording arrivals. */
async function startReceiver() {
  const state = { sets: [], webhooks: [], waiters: new Map(), refusedAuth: 0 }
  const arrived = (key, at) => {
    const w = state.waiters.get(key)
    if (w) {
      state.waiters.delete(key)
      w(at)
    }
  }
  const server = createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const at = nowMs()
      const body = Buffer.concat(chunks).toString('utf8')
      if (req.method === 'POST' && req.url === '/ssf') {
        if (req.headers.authorization !== PUSH_AUTH) {
          state.refusedAuth++
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"err":"authentication_failed"}')
          return
        }
        const claims = decodeJwt(body)
        state.sets.push({ at, set: body })
        arrived(`set:${claims.sub_id?.session?.id ?? `user:${claims.sub_id?.user?.sub ?? claims.sub_id?.user?.identifiers?.[0]?.sub}`}`, at)
        res.writeHead(202).end()
        return
      }
      if (req.method === 'POST' && req.url === '/webhook') {
        state.webhooks.push({ at, body, headers: { id: req.headers['webhook-id'], timestamp: req.headers['webhook-timestamp'], signature: req.headers['webhook-signature'] } })
        const data = JSON.parse(body).data
        if (data?.grantId) arrived(`webhook:${data.grantId}`, at)
        res.writeHead(204).end()
        return
      }
      res.writeHead(404).end()
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    state,
    /** Resolves with the arrival time (performance.now ms) of `key`, or null after timeoutMs. */
    waitFor(key, timeoutMs = 30_000) {
      return new Promise((resolve) => {
        const t = setTimeout(() => {
          state.waiters.delete(key)
          resolve(null)
        }, timeoutMs)
        state.waiters.set(key, (at) => {
          clearTimeout(t)
          resolve(at)
        })
      })
    },
    close: () => new Promise((r) => server.close(r)),
  }
}

function verifyWebhook(w) {
  const key = Buffer.from(WEBHOOK_SECRET.slice('whsec_'.length), 'base64')
  const expected = createHmac('sha256', key).update(`${w.headers.id}.${w.headers.timestamp}.${w.body}`).digest()
  return String(w.headers.signature ?? '')
    .split(' ')
    .some((s) => s.startsWith('v1,') && Buffer.from(s.slice(3), 'base64').length === expected.length && timingSafeEqual(Buffer.from(s.slice(3), 'base64'), expected))
}

async function json(res) {
  const text = await res.text()
  if (!res.ok) throw new Error(`${res.status} ${text.slice(0, 300)}`)
  return text ? JSON.parse(text) : undefined
}

async function runStore(store, runDir, receiver) {
  const pg = store === 'postgres' ? await createPgSchema(PG, 'signals') : undefined
  try {
    const { hash } = requireFromRoot('@node-rs/argon2')
    const personHash = await hash(randomBytes(24).toString('base64url'))
    const extra = {
      scopes: { ssf: 'Shared Signals receiver', admin: 'Administration' },
      clients: [
        { client_id: 'receiver', name: 'Bench receiver', type: 'confidential', client_secret_hash: await hash(RECEIVER_SECRET), grant_types: ['client_credentials'], scopes: ['ssf'] },
        { client_id: 'ops', name: 'Bench admin', type: 'confidential', client_secret_hash: await hash(ADMIN_SECRET), grant_types: ['client_credentials'], scopes: ['admin'] },
      ],
      // The grants' subjects must be people: grants of unknown subjects are revoked at start (orphans).
      users: [...Array.from({ length: LATENCY_N }, (_, i) => `lat-${i}`), 'bulk-push', 'bulk-poll'].map((username) => ({ username, password_hash: personHash })),
      signals: {
        allow_private_endpoints: true, // the receivers are on 127.0.0.1 (SSRF guard, README "Signals")
        ssf: { allow_http_push: true },
        ...(WEBHOOK ? { webhooks: [{ id: 'bench', url: `${receiver.base}/webhook`, secret_env: 'BENCH_WEBHOOK_SECRET', events: ['grant.revoked'] }] } : {}),
      },
    }
    const env = { BENCH_WEBHOOK_SECRET: WEBHOOK_SECRET }
    const { configFile, dataDir } = await writeConfig(runDir, `signals-${store}`, { ...(pg ? { storageUrl: pg.storageUrl } : {}), extra })
    let inst = await startConfigured(runDir, `signals-${store}-schema`, configFile, env)
    await inst.stop()
    const single = Array.from({ length: LATENCY_N }, (_, i) => rowsFor(`lat-${i}`, 1))
    const bulk = [rowsFor('bulk-push', BULK), rowsFor('bulk-poll', BULK)]
    const t = Date.now()
    if (pg) await seedPgRows(pg.storageUrl, [...single, ...bulk])
    else seedSqliteRows(findSqliteFile(dataDir), [...single, ...bulk])
    log(`  ${store}: seeded ${LATENCY_N} + 2 × ${BULK} grants in ${((Date.now() - t) / 1000).toFixed(1)} s`)

    inst = await startConfigured(runDir, `signals-${store}`, configFile, env)
    try {
      const origin = inst.origin
      const jwks = createLocalJWKSet(await json(await fetch(`${origin}/jwks`)))
      const ssfToken = await clientToken(origin, b64('receiver', RECEIVER_SECRET), 'ssf')
      const adminToken = await clientToken(origin, b64('ops', ADMIN_SECRET), 'admin')
      const ssf = (method, path, body) =>
        fetch(`${origin}${path}`, { method, headers: { authorization: `Bearer ${ssfToken}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) }).then(json)
      const revoke = (body) => fetch(`${origin}/admin/api/revocations`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(json)
      const push = await ssf('POST', '/ssf/stream', { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${receiver.base}/ssf`, authorization_header: PUSH_AUTH }, events_requested: [SESSION_REVOKED], description: 'bench push' })
      const result = { store, load: [] }

      // 1. latency, one revocation at a time
      receiver.state.sets.length = 0
      receiver.state.webhooks.length = 0
      result.load.push(loadavg())
      const setMs = []
      const hookMs = []
      for (const s of single) {
        const grantId = s.grants[0].id
        const setAt = receiver.waitFor(`set:${grantId}`)
        const hookAt = WEBHOOK ? receiver.waitFor(`webhook:${grantId}`) : Promise.resolve(null)
        const t0 = nowMs()
        const r = await revoke({ kind: 'grant', grant_id: grantId, reason: 'bench' })
        if (r.grants !== 1) throw new Error(`revoke ${grantId}: ${JSON.stringify(r)}`)
        const [a, b] = await Promise.all([setAt, hookAt])
        if (a === null) throw new Error(`${store}: no SET for ${grantId} within 30 s`)
        setMs.push(a - t0)
        if (b !== null) hookMs.push(b - t0)
        await sleep(Math.random() * 10)
      }
      setMs.sort((x, y) => x - y)
      hookMs.sort((x, y) => x - y)
      result.latency = { n: setMs.length, p50: percentile(setMs, 50), p99: percentile(setMs, 99), max: setMs.at(-1), hookN: hookMs.length, hookP50: percentile(hookMs, 50), hookP99: percentile(hookMs, 99) }
      log(`  ${store} latency: SET p50 ${result.latency.p50.toFixed(0)} ms, p99 ${result.latency.p99.toFixed(0)} ms; webhook p50 ${result.latency.hookP50?.toFixed(0)} ms, p99 ${result.latency.hookP99?.toFixed(0)} ms`)
      const latencySets = [...receiver.state.sets]
      const latencyHooks = [...receiver.state.webhooks]

      // 2. push throughput: one person's BULK grants in one revocation
      receiver.state.sets.length = 0
      receiver.state.webhooks.length = 0
      result.load.push(loadavg())
      {
        const want = BULK + 1 // one SET per grant and the user-level one
        const cpu0 = processTicks(inst.pid)
        const t0 = nowMs()
        const r = await revoke({ kind: 'user', username: 'bulk-push', reason: 'bench' })
        const answered = nowMs() - t0
        if (r.grants !== BULK) throw new Error(`bulk revoke: ${JSON.stringify(r)}`)
        const deadline = t0 + 600_000
        while ((receiver.state.sets.length < want || (WEBHOOK && receiver.state.webhooks.length < BULK)) && nowMs() < deadline) await sleep(20)
        const sets = receiver.state.sets
        const last = sets.at(-1)?.at - t0
        const lastHook = receiver.state.webhooks.at(-1)?.at - t0
        const cpuMs = ((processTicks(inst.pid) - cpu0) / CLK_TCK) * 1000
        result.push = { n: sets.length, answered, first: sets[0]?.at - t0, last, perSecond: sets.length / (last / 1000), hooks: receiver.state.webhooks.length, lastHook, cpuMsPerEvent: cpuMs / (sets.length + receiver.state.webhooks.length) }
        log(`  ${store} push: ${sets.length} SETs in ${(last / 1000).toFixed(1)} s (${result.push.perSecond.toFixed(0)}/s; first after ${result.push.first.toFixed(0)} ms), ${result.push.hooks} webhooks in ${(lastHook / 1000).toFixed(1)} s; server CPU ${result.push.cpuMsPerEvent.toFixed(2)} ms per delivery`)
      }
      const pushSets = [...receiver.state.sets]
      const pushHooks = [...receiver.state.webhooks]

      // 3. poll throughput
      if (POLL) {
        await fetch(`${origin}/ssf/stream?stream_id=${encodeURIComponent(push.stream_id)}`, { method: 'DELETE', headers: { authorization: `Bearer ${ssfToken}` } })
        // Wait for the webhook deliveries of phase 2 to finish (they share the dispatcher).
        const poll = await ssf('POST', '/ssf/stream', { delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: [SESSION_REVOKED], description: 'bench poll' })
        result.load.push(loadavg())
        const want = BULK + 1
        const got = []
        const cpu0 = processTicks(inst.pid)
        const t0 = nowMs()
        await revoke({ kind: 'user', username: 'bulk-poll', reason: 'bench' })
        let ack = []
        let polls = 0
        let first
        while (got.length < want && nowMs() - t0 < 600_000) {
          const page = await ssf('POST', poll.delivery.endpoint_url.slice(origin.length), { ack, maxEvents: 1000, returnImmediately: true })
          polls++
          const entries = Object.entries(page.sets ?? {})
          if (entries.length && first === undefined) first = nowMs() - t0
          for (const [, set] of entries) got.push(set)
          ack = entries.map(([jti]) => jti)
          if (entries.length === 0) await sleep(20)
        }
        await ssf('POST', poll.delivery.endpoint_url.slice(origin.length), { ack, maxEvents: 0, returnImmediately: true })
        const last = nowMs() - t0
        const cpuMs = ((processTicks(inst.pid) - cpu0) / CLK_TCK) * 1000
        result.poll = { n: got.length, polls, first, last, perSecond: got.length / (last / 1000), cpuMsPerEvent: cpuMs / got.length }
        log(`  ${store} poll: ${got.length} SETs in ${(last / 1000).toFixed(1)} s (${result.poll.perSecond.toFixed(0)}/s; ${polls} polls; first after ${first?.toFixed(0)} ms); server CPU ${result.poll.cpuMsPerEvent.toFixed(2)} ms per SET (webhooks included)`)
        pushSets.push(...got.map((set) => ({ set })))
      }

      // Every SET verified (signature, typ, iss, aud), every webhook signature checked.
      let bad = 0
      for (const { set } of [...latencySets, ...pushSets]) {
        try {
          await jwtVerify(set, jwks, { issuer: origin, audience: 'receiver', typ: 'secevent+jwt' })
        } catch {
          bad++
        }
      }
      const hooks = [...latencyHooks, ...pushHooks]
      result.verified = { sets: latencySets.length + pushSets.length, badSets: bad, hooks: hooks.length, badHooks: hooks.filter((w) => !verifyWebhook(w)).length, refusedAuth: receiver.state.refusedAuth }
      log(`  ${store}: verified ${result.verified.sets} SETs (${bad} bad), ${hooks.length} webhooks (${result.verified.badHooks} bad)`)
      return result
    } finally {
      await inst.stop()
    }
  } finally {
    await pg?.drop()
  }
}

const runDir = makeRunDir()
log(`run dir ${runDir}`)
const receiver = await startReceiver()
const results = []
try {
  results.push(await runStore('sqlite', runDir, receiver))
  if (PG) results.push(await runStore('postgres', runDir, receiver))
} finally {
  await receiver.close()
}
const f0 = (x) => (x == null || Number.isNaN(x) ? '-' : x.toFixed(0))
console.log(`revocation → receiver (ms from the admin request); ${LATENCY_N} single revocations; push and poll throughput for ${BULK} at once`)
console.log(['store'.padEnd(9), 'SET p50'.padStart(8), 'SET p99'.padStart(8), 'max'.padStart(6), 'hook p50'.padStart(9), 'hook p99'.padStart(9), 'push/s'.padStart(7), 'push s'.padStart(7), 'hooks s'.padStart(8), 'poll/s'.padStart(7), 'poll s'.padStart(7), 'CPU ms/push'.padStart(12), 'CPU ms/poll'.padStart(12), '  load (1/5/15 min) per phase'].join(' '))
for (const r of results)
  console.log(
    [
      r.store.padEnd(9),
      f0(r.latency.p50).padStart(8),
      `${f0(r.latency.p99)}${r.latency.p99 < 1000 ? '' : '!'}`.padStart(8),
      f0(r.latency.max).padStart(6),
      f0(r.latency.hookP50).padStart(9),
      f0(r.latency.hookP99).padStart(9),
      f0(r.push.perSecond).padStart(7),
      (r.push.last / 1000).toFixed(1).padStart(7),
      (r.push.lastHook / 1000).toFixed(1).padStart(8),
      f0(r.poll?.perSecond).padStart(7),
      r.poll ? (r.poll.last / 1000).toFixed(1).padStart(7) : '-'.padStart(7),
      r.push.cpuMsPerEvent.toFixed(2).padStart(12),
      (r.poll?.cpuMsPerEvent.toFixed(2) ?? '-').padStart(12),
      `  ${r.load.join(' | ')}`,
    ].join(' '),
  )
for (const r of results) console.log(`${r.store}: ${r.verified.sets} SETs verified with jose (${r.verified.badSets} failed), ${r.verified.hooks} webhook signatures checked (${r.verified.badHooks} failed)`)
