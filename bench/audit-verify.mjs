#!/usr/bin/env node
// Governance: time `audit verify` over a log of 1,000,000 events (SQLite).
//   npm run build && node bench/audit-verify.mjs [--events 1000000]
// Appends the events through Store.appendAuditEvents in batches (the group-commit path the server
// uses), signs a checkpoint, then times verifyAuditLog — what `devicegate audit verify` runs.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { events: { type: 'string', default: '1000000' } } })
const N = Number(values.events)
const { openStore } = await import('../dist/storage/index.js')
const audit = await import('../dist/governance/audit.js')

const dir = mkdtempSync(join(tmpdir(), 'devicegate-bench-audit-'))
try {
  const store = await openStore(`sqlite:${join(dir, 'audit.db')}`)
  const key = randomBytes(32)
  const log = new audit.AuditLog({ store, clock: { nowSeconds: () => Math.floor(Date.now() / 1000) }, checkpointKey: key })
  const types = ['device_authorization.requested', 'user_code.looked_up', 'device_code.approved', 'token.issued', 'token.refreshed']
  let t0 = performance.now()
  const BATCH = 5000
  for (let i = 0; i < N; i += BATCH) {
    const batch = []
    for (let j = i; j < Math.min(N, i + BATCH); j++) {
      batch.push(log.toNewEvent({ type: types[j % types.length], actor: `user${j % 1000}`, clientId: 'cli', subject: `user${j % 1000}`, ip: `203.0.113.${j % 250}`, grantId: `g${j}`, details: { deviceGrantId: `dg${j}`, scope: 'read offline_access' } }))
    }
    await store.appendAuditEvents(batch, audit.chainHash)
  }
  const appendSeconds = (performance.now() - t0) / 1000
  await log.checkpoint()
  console.log(`appended ${N.toLocaleString('en-US')} events in ${appendSeconds.toFixed(1)} s (${Math.round(N / appendSeconds).toLocaleString('en-US')} events/s, batches of ${BATCH})`)
  t0 = performance.now()
  const result = await audit.verifyAuditLog(store, { key })
  const s = (performance.now() - t0) / 1000
  console.log(`audit verify: ${result.ok ? 'ok' : 'FAILED ' + JSON.stringify(result.problem)} — ${result.checked.toLocaleString('en-US')} records in ${s.toFixed(2)} s (${Math.round(result.checked / s).toLocaleString('en-US')} records/s), ${result.checkpoints} checkpoint(s)`)
  await store.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
