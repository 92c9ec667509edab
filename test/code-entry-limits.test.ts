/**
 * RFC 8628 §5.1 user-code guessing bounds of the verification service: a sliding window that holds
 * for any span (not clock-aligned windows), IPv6 sources keyed by their /64, a bound per source for
 * signed-in sessions, and a server-wide budget of failed entries that forces sign-in and raises the
 * `user_code_guessing` anomaly. On real SQLite files (the store contract runs the slots on
 * PostgreSQL too), with the test clock.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { resolveGovernanceConfig } from '../src/config/governance.js'
import type { DomainEvent } from '../src/core/events.js'
import type { Client, User } from '../src/core/model.js'
import { AnomalyEngine } from '../src/governance/anomalies.js'
import type { RevocationService } from '../src/governance/revocation.js'
import { createSqliteStore } from '../src/storage/sqlite.js'
import type { Store } from '../src/storage/store.js'
import { systemRandom } from '../src/system.js'
import { sourceKeyOf, type CodeEntryLimits } from '../src/verification/code-entry-limiter.js'
import { createVerificationService, type VerificationService, type WebSession } from '../src/verification/service.js'
import { createUserDirectory, hashPassword } from '../src/web/user-directory.js'
import { publicDeviceClient } from './support/clients.js'
import { TestClock } from './support/server.js'

const WINDOW = 600
const IP = '198.51.100.7'
const CLIENT: Client = publicDeviceClient()

let tmp: string
let file: string
let users: User[]
let store: Store
let clock: TestClock
let events: DomainEvent[]
let anomalies: AnomalyEngine

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'devicegate-code-entry-limits-'))
  const passwordHash = await hashPassword('pw')
  users = ['alice', 'bob', 'carol'].map((username) => ({ username, displayName: username, passwordHash, disabled: false }))
})
afterAll(async () => rm(tmp, { recursive: true, force: true }))

let n = 0
beforeEach(async () => {
  file = join(tmp, `s-${n++}.sqlite`)
  store = await createSqliteStore(file)
  await store.migrate()
  clock = new TestClock()
  clock.freeze()
  events = []
})
afterEach(async () => store.close())

function makeService(limits: Partial<Omit<CodeEntryLimits, 'maxFailures' | 'windowSeconds'>> = {}): VerificationService {
  const sink = {
    record: async (e: DomainEvent) => {
      events.push(e)
      await anomalies.listener(e)
    },
  }
  anomalies = new AnomalyEngine({
    store,
    clock,
    random: systemRandom,
    config: resolveGovernanceConfig(undefined, tmp).anomalies,
    events: { record: async (e) => void events.push(e) },
    revocation: {} as RevocationService, // action `alert`: never called
  })
  return createVerificationService({
    store,
    random: systemRandom,
    clients: { get: (id) => (id === 'cli' ? CLIENT : undefined) },
    users: createUserDirectory(users),
    codeEntryMaxFailures: 5,
    codeEntryWindowSeconds: WINDOW,
    codeEntryLimits: limits,
    sessionTtlSeconds: 3600,
    events: sink,
    logger: { info: () => {}, warn: () => {} },
  })
}

async function anonymous(service: VerificationService): Promise<WebSession> {
  return (await service.sessions.start(clock.nowSeconds())).session
}
async function signedIn(service: VerificationService, username: string): Promise<WebSession> {
  return (await service.establishSession(users.find((u) => u.username === username)!, clock.nowSeconds(), { ip: IP })).session
}
/** One wrong typed code; `evaluated` when the lookup ran (not blocked). */
async function guess(service: VerificationService, session: WebSession, ip = IP): Promise<'evaluated' | 'blocked'> {
  const out = await service.showCode({ session, rawCode: 'BBBB-BBBB', source: 'typed', ip }, clock.nowSeconds())
  return out.kind === 'blocked' ? 'blocked' : 'evaluated'
}

describe('RFC 8628 §5.1 sliding code-entry window', () => {
  it('a burst straddling a clock-aligned window boundary gets at most 5 evaluated guesses in any 600 s', async () => {
    const service = makeService()
    const boundary = Math.ceil(clock.nowSeconds() / WINDOW) * WINDOW + WINDOW
    clock.advance(boundary - 3 - clock.nowSeconds())
    // A fresh session per guess (sessions are free), one source: a guess every second around the
    // boundary, then every 7 s for 20 minutes.
    const times = [...Array.from({ length: 10 }, (_, i) => boundary - 3 + i)]
    for (let t = boundary + 7; t < boundary + 2 * WINDOW; t += 7) times.push(t)
    const evaluatedAt: number[] = []
    for (const t of times) {
      clock.advance(t - clock.nowSeconds())
      if ((await guess(service, await anonymous(service))) === 'evaluated') evaluatedAt.push(t)
    }
    // Fixed windows would have allowed 5 before the boundary and 5 more right after it.
    for (const start of evaluatedAt) expect(evaluatedAt.filter((t) => t >= start && t < start + WINDOW).length).toBeLessThanOrEqual(5)
    expect(evaluatedAt.slice(0, 5)).toEqual([boundary - 3, boundary - 2, boundary - 1, boundary, boundary + 1])
    // The next one only once the first has left the window; the guesser keeps a steady 5 per 600 s.
    expect(evaluatedAt[5]).toBeGreaterThanOrEqual(boundary - 3 + WINDOW)
    expect(evaluatedAt.length).toBeGreaterThanOrEqual(10)
  })

  it('evaluates at most 5 of 20 concurrent guesses from one session (slots are taken before the lookup)', async () => {
    const service = makeService()
    const session = await anonymous(service)
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => guess(service, session)))
    expect(outcomes.filter((o) => o === 'evaluated')).toHaveLength(5)
  })

  it('gives the slot back for a code that is found (only failures count)', async () => {
    const service = makeService()
    const session = await anonymous(service)
    const grant = { id: 'g1', deviceCodeHash: 'h'.repeat(64), userCode: 'BCDFGHJK', clientId: 'cli', scope: 'read', status: 'pending' as const, subject: null, createdAt: clock.nowSeconds(), expiresAt: clock.nowSeconds() + 600, intervalSeconds: 5, lastPolledAt: null, decidedAt: null, requestIp: IP, requestUserAgent: null, dpopJkt: null, grantId: null }
    await store.createDeviceGrant(grant)
    for (let i = 0; i < 10; i++) expect((await service.showCode({ session, rawCode: 'BCDF-GHJK', source: 'typed', ip: IP }, clock.nowSeconds())).kind).toBe('sign_in')
    const out = await service.showCode({ session, rawCode: 'nope', source: 'typed', ip: IP }, clock.nowSeconds())
    expect(out).toMatchObject({ kind: 'problem', attemptsLeft: 4 })
  })

  it('holds across a restart: the counts live in the store', async () => {
    const before = makeService()
    for (let i = 0; i < 5; i++) await guess(before, await anonymous(before))
    await store.close()
    store = await createSqliteStore(file)
    await store.migrate()
    const after = makeService()
    expect(await guess(after, await anonymous(after))).toBe('blocked')
  })
})

describe('RFC 8628 §5.1 source keys', () => {
  it('keys IPv6 by /64 (configurable), IPv4 by address, IPv4-mapped IPv6 as IPv4', () => {
    expect(sourceKeyOf('2001:db8:1:2:aaaa::1', 64)).toBe(sourceKeyOf('2001:db8:1:2:ffff:ffff:ffff:ffff', 64))
    expect(sourceKeyOf('2001:db8:1:2::1', 64)).not.toBe(sourceKeyOf('2001:db8:1:3::1', 64))
    expect(sourceKeyOf('2001:db8:1:2::1', 56)).toBe(sourceKeyOf('2001:db8:1:3::1', 56))
    expect(sourceKeyOf('::ffff:192.0.2.1', 64)).toBe(sourceKeyOf('192.0.2.1', 64))
    expect(sourceKeyOf('192.0.2.1', 64)).not.toBe(sourceKeyOf('192.0.2.2', 64))
  })

  it('two addresses in one /64 share a budget; another /64 has its own', async () => {
    const service = makeService()
    for (let i = 1; i <= 5; i++) expect(await guess(service, await anonymous(service), `2001:db8:5:6::${i.toString(16)}`)).toBe('evaluated')
    expect(await guess(service, await anonymous(service), '2001:db8:5:6:dead:beef:0:1')).toBe('blocked')
    expect(await guess(service, await anonymous(service), '2001:db8:5:7::1')).toBe('evaluated')
  })

  it('shares the budget of an IPv4 address with its IPv4-mapped IPv6 form', async () => {
    const service = makeService()
    for (let i = 0; i < 5; i++) await guess(service, await anonymous(service), '192.0.2.44')
    expect(await guess(service, await anonymous(service), '::ffff:192.0.2.44')).toBe('blocked')
  })

  it('bounds signed-in sessions per source address, whatever the number of accounts', async () => {
    const service = makeService()
    // One account alone stops at its own 5, leaving room for colleagues behind the same address …
    for (let i = 0; i < 5; i++) expect(await guess(service, await signedIn(service, 'alice'))).toBe('evaluated')
    expect(await guess(service, await signedIn(service, 'alice'))).toBe('blocked')
    // … but the source as a whole stops at 10, whatever the number of accounts.
    for (let i = 0; i < 5; i++) expect(await guess(service, await signedIn(service, 'bob'))).toBe('evaluated')
    expect(await guess(service, await signedIn(service, 'carol'))).toBe('blocked')
    expect(await guess(service, await signedIn(service, 'carol'), '203.0.113.1')).toBe('evaluated')
  })
})

describe('RFC 8628 §5.1 server-wide budget of failed entries', () => {
  it('beyond the budget, signed-out entry needs sign-in and user_code_guessing (source: server) is raised once', async () => {
    const service = makeService({ serverMaxFailures: 8 })
    for (let i = 0; i < 8; i++) expect(await guess(service, await anonymous(service), `203.0.113.${i}`)).toBe('evaluated')
    const refused = await service.showCode({ session: await anonymous(service), rawCode: 'BBBB-BBBB', source: 'typed', ip: '192.0.2.200' }, clock.nowSeconds())
    expect(refused).toEqual({ kind: 'blocked', retryAfterSeconds: WINDOW, signInRequired: true })
    await guess(service, await anonymous(service), '192.0.2.201')
    expect(events.filter((e) => e.type === 'user_code.entry_budget_exhausted')).toHaveLength(1)
    const raised = await store.listAnomalies({ sinceTime: 0, kind: 'user_code_guessing', limit: 10 })
    expect(raised.filter((a) => JSON.parse(a.details).source === 'server')).toHaveLength(1)
    expect(events.some((e) => e.type === 'anomaly.raised' && e.details?.source === 'server')).toBe(true)
    // Signed in, code entry goes on (bounded per account and source).
    expect(await guess(service, await signedIn(service, 'alice'), '192.0.2.200')).toBe('evaluated')
  })
})
