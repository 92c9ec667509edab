/**
 * Storage contract: signals (src/storage/signals.ts), on every adapter (test/support/store-contract.ts).
 *
 * The persisted outbox: every grant revocation, device retirement, anomaly and
 * administrator action writes its outbox row in the same transaction as the change (database
 * triggers), whichever store method made it; the dispatcher delivers at least once, in order per
 * destination, with exponential backoff and jitter. SQLite and PostgreSQL.
 */
import { pino } from 'pino'
import { beforeAll, describe, expect, it } from 'vitest'
import { backoffMs, SignalDispatcher, type DestinationHandler, type PushOutcome } from '../../src/signals/dispatcher.js'
import { caepEventOf, EVENT_TYPES, subIdOf, subjectsOf } from '../../src/signals/ssf/events.js'
import type { DestinationRecord, Store } from '../../src/storage/store.js'
import { systemRandom } from '../../src/system.js'
import { describeStoreContract } from '../support/store-contract.js'
import { bundle, id, nextTokens, NOW } from '../support/store-fixtures.js'

const clock = { nowSeconds: () => NOW }

function destination(over: Partial<DestinationRecord> = {}): DestinationRecord {
  return { id: id('dest'), kind: 'webhook', owner: null, config: {}, status: 'enabled', statusReason: null, createdAt: NOW, updatedAt: NOW, nextAttemptAtMs: 0, failingSince: null, ...over }
}

/** A handler that records pushes and fails while `failures` > 0. */
function recordingHandler() {
  const pushed: string[] = []
  const byDestination: string[] = []
  const state = { failures: 0, permanent: false }
  const handler: DestinationHandler = {
    kind: 'webhook',
    render: async (_d, event) => ({ jti: event.id, payload: JSON.stringify({ type: event.type, grantId: event.grantId }) }),
    isPush: () => true,
    push: async (_d, delivery): Promise<PushOutcome> => {
      if (state.failures > 0) {
        state.failures--
        return state.permanent ? { ok: false, permanent: true, error: 'refused' } : { ok: false, permanent: false, error: 'HTTP 503' }
      }
      pushed.push(delivery.jti)
      byDestination.push(delivery.destinationId)
      return { ok: true }
    },
  }
  return { pushed, byDestination, state, handler }
}

describeStoreContract('signals outbox', (contract) => {
  describe('outbox written with the change', () => {
    let store: Store
    let signals: Store

    beforeAll(() => {
      store = contract.store
      signals = store
    })

    const pending = async () => (await signals.listPendingSignalEvents(10_000)).filter((e) => e.type === 'grant.revoked')

    it('every revoke method writes one grant.revoked row per family it revokes, and none when nothing changed', async () => {
      const before = (await pending()).length
      const a = bundle({ subject: 'erin' })
      const b = bundle({ subject: 'erin', clientId: 'conf' })
      const c = bundle({ subject: 'frank' })
      for (const x of [a, b, c]) await store.issueTokens(x)
      await store.revokeGrant(a.grant.id, NOW + 1)
      await store.revokeGrant(a.grant.id, NOW + 2) // already revoked: no second event
      expect(await store.revokeGrantsBySubject('erin', NOW + 3)).toBe(1)
      expect(await store.revokeGrantsWhere({ subject: 'frank' }, NOW + 4)).toBe(1)
      const events = (await pending()).slice(before)
      expect(events.map((e) => e.grantId)).toEqual([a.grant.id, b.grant.id, c.grant.id])
      expect(events[0]).toMatchObject({ type: 'grant.revoked', occurredAt: NOW + 1, clientId: 'cli', subject: 'erin', payload: { scope: 'openid' } })
      expect(events[1]).toMatchObject({ clientId: 'conf', occurredAt: NOW + 3 })
      expect(new Set(events.map((e) => e.id)).size).toBe(3)
    })

    it('retiring a device writes device.retired; an anomaly writes anomaly.raised; an admin audit event writes admin.action', async () => {
      await store.registerDevice({ jkt: 'jkt-outbox-1', label: 'build-7', registeredAt: NOW, registeredBy: null, retiredAt: null })
      expect(await store.retireDevice('jkt-outbox-1', NOW + 5)).toBe(true)
      await store.insertAnomaly({ id: id('an'), kind: 'refresh_token_reuse', time: NOW + 6, dedupeKey: null, clientId: 'cli', subject: 'erin', grantId: null, ip: '198.51.100.1', action: 'alert', details: '{}' })
      await store.appendAuditEvents(
        [{ time: NOW + 7, type: 'admin.action', actor: 'admin:ops', clientId: null, subject: null, ip: null, grantId: null, details: '{"action":"revoke"}' }],
        (prev) => prev,
      )
      await store.appendAuditEvents([{ time: NOW + 8, type: 'token.issued', actor: 'x', clientId: null, subject: null, ip: null, grantId: null, details: '{}' }], (prev) => prev)
      const events = await signals.listPendingSignalEvents(10_000)
      expect(events.find((e) => e.type === 'device.retired')).toMatchObject({ payload: { jkt: 'jkt-outbox-1', label: 'build-7' } })
      expect(events.find((e) => e.type === 'anomaly.raised')).toMatchObject({ subject: 'erin', payload: { kind: 'refresh_token_reuse', action: 'alert' } })
      expect(events.filter((e) => e.type === 'admin.action')).toHaveLength(1)
      expect(events.some((e) => e.type === 'token.issued')).toBe(false)
    })

    it('an access-review audit event writes its outbox row, with the audit facts (migration 015_signals_review_events)', async () => {
      const details = JSON.stringify({ campaignId: 'c1', roundId: 'c1.1', deadlineAt: NOW + 86_400, undecided: 2, reviewers: ['bob'], undecidedByReviewer: { bob: 2 } })
      await store.appendAuditEvents([{ time: NOW + 9, type: 'review.reminder_due', actor: 'system', clientId: null, subject: null, ip: null, grantId: null, details }], (prev) => prev)
      const events = (await signals.listPendingSignalEvents(10_000)).filter((e) => e.type === 'review.reminder_due')
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({ occurredAt: NOW + 9, payload: { seq: expect.any(Number), details } })
    })

    it('a rotation carrying a signal commits it with the rotation, and a refused rotation writes none', async () => {
      const b = bundle({ subject: 'gina' })
      await store.issueTokens(b)
      const signal = { type: 'token.claims_changed', occurredAt: NOW + 10, ref: b.grant.id, target: null, payload: { claims: { scope: 'read' } } }
      const claims = async () => (await signals.listPendingSignalEvents(10_000)).filter((e) => e.type === 'token.claims_changed' && e.grantId === b.grant.id)
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 10, { ...nextTokens(b.grant.id), signal })).toMatchObject({ ok: true })
      expect(await claims()).toHaveLength(1)
      expect((await claims())[0]).toMatchObject({ subject: 'gina', payload: { claims: { scope: 'read' } } })
      // Replaying the rotated token is refused: nothing is written.
      expect(await store.rotateRefreshToken(b.refreshToken!.tokenHash, NOW + 11, { ...nextTokens(b.grant.id), signal })).toMatchObject({ ok: false })
      expect(await claims()).toHaveLength(1)
    })

    it('keeps a destination secret apart from its config and replaces it only by compare-and-set', async () => {
      const d = destination({ kind: 'ssf_stream', owner: 'receiver', config: { method: 'push' }, secret: 'sealed-1' })
      await signals.createSignalDestination(d)
      expect(await signals.findSignalDestination(d.id)).toMatchObject({ config: { method: 'push' }, secret: 'sealed-1' })
      expect(await signals.replaceSignalDestinationSecret(d.id, 'other', 'sealed-2')).toBe(false)
      expect(await signals.replaceSignalDestinationSecret(d.id, 'sealed-1', 'sealed-2')).toBe(true)
      await signals.updateSignalDestination(d.id, { config: { method: 'push', description: 'x' } }, NOW)
      expect((await signals.findSignalDestination(d.id))!.secret).toBe('sealed-2')
      await signals.updateSignalDestination(d.id, { secret: null }, NOW)
      expect((await signals.findSignalDestination(d.id))!.secret).toBeNull()
      await signals.deleteSignalDestination(d.id)
      })

    it('revoking every family of one user writes one user.revoked row ahead of their grant.revoked rows (a session-revoked SET naming the user), none when nothing was revoked or the filter is narrower', async () => {
      const lastSeq = Math.max(0, ...(await signals.listPendingSignalEvents(10_000)).map((e) => e.seq))
      const x = bundle({ subject: 'ivy' })
      const y = bundle({ subject: 'ivy', clientId: 'conf' })
      const z = bundle({ subject: 'ivy' })
      for (const g of [x, y, z]) await store.issueTokens(g)
      expect(await store.revokeGrantsWhere({ subject: 'ivy', clientId: 'conf' }, NOW + 30)).toBe(1) // narrower than the user
      expect(await store.revokeGrantsWhere({ subject: 'ivy', revoked: false }, NOW + 31)).toBe(2)
      expect(await store.revokeGrantsWhere({ subject: 'ivy' }, NOW + 32)).toBe(0) // nothing left: no event
      const events = (await signals.listPendingSignalEvents(10_000)).filter((e) => e.seq > lastSeq)
      expect(events.map((e) => e.type)).toEqual(['grant.revoked', 'user.revoked', 'grant.revoked', 'grant.revoked'])
      expect(events[0]!.grantId).toBe(y.grant.id)
      expect(events[1]).toMatchObject({ type: 'user.revoked', subject: 'ivy', grantId: null, clientId: null, occurredAt: NOW + 31 })
      expect(new Set(events.slice(2).map((e) => e.grantId))).toEqual(new Set([x.grant.id, z.grant.id]))
      // CAEP session-revoked whose sub_id names the user only (all of the user's sessions).
      expect(caepEventOf(events[1]!)).toEqual({ type: EVENT_TYPES.sessionRevoked, body: { event_timestamp: NOW + 31 } })
      expect(subIdOf(subjectsOf(events[1]!, 'https://issuer.example', () => undefined))).toEqual({ format: 'complex', user: { format: 'iss_sub', iss: 'https://issuer.example', sub: 'ivy' } })
    })

    it('delivers at least once and in order, retrying with backoff, and a refused event does not block the rest', async () => {
      const { pushed, state, handler } = recordingHandler()
      let nowMs = 1_000_000
      const dispatcher = new SignalDispatcher({ store: signals, handlers: [handler], clock, random: systemRandom, logger: pino({ level: 'silent' }), nowMs: () => nowMs, options: { baseBackoffMs: 1000, maxBackoffMs: 8000 } })
      await dispatcher.runOnce() // fans out what earlier tests wrote, before this destination existed
      const dest = destination()
      await signals.createSignalDestination(dest)
      const grants = [bundle({ subject: 'gina' }), bundle({ subject: 'gina' }), bundle({ subject: 'gina' })]
      for (const g of grants) await store.issueTokens(g)
      for (const g of grants) await store.revokeGrant(g.grant.id, NOW + 10)
      state.failures = 2
      await dispatcher.runOnce()
      expect(pushed).toEqual([])
      const [first] = await signals.listPendingSignalDeliveries(dest.id, 10)
      expect(first).toMatchObject({ attempts: 1, lastError: 'HTTP 503' })
      const after1 = (await signals.findSignalDestination(dest.id))!
      expect(after1.failingSince).toBe(NOW)
      expect(after1.nextAttemptAtMs - nowMs).toBeGreaterThanOrEqual(500)
      expect(after1.nextAttemptAtMs - nowMs).toBeLessThanOrEqual(1000)
      await dispatcher.runOnce() // not due yet: nothing sent
      expect((await signals.listPendingSignalDeliveries(dest.id, 10))[0]!.attempts).toBe(1)
      nowMs += 1000
      await dispatcher.runOnce() // second failure, waits 1–2 s
      nowMs += 2000
      await dispatcher.runOnce()
      const jtis = (await signals.listSignalDeliveries(dest.id, { limit: 10 })).map((d) => d.jti).reverse()
      expect(pushed).toEqual(jtis)
      expect((await signals.findSignalDestination(dest.id))!.failingSince).toBeNull()
      // Retry from the operator: delivered again with the same jti.
      const [last] = await signals.listSignalDeliveries(dest.id, { limit: 1 })
      expect(await signals.retrySignalDelivery(dest.id, last!.eventSeq)).toBe(true)
      await dispatcher.runOnce()
      expect(pushed.at(-1)).toBe(last!.jti)
      // A permanent refusal is recorded and the next event still goes out.
      const more = [bundle({ subject: 'gina' }), bundle({ subject: 'gina' })]
      for (const g of more) await store.issueTokens(g)
      for (const g of more) await store.revokeGrant(g.grant.id, NOW + 20)
      state.failures = 1
      state.permanent = true
      const count = pushed.length
      await dispatcher.runOnce()
      expect(pushed.length).toBe(count + 1)
      expect(await signals.listSignalDeliveries(dest.id, { status: 'rejected', limit: 10 })).toHaveLength(1)
    })

    it('a paused destination keeps its deliveries until it is enabled again', async () => {
      const { byDestination, handler } = recordingHandler()
      const dispatcher = new SignalDispatcher({ store: signals, handlers: [handler], clock, random: systemRandom, logger: pino({ level: 'silent' }) })
      await dispatcher.runOnce()
      const dest = destination({ status: 'paused' })
      await signals.createSignalDestination(dest)
      const g = bundle({ subject: 'hank' })
      await store.issueTokens(g)
      await store.revokeGrant(g.grant.id, NOW)
      await dispatcher.runOnce()
      expect(byDestination.filter((d) => d === dest.id)).toEqual([])
      await signals.updateSignalDestination(dest.id, { status: 'enabled' }, NOW)
      await dispatcher.runOnce()
      expect(byDestination.filter((d) => d === dest.id)).toHaveLength(1)
    })

    it('renews the push lease only when it would not outlast the next push, not once per push', async () => {
      const dest = destination()
      let nowMs = 5_000_000
      let leaseUntil = 0
      let acquired = 0
      const shortOfLease: number[] = []
      const counting = new Proxy(signals, {
        get(target, prop, receiver) {
          if (prop === 'acquireDestinationLease')
            return async (id: string, owner: string, at: number, until: number) => {
              if (id === dest.id) {
                acquired++
                leaseUntil = until
              }
              return target.acquireDestinationLease(id, owner, at, until)
            }
          const value = Reflect.get(target, prop, receiver)
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
      const { handler } = recordingHandler()
      const timed: DestinationHandler = {
        ...handler,
        push: async (d, delivery) => {
          if (d.id === dest.id) {
            if (leaseUntil - nowMs < 2000) shortOfLease.push(delivery.eventSeq) // the lease must cover the push timeout
            nowMs += 1000 // each push takes a second
          }
          return handler.push(d, delivery)
        },
      }
      const dispatcher = new SignalDispatcher({ store: counting, handlers: [timed], clock, random: systemRandom, logger: pino({ level: 'silent' }), nowMs: () => nowMs, options: { pushTimeoutMs: 2000 } })
      await dispatcher.runOnce()
      await signals.createSignalDestination(dest)
      const grants = Array.from({ length: 12 }, () => bundle({ subject: 'kim' }))
      for (const g of grants) await store.issueTokens(g)
      for (const g of grants) await store.revokeGrant(g.grant.id, NOW + 50)
      await dispatcher.runOnce()
      expect((await signals.listSignalDeliveries(dest.id, { status: 'delivered', limit: 100 })).length).toBe(12)
      expect(shortOfLease).toEqual([])
      // Lease 7 s (timeout + 5 s), renewed when less than 3 s are left: at 0, 5 and 10 s.
      expect(acquired).toBe(3)
    })

    it('concurrent fan-outs (the loop and an RFC 8936 poll) render each event once per destination, and a poll does not queue a batch behind a running one', async () => {
      const { handler } = recordingHandler()
      const dest = destination()
      const rendered: number[] = []
      const counting: DestinationHandler = {
        ...handler,
        render: async (d, event) => {
          if (d.id === dest.id) rendered.push(event.seq)
          return handler.render(d, event)
        },
      }
      const dispatcher = new SignalDispatcher({ store: signals, handlers: [counting], clock, random: systemRandom, logger: pino({ level: 'silent' }), options: { batchSize: 3 } })
      await dispatcher.runOnce()
      await signals.createSignalDestination(dest)
      const grants = Array.from({ length: 7 }, () => bundle({ subject: 'lena' }))
      for (const g of grants) await store.issueTokens(g)
      for (const g of grants) await store.revokeGrant(g.grant.id, NOW + 60)
      // A poll's fan-out while the loop's is running waits for it instead of queueing another batch.
      await Promise.all([dispatcher.fanOut(), dispatcher.fanOutSome()])
      expect(rendered).toHaveLength(3)
      const handled = await Promise.all([dispatcher.fanOut(), dispatcher.fanOut(), dispatcher.fanOut()])
      expect(handled).toEqual([3, 1, 0])
      expect(rendered).toHaveLength(7)
      expect(new Set(rendered).size).toBe(7)
    })

    it('pushes after each fan-out batch: the first events of a large backlog leave before the last are rendered', async () => {
      const { handler } = recordingHandler()
      const steps: string[] = []
      const dest = destination()
      const logged: DestinationHandler = {
        ...handler,
        render: async (d, event) => {
          if (d.id === dest.id) steps.push(`render ${event.seq}`)
          return handler.render(d, event)
        },
        push: async (d, delivery) => {
          if (d.id === dest.id) steps.push(`push ${delivery.eventSeq}`)
          return handler.push(d, delivery)
        },
      }
      const dispatcher = new SignalDispatcher({ store: signals, handlers: [logged], clock, random: systemRandom, logger: pino({ level: 'silent' }), options: { batchSize: 2 } })
      await dispatcher.runOnce()
      await signals.createSignalDestination(dest)
      const grants = Array.from({ length: 5 }, () => bundle({ subject: 'jack' }))
      for (const g of grants) await store.issueTokens(g)
      for (const g of grants) await store.revokeGrant(g.grant.id, NOW + 40)
      await dispatcher.runOnce()
      expect(steps.filter((s) => s.startsWith('push'))).toHaveLength(5)
      const firstPush = steps.findIndex((s) => s.startsWith('push'))
      const lastRender = steps.findLastIndex((s) => s.startsWith('render'))
      expect(firstPush).toBeGreaterThan(0)
      expect(firstPush).toBeLessThan(lastRender)
    })
  })
})

describe('backoff with jitter', () => {
  it('doubles from the base, stays between half and all of the step, and is capped', () => {
    expect(backoffMs(1, 1000, 60_000, () => 0)).toBe(500)
    expect(backoffMs(1, 1000, 60_000, () => 1)).toBe(1000)
    expect(backoffMs(4, 1000, 60_000, () => 1)).toBe(8000)
    expect(backoffMs(40, 1000, 60_000, () => 1)).toBe(60_000)
  })
})
