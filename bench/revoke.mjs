#!/usr/bin/env node
// Governance: time central revocation of one user's 100,000 token families on SQLite.
//   npm run build && node bench/revoke.mjs [--grants 100000]
// Seeds the families (each with an access and a refresh token) straight into a fresh SQLite file,
// then times RevocationService.revoke({ kind: 'user' }) — what `devicegate revoke --user` and the
// admin API call — and the kill switch (`--before`) over the same table.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import Database from 'better-sqlite3'

const { values } = parseArgs({ options: { grants: { type: 'string', default: '100000' } } })
const N = Number(values.grants)
const { openStore } = await import('../dist/storage/index.js')
const { RevocationService } = await import('../dist/governance/revocation.js')

const dir = mkdtempSync(join(tmpdir(), 'devicegate-bench-revoke-'))
const file = join(dir, 'bench.db')
try {
  const store = await openStore(`sqlite:${file}`)
  const db = new Database(file)
  const now = Math.floor(Date.now() / 1000)
  const g = db.prepare('insert into grants (id, client_id, subject, scope, created_at, expires_at) values (?, ?, ?, ?, ?, ?)')
  const a = db.prepare("insert into access_tokens (token_hash, jti, grant_id, client_id, subject, scope, issued_at, expires_at, format) values (?, ?, ?, 'cli', ?, 'read', ?, ?, 'jwt')")
  const r = db.prepare('insert into refresh_tokens (token_hash, id, grant_id, client_id, subject, scope, issued_at, expires_at) values (?, ?, ?, ?, ?, ?, ?, ?)')
  let t0 = performance.now()
  db.transaction(() => {
    for (let i = 0; i < N; i++) {
      g.run(`g${i}`, 'cli', 'victim', 'read offline_access', now - 1000, now + 86_400)
      a.run(randomBytes(32).toString('hex'), `j${i}`, `g${i}`, 'victim', now - 1000, now + 600)
      r.run(randomBytes(32).toString('hex'), `r${i}`, `g${i}`, 'cli', 'victim', 'read offline_access', now - 1000, now + 86_400)
    }
    for (let i = 0; i < N / 10; i++) g.run(`o${i}`, 'cli', `user${i % 100}`, 'read', now - 500, now + 86_400)
  })()
  db.close()
  console.log(`seeded ${N.toLocaleString('en-US')} families of one user (+${(N / 10).toLocaleString('en-US')} of others) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

  const service = new RevocationService(store, { nowSeconds: () => now })
  t0 = performance.now()
  const dry = await service.revoke({ kind: 'user', subject: 'victim' }, { actor: 'bench', dryRun: true })
  console.log(`dry run: ${dry.grants.toLocaleString('en-US')} families would be revoked (${(performance.now() - t0).toFixed(0)} ms)`)
  t0 = performance.now()
  const result = await service.revoke({ kind: 'user', subject: 'victim' }, { actor: 'bench', listLimit: 0 })
  const ms = performance.now() - t0
  console.log(`revoke --user: ${result.grants.toLocaleString('en-US')} families in ${ms.toFixed(0)} ms (SQLite, one UPDATE)`)
  t0 = performance.now()
  const kill = await service.revoke({ kind: 'before', time: now }, { actor: 'bench', listLimit: 0 })
  console.log(`revoke --before (kill switch): ${kill.grants.toLocaleString('en-US')} more families in ${(performance.now() - t0).toFixed(0)} ms`)
  await store.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
