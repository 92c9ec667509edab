/**
 * RFC 8936 polling during a mass revocation: SETs already fanned out are answered at once (they come
 * first in outbox order), and the outbox is fanned out further only when none is waiting, so a poll
 * does not wait behind the signing of another batch; `moreAvailable` tells the receiver that the
 * outbox still holds events.
 */
import { describe, expect, it } from 'vitest'
import { StreamService } from '../src/signals/ssf/streams.js'
import type { DeliveryRecord, DestinationRecord, OutboxEvent, SignalOutboxStore } from '../src/storage/store.js'

const stream: DestinationRecord = {
  id: 's1',
  kind: 'ssf_stream',
  owner: 'rx',
  config: { method: 'poll', eventsRequested: [], audience: 'rx' },
  status: 'enabled',
  statusReason: null,
  createdAt: 1,
  updatedAt: 1,
  nextAttemptAtMs: 0,
  failingSince: null,
}

function delivery(seq: number): DeliveryRecord {
  return { destinationId: 's1', eventSeq: seq, jti: `j${seq}`, payload: `set${seq}`, status: 'pending', attempts: 0, lastError: null, createdAt: 1, lastAttemptAt: null, deliveredAt: null }
}

function service(state: { pending: DeliveryRecord[]; outbox: number; refreshes: number }) {
  const store = {
    findSignalDestination: async () => stream,
    completeSignalDeliveries: async () => 0,
    listPendingSignalDeliveries: async (_id: string, limit: number) => state.pending.slice(0, limit),
    listPendingSignalEvents: async (limit: number) => Array.from({ length: Math.min(limit, state.outbox) }, () => ({}) as OutboxEvent),
  } as unknown as SignalOutboxStore
  return new StreamService({
    store,
    clock: { nowSeconds: () => 1000 },
    random: { bytes: (n: number) => new Uint8Array(n), int: () => 0 } as never,
    options: { issuer: 'https://as.test', maxStreamsPerReceiver: 5, allowHttpPush: false, allowPrivateEndpoints: false, minVerificationIntervalSeconds: 0, longPollSeconds: 0 },
    refresh: async () => {
      state.refreshes++
      const next = state.pending.length + 1
      if (state.outbox > 0) {
        state.pending.push(delivery(next))
        state.outbox--
      }
    },
    wake: () => {},
    // Poll mode holds no push secret.
    secrets: {} as never,
  })
}

describe('RFC 8936 poll during a backlog', () => {
  it('answers the SETs already fanned out without fanning out more, and says more are available while the outbox holds events', async () => {
    const state = { pending: [delivery(1), delivery(2)], outbox: 3, refreshes: 0 }
    const answer = await service(state).poll('rx', 's1', { maxEvents: 10, returnImmediately: true })
    expect(Object.keys(answer.sets)).toEqual(['j1', 'j2'])
    expect(state.refreshes).toBe(0)
    expect(answer.moreAvailable).toBe(true)
  })

  it('fans out when nothing is waiting', async () => {
    const state = { pending: [] as DeliveryRecord[], outbox: 1, refreshes: 0 }
    const answer = await service(state).poll('rx', 's1', { maxEvents: 10, returnImmediately: true })
    expect(state.refreshes).toBe(1)
    expect(Object.keys(answer.sets)).toEqual(['j1'])
    expect(answer.moreAvailable).toBe(false)
  })
})
