/**
 * GovernanceEvents (src/governance/events.ts): listeners run in order, an asynchronous listener is
 * finished before the next starts, and a failing listener — throwing or rejecting — is reported,
 * never thrown into the request that recorded the event.
 */
import { describe, expect, it } from 'vitest'
import type { DomainEvent } from '../src/core/events.js'
import { GovernanceEvents } from '../src/governance/events.js'

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
})
