#!/usr/bin/env node
// The durable write of a device authorization (RFC 8628 §3.1), measured alone on SQLite: N device
// grants created through the store the server runs (`dist/storage`), each with its declared
// storage class (one `createDeviceGrant`, as the endpoint calls it), in groups of concurrent calls
// that share one group commit as the requests of one event-loop turn do. Optionally each with an
// audit record in the same turn (`--audit`). Then the read of a poll (RFC 8628 §3.4): `--lookups`
// finds of those grants by device code key, in groups of concurrent calls, round-robin.
//
//   npm run build && node bench/device-grant-writes.mjs [--dist DIR[#VAR=1+VAR=2],…] [--grants 5000]
//        [--group 16] [--rounds 3] [--audit] [--lookups 50000]
//
// Each (round, build) runs in a child process of its own on a fresh data directory; builds
// alternate within each round (the first order reversed every other round). Reported per build
// (medians over rounds): CPU µs per grant (user + system of the child over the measured inserts),
// bytes written per grant (`wchar` of /proc/self/io: WAL frames and checkpoints, the checkpointer
// thread included, until the store is closed), the database file's size per grant after close,
// and CPU µs per lookup.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'

const { values: opts } = parseArgs({
  options: {
    dist: { type: 'string', default: 'dist' },
    grants: { type: 'string', default: '5000' },
    group: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    audit: { type: 'boolean', default: false },
    lookups: { type: 'string', default: '50000' },
    child: { type: 'boolean', default: false },
  },
})

const wchar = () => Number(/wchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))[1])

async function child() {
  const dist = resolve(opts.dist)
  const { openStore } = await import(pathToFileURL(join(dist, 'storage', 'index.js')).href)
  const { recordId, sha256Hex, systemRandom, randomToken } = await import(pathToFileURL(join(dist, 'system.js')).href)
  const dir = mkdtempSync(join(tmpdir(), 'dg-writes-'))
  const file = join(dir, 'devicegate.db')
  const store = await openStore(`sqlite:${file}`)
  const now = Math.floor(Date.now() / 1000)
  const alphabet = 'BCDFGHJKLMNPQRSTVWXZ'
  const grant = () => {
    const id = recordId(systemRandom)
    return {
      id, deviceCodeHash: `${id}.${sha256Hex(randomToken(systemRandom, 32))}`,
      userCode: Array.from(systemRandom.bytes(8), (b) => alphabet[b % 20]).join(''),
      clientId: 'demo-cli', scope: 'read offline_access', status: 'pending', createdAt: now, expiresAt: now + 600,
      intervalSeconds: 5, lastPolledAt: null, subject: null, decidedAt: null, requestIp: '127.0.0.1',
      requestUserAgent: 'autocannon', dpopJkt: null, grantId: null,
    }
  }
  const event = (g) => ({ time: now, type: 'device_authorization.requested', actor: 'client:demo-cli', clientId: 'demo-cli', subject: null, ip: '127.0.0.1', grantId: null, details: JSON.stringify({ deviceGrantId: g.id, scope: g.scope, dpopBound: false, storageClass: 'unknown', userAgent: 'autocannon' }) })
  const group = Number(opts.group)
  const keys = []
  const run = async (n) => {
    for (let i = 0; i < n; i += group) {
      const calls = []
      for (let j = 0; j < group && i + j < n; j++) {
        const g = grant()
        keys.push(g.deviceCodeHash)
        calls.push(store.createDeviceGrant(g, 'unknown'))
        if (opts.audit) calls.push(store.appendAuditEvents([event(g)], (prev, e) => sha256Hex(prev + JSON.stringify(e))))
      }
      await Promise.all(calls)
    }
  }
  await run(1000) // warm-up: JIT, statement cache, the first pages
  const n = Number(opts.grants)
  const w0 = wchar()
  const c0 = process.cpuUsage()
  await run(n)
  const c = process.cpuUsage(c0)
  const lookups = Number(opts.lookups)
  const find = async (from, count) => {
    for (let i = 0; i < count; i += group) {
      const calls = []
      for (let j = 0; j < group && i + j < count; j++) calls.push(store.findDeviceGrantByDeviceCodeHash(keys[(from + i + j) % keys.length]))
      for (const g of await Promise.all(calls)) if (g === undefined) throw new Error('a created grant was not found')
    }
  }
  await find(0, 5000) // warm-up
  const l0 = process.cpuUsage()
  await find(5000, lookups)
  const l = process.cpuUsage(l0)
  await store.close()
  const bytes = wchar() - w0
  const size = statSync(file).size
  rmSync(dir, { recursive: true, force: true })
  console.log(JSON.stringify({ cpuUsPerGrant: (c.user + c.system) / n, bytesPerGrant: bytes / n, fileBytesPerGrant: size / (n + 1000), cpuUsPerLookup: (l.user + l.system) / lookups }))
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

function parent() {
  const dists = opts.dist.split(',')
  const results = new Map(dists.map((d) => [d, []]))
  for (let round = 0; round < Number(opts.rounds); round++) {
    const order = round % 2 ? [...dists].reverse() : dists
    for (const d of order) {
      // `DIR#NAME=VALUE+NAME=VALUE`: that build with these environment variables.
      const [dir, vars = ''] = d.split('#')
      const env = { ...process.env, ...Object.fromEntries(vars.split('+').filter(Boolean).map((v) => v.split('='))) }
      const args = [process.argv[1], '--child', '--dist', dir, '--grants', opts.grants, '--group', opts.group, '--lookups', opts.lookups, ...(opts.audit ? ['--audit'] : [])]
      const r = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', env }))
      results.get(d).push(r)
      console.error(`round ${round + 1} ${d}: ${r.cpuUsPerGrant.toFixed(1)} µs, ${Math.round(r.bytesPerGrant)} B written, ${Math.round(r.fileBytesPerGrant)} B file per grant; ${r.cpuUsPerLookup.toFixed(2)} µs per lookup`)
    }
  }
  console.log(`grants ${opts.grants}, group ${opts.group}${opts.audit ? ', with audit record' : ''}, medians of ${opts.rounds} rounds`)
  console.log('build'.padEnd(40) + 'CPU µs/grant'.padStart(14) + 'B written/grant'.padStart(17) + 'file B/grant'.padStart(14) + 'CPU µs/lookup'.padStart(15))
  for (const [d, rs] of results)
    console.log(
      d.padEnd(40) +
        median(rs.map((r) => r.cpuUsPerGrant)).toFixed(1).padStart(14) +
        String(Math.round(median(rs.map((r) => r.bytesPerGrant)))).padStart(17) +
        String(Math.round(median(rs.map((r) => r.fileBytesPerGrant)))).padStart(14) +
        median(rs.map((r) => r.cpuUsPerLookup)).toFixed(2).padStart(15),
    )
}

if (opts.child) await child()
else parent()
