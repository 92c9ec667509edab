/**
 * The resource helper's Shared Signals poll mode (RFC 8936) during a backlog: a mass revocation
 * (10,000 families) queues one SET per family, more than one poll page. Each answered page counts
 * as a successful poll, and a check that finds the state stale waits for the next page, so checks
 * go on with what is applied so far instead of waiting for the whole backlog.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { SsfRevocations } from '../src/resource/ssf.js'

const ISSUER = 'https://as.test'

/** A transmitter whose poll pages the test releases one by one. */
function transmitter() {
  const pages: { release: (body: unknown) => void }[] = []
  const requested: number[] = []
  const json = (body: unknown) => new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } })
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input)
    if (url.endsWith('/.well-known/ssf-configuration')) return json({ configuration_endpoint: `${ISSUER}/ssf/stream` })
    if (url.endsWith('/token')) return json({ access_token: 'at', expires_in: 3600 })
    if (url.endsWith('/ssf/stream')) return init?.method === 'GET' ? json([]) : json({ stream_id: 's1', delivery: { endpoint_url: `${ISSUER}/ssf/poll/s1` } })
    if (url.endsWith('/ssf/poll/s1')) {
      requested.push(pages.length)
      return new Promise<Response>((resolve) => pages.push({ release: (body) => resolve(json(body)) }))
    }
    return new Response('', { status: 404 })
  }) as typeof fetch
  return { fetchImpl, pages, requested }
}

const until = async (check: () => boolean) => {
  while (!check()) await new Promise((r) => setTimeout(r, 1))
}

let helper: SsfRevocations | undefined
afterEach(() => helper?.stop())

describe('SSF poll mode during a backlog (RFC 8936 moreAvailable)', () => {
  it('a check after an answered page does not wait for the rest of the backlog', async () => {
    const t = transmitter()
    let now = 1_000_000
    helper = new SsfRevocations({ issuer: ISSUER, credentials: { clientId: 'api', clientSecret: 'secret' }, fetch: t.fetchImpl, nowMs: () => now, pollIntervalMs: 1000 })
    const syncing = helper.sync()
    await until(() => t.pages.length === 1)
    t.pages[0]!.release({ sets: {}, moreAvailable: true }) // page 1 of a backlog
    await until(() => t.pages.length === 2) // page 2 asked for, not answered
    now += 1500 // past the sync's start by more than the interval, within 2 × of page 1
    const blocked = Symbol('blocked')
    const verdict = await Promise.race([helper.isRevoked({ sid: 'g1', sub: 'u', iat: 1 }), new Promise((r) => setTimeout(() => r(blocked), 200))])
    expect(verdict).toBe(false)
    t.pages[1]!.release({ sets: {}, moreAvailable: false })
    await syncing
  })

  it('a check when no page was answered for 2 × the interval waits for the next page, not for the rest of the backlog', async () => {
    const t = transmitter()
    let now = 1_000_000
    helper = new SsfRevocations({ issuer: ISSUER, credentials: { clientId: 'api', clientSecret: 'secret' }, fetch: t.fetchImpl, nowMs: () => now, pollIntervalMs: 1000 })
    const syncing = helper.sync()
    await until(() => t.pages.length === 1)
    t.pages[0]!.release({ sets: {}, moreAvailable: true })
    await until(() => t.pages.length === 2)
    now += 2500
    const blocked = Symbol('blocked')
    const check = helper.isRevoked({ sid: 'g1' })
    const verdict = await Promise.race([check, new Promise((r) => setTimeout(() => r(blocked), 200))])
    expect(verdict).toBe(blocked)
    t.pages[1]!.release({ sets: {}, moreAvailable: true })
    await until(() => t.pages.length === 3) // page 3 asked for, not answered
    expect(await Promise.race([check, new Promise((r) => setTimeout(() => r(blocked), 200))])).toBe(false)
    t.pages[2]!.release({ sets: {}, moreAvailable: false })
    await syncing
  })
})
