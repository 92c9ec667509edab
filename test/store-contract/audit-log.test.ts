/**
 * Storage contract: the hash-chained audit log (src/storage/audit-log.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { chainHash } from '../../src/governance/audit.js'
import { type AuditEventBody, type NewAuditEvent, type Store } from '../../src/storage/store.js'
import { NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('audit log', (contract) => {
  const { adapter } = contract
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('audit log and checkpoints', () => {
    const chain = (prev: string, e: AuditEventBody) => chainHash(prev, e)
    const event = (type: string, over: Partial<NewAuditEvent> = {}): NewAuditEvent => ({
      time: NOW,
      type,
      actor: 'alice',
      clientId: 'cli',
      subject: 'alice',
      ip: '203.0.113.7',
      grantId: null,
      details: '{}',
      ...over,
    })

    it('appends audit events with contiguous seq and a hash chain, and moves the head', async () => {
      const before = await store.readAuditHead()
      const written = await store.appendAuditEvents([event('token.issued'), event('token.refreshed')], chain)
      expect(written.map((r) => r.seq)).toEqual([before.seq + 1, before.seq + 2])
      expect(written[0]!.prevHash).toBe(before.hash)
      expect(written[1]!.prevHash).toBe(written[0]!.hash)
      expect(written[1]!.hash).toBe(chainHash(written[0]!.hash, written[1]!))
      expect(await store.readAuditHead()).toEqual({ seq: before.seq + 2, hash: written[1]!.hash })
      const listed = await store.listAuditEvents({ afterSeq: before.seq, limit: 10 })
      expect(listed).toEqual(written)
      expect(await store.appendAuditEvents([], chain)).toEqual([])
    })

    it('stores the seal computed from each record inside the append, and null without one', async () => {
      const sealed = await store.appendAuditEvents([event('token.issued'), event('token.revoked')], chain, (r) => `k.${r.seq}.${r.hash.slice(0, 8)}`)
      expect(sealed.map((r) => r.mac)).toEqual(sealed.map((r) => `k.${r.seq}.${r.hash.slice(0, 8)}`))
      const [plain] = await store.appendAuditEvents([event('token.issued')], chain)
      expect(plain!.mac).toBeNull()
      expect(await store.listAuditEvents({ afterSeq: sealed[0]!.seq - 1, limit: 3 })).toEqual([...sealed, plain])
    })

    // SQLite: one process holds one connection per store, and better-sqlite3 waits for a lock
    // synchronously, so two connections in one process would deadlock; there the concurrency is
    // within one instance. PostgreSQL runs two pools (two instances).
    it('serialises concurrent appends (two instances where the adapter allows): one chain, nothing lost', async () => {
      const other = adapter.multiInstance ? await adapter.open() : store
      try {
        const before = await store.readAuditHead()
        await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (i % 2 === 0 ? store : other).appendAuditEvents([event('admin.action', { details: `{"i":${i}}` }), event('admin.action')], chain),
          ),
        )
        const rows = await store.listAuditEvents({ afterSeq: before.seq, limit: 100 })
        expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => before.seq + 1 + i))
        let prev = before.hash
        for (const r of rows) {
          expect(r.prevHash).toBe(prev)
          expect(r.hash).toBe(chainHash(prev, r))
          prev = r.hash
        }
        expect((await store.readAuditHead()).hash).toBe(prev)
      } finally {
        if (other !== store) await other.close()
      }
    })

    it('lists audit events since a time and keeps one checkpoint per seq', async () => {
      const [late] = await store.appendAuditEvents([event('session.signed_in', { time: NOW + 5000 })], chain)
      const since = await store.listAuditEvents({ sinceTime: NOW + 5000, limit: 10 })
      expect(since.map((r) => r.seq)).toContain(late!.seq)
      expect(since.every((r) => r.time >= NOW + 5000)).toBe(true)
      await store.insertAuditCheckpoint({ seq: late!.seq, hash: late!.hash, time: NOW, signature: 'a' })
      await store.insertAuditCheckpoint({ seq: late!.seq, hash: 'other', time: NOW + 1, signature: 'b' })
      const cps = (await store.listAuditCheckpoints()).filter((c) => c.seq === late!.seq)
      expect(cps).toEqual([{ seq: late!.seq, hash: late!.hash, time: NOW, signature: 'a' }])
    })

    it('lists only the named types within [sinceTime, untilTime), and nothing for an empty type list', async () => {
      const before = await store.readAuditHead()
      const at = NOW + 7000
      const written = await store.appendAuditEvents(
        [
          event('device_code.approved', { time: at - 1 }),
          event('device_code.approved', { time: at }),
          event('token.issued', { time: at }),
          event('policy.decided', { time: at + 1 }),
          event('device_code.approved', { time: at + 2 }),
        ],
        chain,
      )
      const seqs = (q: { sinceTime?: number; untilTime?: number; types?: readonly string[] }) =>
        store.listAuditEvents({ afterSeq: before.seq, limit: 10, ...q }).then((rows) => rows.map((r) => r.seq))
      const s = written.map((r) => r.seq)
      expect(await seqs({ sinceTime: at, untilTime: at + 2, types: ['device_code.approved'] })).toEqual([s[1]])
      expect(await seqs({ sinceTime: at, untilTime: at + 2, types: ['device_code.approved', 'policy.decided'] })).toEqual([s[1], s[3]])
      expect(await seqs({ untilTime: at + 1 })).toEqual([s[0], s[1], s[2]])
      expect(await seqs({ types: [] })).toEqual([])
    })
  })
})
