/**
 * Concurrent access-token lookups and UNLOGGED poll decisions coalesced into one statement per
 * event-loop turn on PostgreSQL (src/storage/kysely/batched-read.ts), and, while the most
 * statements allowed are out, into one statement when one returns: each lookup still gets its
 * own row, or none, and sees a revocation committed before it was asked; polls stay atomic across
 * instances, without deadlocks. The helpers alone always; the store with DEVICEGATE_TEST_PG_URL
 * (skipped loudly otherwise).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BATCHED_MAX_IN_FLIGHT, BatchedRead, BatchedWrite } from '../src/storage/kysely/batched-read.js'
import { openStore } from '../src/storage/index.js'
import type { Store } from '../src/storage/store.js'
import { freshPgSchema } from './support/pg-schema.js'
import { bundle, deviceGrant, NOW } from './support/store-fixtures.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('batched access-token lookups on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL')

describe('BatchedRead', () => {
  it('answers the lookups of one turn with one read of their distinct keys, each with its own row or none', async () => {
    const reads: string[][] = []
    const batched = new BatchedRead<{ k: string; v: number }>(
      async (keys) => {
        reads.push([...keys])
        return keys.filter((k) => k !== 'missing').map((k) => ({ k, v: k.length }))
      },
      (row) => row.k,
    )
    const results = await Promise.all(['a', 'bb', 'missing', 'a'].map((k) => batched.load(k)))
    expect(results).toEqual([{ k: 'a', v: 1 }, { k: 'bb', v: 2 }, undefined, { k: 'a', v: 1 }])
    expect(reads).toEqual([['a', 'bb', 'missing']])
    expect(await batched.load('ccc')).toEqual({ k: 'ccc', v: 3 })
    expect(reads).toHaveLength(2)
  })

  it('holds lookups asked for while the most statements allowed are out, and sends them all in one statement when one returns', async () => {
    const reads: string[][] = []
    const answers: (() => void)[] = []
    const batched = new BatchedRead<{ k: string }>(
      (keys) => {
        reads.push([...keys])
        return new Promise((resolve) => answers.push(() => resolve(keys.map((k) => ({ k })))))
      },
      (row) => row.k,
    )
    expect(BATCHED_MAX_IN_FLIGHT).toBe(2)
    const first = batched.load('a')
    await turn()
    const second = batched.load('b')
    await turn()
    // Two statements out: the lookups of the next three turns wait, and go together.
    const held = ['c', 'd', 'e'].map((k) => batched.load(k))
    await turn()
    await turn()
    await turn()
    expect(reads).toEqual([['a'], ['b']])
    answers[0]!()
    expect(await first).toEqual({ k: 'a' })
    await turn()
    expect(reads).toEqual([['a'], ['b'], ['c', 'd', 'e']])
    answers[1]!()
    answers[2]!()
    expect(await Promise.all([second, ...held])).toEqual([{ k: 'b' }, { k: 'c' }, { k: 'd' }, { k: 'e' }])
    // Nothing out: a lookup is sent at the end of its turn.
    const alone = batched.load('f')
    await turn()
    expect(reads).toHaveLength(4)
    answers[3]!()
    expect(await alone).toEqual({ k: 'f' })
  })

  it('sends held lookups after a failed statement too, and splits more than 64 keys into statements', async () => {
    const reads: string[][] = []
    const answers: ((fail: boolean) => void)[] = []
    const batched = new BatchedRead<{ k: string }>(
      (keys) => {
        reads.push([...keys])
        return new Promise((resolve, reject) => answers.push((fail) => (fail ? reject(new Error('connection lost')) : resolve(keys.map((k) => ({ k }))))))
      },
      (row) => row.k,
      { maxInFlight: 1 },
    )
    const first = batched.load('a')
    await turn()
    const held = Array.from({ length: 70 }, (_, i) => batched.load(`k${i}`))
    await turn()
    expect(reads).toHaveLength(1)
    answers[0]!(true)
    await expect(first).rejects.toThrow('connection lost')
    await turn()
    expect(reads.map((r) => r.length)).toEqual([1, 64])
    answers[1]!(false)
    await turn()
    await turn()
    expect(reads.map((r) => r.length)).toEqual([1, 64, 6])
    answers[2]!(false)
    expect((await Promise.all(held)).map((r) => r?.k)).toEqual(Array.from({ length: 70 }, (_, i) => `k${i}`))
  })

  it('rejects every lookup of a batch whose read fails, and serves the next turn afresh', async () => {
    let fail = true
    const batched = new BatchedRead<{ k: string }>(
      async (keys) => {
        if (fail) throw new Error('connection lost')
        return keys.map((k) => ({ k }))
      },
      (row) => row.k,
    )
    const settled = await Promise.allSettled([batched.load('a'), batched.load('b')])
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected'])
    fail = false
    expect(await batched.load('a')).toEqual({ k: 'a' })
  })
})

describe('BatchedWrite', () => {
  it('never puts one key twice in a statement: repeats of a key in one turn go in later statements', async () => {
    const statements: string[][] = []
    const batched = new BatchedWrite<number, number>(async (calls) => {
      statements.push(calls.map((c) => c.key))
      return new Map(calls.map((c) => [c.key, c.arg * 10]))
    })
    const results = await Promise.all([batched.call('a', 1), batched.call('b', 2), batched.call('a', 3), batched.call('a', 4)])
    expect(results).toEqual([10, 20, 30, 40])
    expect(statements).toEqual([['a', 'b'], ['a'], ['a']])
  })
})

describe('BatchedWrite, while the most statements allowed are out', () => {
  it('puts the calls asked for meanwhile in the next statement, a repeated key again in a later one', async () => {
    const statements: string[][] = []
    const answers: (() => void)[] = []
    const batched = new BatchedWrite<number, number>(
      (calls) => {
        statements.push(calls.map((c) => c.key))
        return new Promise((resolve) => answers.push(() => resolve(new Map(calls.map((c) => [c.key, c.arg * 10])))))
      },
      { maxInFlight: 1 },
    )
    const first = batched.call('a', 1)
    await turn()
    const held = [batched.call('b', 2), batched.call('a', 3)]
    await turn()
    const later = batched.call('a', 4)
    await turn()
    expect(statements).toEqual([['a']])
    answers[0]!()
    await turn()
    expect(statements).toEqual([['a'], ['b', 'a']])
    answers[1]!()
    await turn()
    expect(statements).toEqual([['a'], ['b', 'a'], ['a']])
    answers[2]!()
    expect(await Promise.all([first, ...held, later])).toEqual([10, 20, 30, 40])
  })
})

describe.skipIf(!PG_URL)('access-token lookups on PostgreSQL, coalesced', () => {
  let schema: Awaited<ReturnType<typeof freshPgSchema>>
  let store: Store
  beforeAll(async () => {
    schema = await freshPgSchema(PG_URL!, 'dg_batch')
    store = await openStore(schema.url)
  })
  afterAll(async () => {
    await store?.close()
    await schema?.drop()
  })

  it('decides 400 concurrent polls of 20 device grants on two instances (UNLOGGED) without a deadlock: one on-time poll per grant', async () => {
    const other = await openStore(schema.url)
    try {
      const grants = Array.from({ length: 20 }, () => deviceGrant({ intervalSeconds: 5 }))
      for (const g of grants) await store.createDeviceGrant(g)
      // Each instance polls the grants in its own shuffled order, so statements share ids in any order.
      const order = (seed: number) => Array.from({ length: 200 }, (_, i) => grants[(i * seed + seed) % 20]!)
      const polls = [...order(7).map((g) => store.registerPoll(g.id, NOW)), ...order(13).map((g) => other.registerPoll(g.id, NOW))]
      const results = await Promise.all(polls)
      const byGrant = new Map<string, { tooFast: boolean; intervalSeconds: number }[]>()
      ;[...order(7), ...order(13)].forEach((g, i) => byGrant.set(g.id, [...(byGrant.get(g.id) ?? []), results[i]!]))
      for (const decisions of byGrant.values()) {
        expect(decisions).toHaveLength(20)
        expect(decisions.filter((d) => !d.tooFast)).toHaveLength(1)
        expect(Math.max(...decisions.map((d) => d.intervalSeconds))).toBe(5 + 19 * 5)
      }
    } finally {
      await other.close()
    }
  })

  it('gives each of 50 concurrent lookups its own token, none for an unknown hash, and the family revocation committed before', async () => {
    const families = Array.from({ length: 10 }, () => bundle())
    for (const b of families) await store.issueTokens(b)
    await store.revokeGrant(families[3]!.grant.id, NOW)
    const hashes = Array.from({ length: 50 }, (_, i) => (i % 11 === 10 ? 'unknown' : families[i % 11]!.accessToken.tokenHash))
    const found = await Promise.all(hashes.map((h) => store.findAccessTokenByHash(h)))
    found.forEach((token, i) => {
      if (hashes[i] === 'unknown') expect(token).toBeUndefined()
      else {
        const family = families[i % 11]!
        expect(token).toMatchObject({ tokenHash: family.accessToken.tokenHash, jti: family.accessToken.jti, grantId: family.grant.id })
        expect(token!.grantRevokedAt).toBe(i % 11 === 3 ? NOW : null)
      }
    })
  })
})

/**
 * Lets the current event-loop turn end and the next one too: the batches of this turn are sent,
 * and so are those a statement answered in this turn let go (its answer settles over several
 * microtasks, after this call's own `setImmediate` may have been queued).
 */
async function turn(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
}
