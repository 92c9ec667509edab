/**
 * Storage contract: anomalies and principal overrides (src/storage/governance-records.ts), on every adapter (test/support/store-contract.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type AnomalyRecord, type Store } from '../../src/storage/store.js'
import { id, NOW } from '../support/store-fixtures.js'
import { describeStoreContract } from '../support/store-contract.js'

describeStoreContract('governance records', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  describe('anomalies and principal overrides', () => {
    it('stores an anomaly once per dedupe key and lists anomalies since a time', async () => {
      const key = id('dedupe')
      const anomaly = (over: Partial<AnomalyRecord> = {}): AnomalyRecord => ({
        id: id('an'),
        kind: 'slow_down_ignored',
        time: NOW + 7000,
        dedupeKey: key,
        clientId: 'cli',
        subject: null,
        grantId: null,
        ip: '203.0.113.7',
        action: 'alert',
        details: '{}',
        ...over,
      })
      expect(await store.insertAnomaly(anomaly())).toBe(true)
      expect(await store.insertAnomaly(anomaly())).toBe(false)
      expect(await store.insertAnomaly(anomaly({ dedupeKey: null }))).toBe(true)
      expect(await store.insertAnomaly(anomaly({ dedupeKey: null }))).toBe(true)
      const listed = await store.listAnomalies({ sinceTime: NOW + 7000, kind: 'slow_down_ignored', limit: 10 })
      expect(listed).toHaveLength(3)
      expect(await store.listAnomalies({ sinceTime: NOW + 7001, limit: 10 })).toEqual([])
    })

    it('upserts, lists and clears principal overrides', async () => {
      const user = id('user')
      await store.setPrincipalOverride({ kind: 'user', id: user, state: 'disabled', changedAt: NOW, changedBy: 'admin:ops' })
      await store.setPrincipalOverride({ kind: 'user', id: user, state: 'deleted', changedAt: NOW + 1, changedBy: null })
      const mine = (await store.listPrincipalOverrides()).filter((o) => o.id === user)
      expect(mine).toEqual([{ kind: 'user', id: user, state: 'deleted', changedAt: NOW + 1, changedBy: null }])
      expect(await store.clearPrincipalOverride('user', user)).toBe(true)
      expect(await store.clearPrincipalOverride('user', user)).toBe(false)
    })
  })
})
