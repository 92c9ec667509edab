/**
 * The revocation feed (`GET /revocations?since=`) as the resource helper follows it: a revocation is
 * stamped when its transaction starts and becomes visible when it commits, so a large one (10,000
 * families on PostgreSQL take over a second) can commit after a feed answer whose `now` is already
 * past its `revoked_at`. The helper asks again from FEED_OVERLAP_SECONDS before the previous `now`,
 * so such a revocation is still seen.
 */
import { describe, expect, it } from 'vitest'
import { FEED_OVERLAP_SECONDS, RevocationFeed } from '../src/resource/revocation.js'

describe('revocation feed: a revocation committed after a later answer', () => {
  it('is still refused: each poll asks from FEED_OVERLAP_SECONDS before the previous answer', async () => {
    const committed: { jti: string; revoked_at: number; exp: number }[] = []
    const asked: number[] = []
    let serverNow = 1_000
    const fetchImpl = (async (input: string | URL | Request) => {
      const since = Number(new URL(String(input)).searchParams.get('since'))
      asked.push(since)
      const body = { now: serverNow, since, access_tokens: committed.filter((t) => t.revoked_at >= since), grants: [] }
      return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } })
    }) as typeof fetch
    const feed = new RevocationFeed({ url: 'https://as.test/revocations', credentials: { clientId: 'rs', clientSecret: 's' }, fetch: fetchImpl, nowMs: () => serverNow * 1000 })
    await feed.sync() // answer: now = 1000, nothing revoked yet
    // A revocation stamped at 999 (its transaction began then) commits only now, at 1001.
    serverNow = 1_001
    committed.push({ jti: 'late', revoked_at: 999, exp: 5_000 })
    await feed.sync()
    expect(asked).toEqual([0, 1_000 - FEED_OVERLAP_SECONDS])
    expect(await feed.isRevoked('late')).toBe(true)
  })
})
