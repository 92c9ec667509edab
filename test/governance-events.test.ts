/**
 * GovernanceEvents (src/governance/events.ts): listeners run in order, an asynchronous listener is
 * finished before the next starts, and a failing listener — throwing or rejecting — is reported,
 * never thrown into the request that recorded the event.
 */
import { describe, expect, it } from 'vitest'
import type { DomainEvent } from '../src/core/events.js'
import { AnomalyEngine, type AnomalyEngineOptions } from '../src/governance/anomalies.js'
import { GovernanceEvents } from '../src/governance/events.js'
import { systemRandom } from '../src/system.js'

const EVENT: DomainEvent = { type: 'token.used', clientId: 'cli', grantId: 'g1' }

describe('GovernanceEvents.record', () => {
  it('runs listeners in order, awaiting an asynchronous one before the next', async () => {
    const seen: string[] = []
    const events = new GovernanceEvents(undefined)
      .listen(() => {
        seen.push('sync-1')
      })
      .listen(async () => {
        await new Promise((resolve) => setTimeout(resolve, 5))
        seen.push('async')
      })
      .listen(() => {
        seen.push('sync-2')
      })
    await events.record(EVENT)
    expect(seen).toEqual(['sync-1', 'async', 'sync-2'])
  })

  it('reports a listener that throws and one that rejects, and still runs the rest', async () => {
    const failures: string[] = []
    let last = false
    const events = new GovernanceEvents(undefined, (err) => failures.push((err as Error).message))
      .listen(() => {
        throw new Error('sync failure')
      })
      .listen(() => Promise.reject(new Error('async failure')))
      .listen(() => {
        last = true
      })
    await expect(events.record(EVENT)).resolves.toBeUndefined()
    expect(failures).toEqual(['sync failure', 'async failure'])
    expect(last).toBe(true)
  })

  it('after an asynchronous listener, runs the later ones in order, reporting those that throw or reject', async () => {
    const seen: string[] = []
    const failures: string[] = []
    const events = new GovernanceEvents(undefined, (err) => failures.push((err as Error).message))
      .listen(async () => {
        await new Promise((resolve) => setTimeout(resolve, 5))
        seen.push('async-1')
      })
      .listen(() => {
        throw new Error('sync failure')
      })
      .listen(() => Promise.reject(new Error('async failure')))
      .listen(async () => {
        await new Promise((resolve) => setTimeout(resolve, 5))
        seen.push('async-2')
      })
      .listen(() => {
        seen.push('sync')
      })
    await expect(events.record(EVENT)).resolves.toBeUndefined()
    expect(seen).toEqual(['async-1', 'async-2', 'sync'])
    expect(failures).toEqual(['sync failure', 'async failure'])
  })

  it('has run every synchronous listener when it returns, and resolves', async () => {
    const seen: string[] = []
    const events = new GovernanceEvents(undefined).listen(() => void seen.push('a')).listen(() => void seen.push('b'))
    const done = events.record(EVENT)
    expect(seen).toEqual(['a', 'b'])
    await expect(done).resolves.toBeUndefined()
  })
})

describe('AnomalyEngine.listener', () => {
  /** An engine whose store and sink only record what the slow_down_ignored detector writes. */
  function engine() {
    const inserted: unknown[] = []
    const recorded: DomainEvent[] = []
    const options = {
      store: { insertAnomaly: async (a: unknown) => (inserted.push(a), true) },
      clock: { nowSeconds: () => 1_000 },
      random: systemRandom,
      config: {
        slowDownIgnored: { enabled: true, action: 'alert', threshold: 2 },
        tokenUsedFromNewIpRange: { enabled: true, action: 'alert', ipv4Prefix: 24, ipv6Prefix: 48 },
      },
      events: { record: async (e: DomainEvent) => void recorded.push(e) },
      revocation: {},
    } as unknown as AnomalyEngineOptions
    return { anomalies: new AnomalyEngine(options), inserted, recorded }
  }
  const tooFast = (slowDowns: number): DomainEvent => ({
    type: 'device_code.polled_too_fast',
    clientId: 'cli',
    ip: '192.0.2.1',
    details: { deviceGrantId: 'dg-1', intervalSeconds: 5 + 5 * slowDowns, slowDowns },
  })

  it('raises slow_down_ignored once at the threshold and passes over the polls before and after without a promise (RFC 8628 §3.5)', async () => {
    const { anomalies, inserted, recorded } = engine()
    expect(anomalies.listener(tooFast(1))).toBeUndefined()
    const raising = anomalies.listener(tooFast(2))
    expect(raising).toBeInstanceOf(Promise)
    await raising
    expect(anomalies.listener(tooFast(3))).toBeUndefined()
    expect(anomalies.listener(tooFast(4))).toBeUndefined()
    expect(inserted).toHaveLength(1)
    expect(recorded.map((e) => [e.type, e.details?.kind, e.details?.slowDowns])).toEqual([['anomaly.raised', 'slow_down_ignored', 2]])
  })

  it('passes over a token use without an address (introspection without client_ip) and events no detector reads', () => {
    const { anomalies } = engine()
    expect(anomalies.listener({ type: 'token.used', clientId: 'api', grantId: 'g-1', ip: null, details: { via: 'introspection' } })).toBeUndefined()
    expect(anomalies.listener({ type: 'token.issued', clientId: 'cli', grantId: 'g-1' })).toBeUndefined()
  })
})
