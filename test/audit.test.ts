/**
 * Governance: the tamper-evident audit log. RFC 8785 canonical JSON, the hash chain, signed
 * checkpoints, and `audit verify` naming each kind of tampering; the events a device flow writes.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  auditKeyId,
  AuditLog,
  auditRecordObject,
  canonicalAuditRecord,
  canonicalize,
  chainHash,
  exportAuditLog,
  verifyAuditLog,
} from '../src/governance/audit.js'
import { openStore } from '../src/storage/index.js'
import type { AuditEventRecord, Store } from '../src/storage/store.js'
import { approveAs, postForm, startTestServer, type TestServer } from './support/server.js'

describe('RFC 8785 JSON canonicalization', () => {
  it('sorts members by UTF-16 code units and writes numbers and strings as ECMAScript does', () => {
    // RFC 8785 §3.2.3 sorting example (code units, not code points: U+1F600 sorts before U+FB33).
    const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' }
    // (Read the member names from the text: JSON.parse would put the integer-like name first.)
    expect([...canonicalize(input).matchAll(/"((?:[^"\\]|\\.)*)":/g)].map((m) => JSON.parse(`"${m[1]}"`))).toEqual(['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'])
    // RFC 8785 §3.2.2.3 number examples.
    expect(canonicalize([333333333.33333329, 1e30, 4.5, 0.002, 1e-27, -0])).toBe('[333333333.3333333,1e+30,4.5,0.002,1e-27,0]')
    expect(canonicalize({ b: [true, null, 'x\n"'], a: { d: 1, c: undefined } })).toBe('{"a":{"d":1},"b":[true,null,"x\\n\\""]}')
    expect(() => canonicalize({ n: Number.NaN })).toThrow(TypeError)
  })

  it('writes audit records exactly as the generic canonicaliser does', () => {
    const body = { seq: 7, time: 1_750_000_000, type: 'token.issued', actor: 'client:cli', clientId: 'cli', subject: null, ip: '::1', grantId: 'g\u00e9', details: '{"a":1}' }
    expect(canonicalAuditRecord(body)).toBe(canonicalize(auditRecordObject(body)))
  })
})

describe('audit log verification', () => {
  let dir: string
  let file: string
  let store: Store
  let log: AuditLog
  const key = randomBytes(32)
  const N = 30

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devicegate-audit-'))
    file = join(dir, 'audit.db')
    store = await openStore(`sqlite:${file}`)
    let t = 1_750_000_000
    log = new AuditLog({ store, clock: { nowSeconds: () => t++ }, checkpointKey: key, checkpointFile: join(dir, 'checkpoints.jsonl') })
    for (let i = 1; i <= N; i++) void log.append({ type: 'token.issued', clientId: 'cli', subject: `user${i}`, ip: '203.0.113.7', grantId: `g${i}`, details: { i } })
    await log.flush()
    await log.checkpoint()
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const verify = () => verifyAuditLog(store, { key, checkpointFile: join(dir, 'checkpoints.jsonl') })
  /** Runs SQL on the database file behind the store's back, as an attacker with file access would. */
  function tamper(fn: (db: Database.Database) => void) {
    const db = new Database(file)
    try {
      fn(db)
    } finally {
      db.close()
    }
  }
  const row = (db: Database.Database, seq: number) => {
    const r = db.prepare('select * from audit_events where seq = ?').get(seq) as Record<string, any>
    return { seq: r.seq, time: r.time, type: r.type, actor: r.actor, clientId: r.client_id, subject: r.subject, ip: r.ip, grantId: r.grant_id, details: r.details, prevHash: r.prev_hash, hash: r.hash } as AuditEventRecord
  }
  /** Moves records with seq >= from by delta (through a high range, so the primary key never collides). */
  const shift = (db: Database.Database, from: number, delta: number) => {
    db.prepare('update audit_events set seq = seq + 1000000 where seq >= ?').run(from)
    db.prepare('update audit_events set seq = seq - 1000000 + ? where seq >= 1000000').run(delta)
    db.prepare('update audit_head set seq = seq + ?').run(delta)
  }

  it('passes an untouched log and reports the checkpoints it checked', async () => {
    const result = await verify()
    expect(result).toMatchObject({ ok: true, checked: N, lastSeq: N, uncheckpointed: 0 })
    expect(result.checkpoints).toBe(1)
  })

  it('names an edited record', async () => {
    tamper((db) => db.prepare(`update audit_events set subject = 'mallory' where seq = 10`).run())
    expect((await verify()).problem).toMatchObject({ kind: 'edited', seq: 10 })
  })

  it('names an edited record whose hash was recomputed', async () => {
    tamper((db) => {
      const r = { ...row(db, 10), subject: 'mallory' }
      db.prepare(`update audit_events set subject = 'mallory', hash = ? where seq = 10`).run(chainHash(r.prevHash, r))
    })
    expect((await verify()).problem).toMatchObject({ kind: 'edited', seq: 10 })
  })

  it('names a deleted record (gap)', async () => {
    tamper((db) => db.prepare('delete from audit_events where seq = 10').run())
    expect((await verify()).problem).toMatchObject({ kind: 'deleted', seq: 10 })
  })

  it('names a deleted record when the later ones were renumbered', async () => {
    tamper((db) => {
      db.prepare('delete from audit_events where seq = 10').run()
      shift(db, 11, -1)
    })
    expect((await verify()).problem).toMatchObject({ kind: 'deleted', seq: 10 })
  })

  it('names an inserted record (forged with a correct link and hash, later records renumbered)', async () => {
    tamper((db) => {
      const prev = row(db, 9)
      shift(db, 10, 1)
      const forged = { ...prev, seq: 10, subject: 'mallory', details: '{}', prevHash: prev.hash, hash: '' }
      forged.hash = chainHash(prev.hash, forged)
      db.prepare('insert into audit_events values (?,?,?,?,?,?,?,?,?,?,?,null)').run(forged.seq, forged.time, forged.type, forged.actor, forged.clientId, forged.subject, forged.ip, forged.grantId, forged.details, forged.prevHash, forged.hash)
    })
    expect((await verify()).problem).toMatchObject({ kind: 'inserted', seq: 10 })
  })

  it('names an inserted record with a made-up hash', async () => {
    tamper((db) => {
      shift(db, 10, 1)
      db.prepare('insert into audit_events values (10, 1, ?, null, null, null, null, null, ?, ?, ?, null)').run('token.revoked', '{}', 'f'.repeat(64), 'e'.repeat(64))
    })
    expect((await verify()).problem).toMatchObject({ kind: 'inserted', seq: 10 })
  })

  it('names two reordered records', async () => {
    tamper((db) => {
      db.prepare('update audit_events set seq = -1 where seq = 10').run()
      db.prepare('update audit_events set seq = 10 where seq = 11').run()
      db.prepare('update audit_events set seq = 11 where seq = -1').run()
    })
    expect((await verify()).problem).toMatchObject({ kind: 'reordered', seq: 10 })
  })

  it('detects a chain rewritten from a record to the end through the signed checkpoint', async () => {
    tamper((db) => {
      let prev = row(db, 9).hash
      for (let seq = 10; seq <= N; seq++) {
        const r = { ...row(db, seq), prevHash: prev }
        if (seq === 10) r.subject = 'mallory'
        r.hash = chainHash(prev, r)
        db.prepare('update audit_events set subject = ?, prev_hash = ?, hash = ? where seq = ?').run(r.subject, r.prevHash, r.hash, seq)
        prev = r.hash
      }
      db.prepare('update audit_head set hash = ?').run(prev)
    })
    // The keyed seal of record 10 no longer matches: the first rewritten record, not the checkpoint.
    expect((await verify()).problem).toMatchObject({ kind: 'rewritten', seq: 10 })
    // Without seals (a log written before them), the signed checkpoint still catches it.
    tamper((db) => db.prepare('update audit_events set mac = null').run())
    expect((await verify()).problem).toMatchObject({ kind: 'checkpoint_mismatch', seq: N })
  })

  it('names the first of two records swapped and re-linked, not the next checkpoint', async () => {
    tamper((db) => {
      const a = row(db, 12)
      const b = row(db, 13)
      const swap = (seq: number, from: AuditEventRecord) =>
        db.prepare('update audit_events set time = ?, type = ?, actor = ?, client_id = ?, subject = ?, ip = ?, grant_id = ?, details = ? where seq = ?')
          .run(from.time, from.type, from.actor, from.clientId, from.subject, from.ip, from.grantId, from.details, seq)
      swap(12, b)
      swap(13, a)
      let prev = row(db, 11).hash
      for (let seq = 12; seq <= N; seq++) {
        const r = { ...row(db, seq), prevHash: prev }
        r.hash = chainHash(prev, r)
        db.prepare('update audit_events set prev_hash = ?, hash = ? where seq = ?').run(r.prevHash, r.hash, seq)
        prev = r.hash
      }
      db.prepare('update audit_head set hash = ?').run(prev)
    })
    const result = await verify()
    expect(result.problem).toMatchObject({ kind: 'rewritten', seq: 12 })
    expect(result.checked).toBe(11)
  })

  it('says "key mismatch", not "forged", for checkpoints and seals made with another instance\'s key', async () => {
    const other = randomBytes(32)
    const result = await verifyAuditLog(store, { key: other, checkpointFile: join(dir, 'checkpoints.jsonl') })
    expect(result.problem?.kind).toBe('key_mismatch')
    expect(result.problem?.message).toContain(`was signed with checkpoint key ${auditKeyId(key)}, but this verifier has key ${auditKeyId(other)}`)
    // Seals alone (no checkpoints): the first record names the mismatch too.
    tamper((db) => db.prepare('delete from audit_checkpoints').run())
    const records = await verifyAuditLog(store, { key: other })
    expect(records.problem).toMatchObject({ kind: 'key_mismatch', seq: 1 })
  })

  it('refuses a record whose seal was removed after sealed records', async () => {
    tamper((db) => db.prepare('update audit_events set mac = null where seq = 20').run())
    expect((await verify()).problem).toMatchObject({ kind: 'rewritten', seq: 20 })
  })

  it('detects a log cut short, even with the head row and the checkpoint table fixed up', async () => {
    tamper((db) => {
      db.prepare('delete from audit_events where seq > 25').run()
      db.prepare('update audit_head set seq = 25, hash = (select hash from audit_events where seq = 25)').run()
      db.prepare('delete from audit_checkpoints').run()
    })
    const result = await verify()
    expect(result.problem).toMatchObject({ kind: 'truncated', seq: 26 })
    // Without the file the head row alone would not catch it: the checkpoint file is what does.
    expect((await verifyAuditLog(store, { key })).ok).toBe(true)
  })

  it('detects a log cut short from the head row when only records were deleted', async () => {
    tamper((db) => {
      db.prepare('delete from audit_events where seq > 28').run()
      db.prepare('delete from audit_checkpoints').run()
    })
    expect((await verifyAuditLog(store, { key })).problem).toMatchObject({ kind: 'truncated', seq: 29 })
  })

  it('rejects a checkpoint that was not signed with the key', async () => {
    tamper((db) => db.prepare(`insert into audit_checkpoints values (40, ?, 1, 'forged')`).run('a'.repeat(64)))
    expect((await verify()).problem).toMatchObject({ kind: 'forged_checkpoint', seq: 40 })
  })

  it('exports records since a time as JSON Lines with details as objects', async () => {
    const lines: string[] = []
    const n = await exportAuditLog(store, 1_750_000_025, (l) => void lines.push(l))
    expect(n).toBe(5)
    const first = JSON.parse(lines[0]!)
    expect(first).toMatchObject({ seq: 26, type: 'token.issued', subject: 'user26', details: { i: 26 } })
    expect(first.time).toBe(new Date(1_750_000_025 * 1000).toISOString())
  })
})

describe('audit log group commit', () => {
  it('writes an event appended the moment an earlier one is confirmed (a listener reacting to it): never stranded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devicegate-audit-'))
    const store = await openStore(`sqlite:${join(dir, 'audit.db')}`)
    try {
      const log = new AuditLog({ store, clock: { nowSeconds: () => 1_750_000_000 } })
      const start = (await store.readAuditHead()).seq
      let second: Promise<void> | undefined
      await log.append({ type: 'token.issued', clientId: 'cli', details: {} }).then(() => {
        second = log.append({ type: 'anomaly.raised', clientId: 'cli', details: {} })
      })
      const timeout = new Promise<'stranded'>((resolve) => setTimeout(() => resolve('stranded'), 2_000).unref())
      expect(await Promise.race([second!.then(() => 'written'), timeout])).toBe('written')
      expect((await store.listAuditEvents({ afterSeq: start, limit: 10 })).map((e) => e.type)).toEqual(['token.issued', 'anomaly.raised'])
    } finally {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('audit events of a device flow', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer()
  })
  afterAll(async () => t?.close())

  async function eventsAfter(seq: number) {
    await t.server.governance.audit!.flush()
    return t.server.store.listAuditEvents({ afterSeq: seq, limit: 1000 })
  }

  it('records each state change once, polling without a record per poll, and never a secret', async () => {
    const start = (await t.server.store.readAuditHead()).seq
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
    const poll = () => postForm(`${t.url}/token`, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: auth.json.device_code, client_id: 'cli' })
    expect((await poll()).json.error).toBe('authorization_pending')
    expect((await poll()).json.error).toBe('slow_down')
    t.clock.advance(11)
    expect((await poll()).json.error).toBe('authorization_pending')
    const afterPolls = await eventsAfter(start)
    expect(afterPolls.map((e) => e.type)).toEqual(['device_authorization.requested'])

    await approveAs(t.url, auth.json.user_code)
    t.clock.advance(16)
    const tokens = await poll()
    expect(tokens.status).toBe(200)
    const refreshed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token, client_id: 'cli' })
    expect(refreshed.status).toBe(200)
    await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token, client_id: 'cli' })

    const events = await eventsAfter(start)
    expect(events.map((e) => e.type)).toEqual([
      'device_authorization.requested',
      'session.signed_in',
      'user_code.looked_up',
      'user_code.looked_up',
      'policy.decided',
      'device_code.approved',
      'policy.decided',
      'token.issued',
      'token.refreshed',
      'refresh_token.reuse_detected',
      'anomaly.raised',
    ])
    const approved = events.find((e) => e.type === 'device_code.approved')!
    expect(approved).toMatchObject({ actor: 'alice', subject: 'alice', clientId: 'cli', ip: '127.0.0.1' })
    const [atApproval, atRedemption] = events.filter((e) => e.type === 'policy.decided')
    expect(atApproval).toMatchObject({ actor: 'alice', subject: 'alice', clientId: 'cli' })
    expect(JSON.parse(atApproval!.details)).toMatchObject({ phase: 'approval', decision: 'allow', deviceGrantId: JSON.parse(approved.details).deviceGrantId, policyId: expect.any(String) })
    expect(JSON.parse(atApproval!.details).reasons.length).toBeGreaterThan(0)
    expect(JSON.parse(atRedemption!.details)).toMatchObject({ phase: 'redemption', decision: 'allow' })
    const issued = events.find((e) => e.type === 'token.issued')!
    expect(issued.grantId).toBeTruthy()
    expect(JSON.parse(issued.details)).toMatchObject({ deviceGrantId: JSON.parse(approved.details).deviceGrantId, refreshToken: true })
    const all = JSON.stringify(events)
    for (const secret of [auth.json.device_code, auth.json.user_code, auth.json.user_code.replace('-', ''), tokens.json.access_token, tokens.json.refresh_token]) {
      expect(all).not.toContain(secret)
    }
    const verified = await verifyAuditLog(t.server.store)
    expect(verified.ok).toBe(true)
  })
})
