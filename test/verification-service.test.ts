/**
 * The verification service without HTTP: code entry and its limits (RFC 8628 §5.1), sign-in and
 * its limits, establishing a session, the decision with its server-side policy re-check, and the
 * second factor (RFC 6238) — on a real SQLite store, with the test clock.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generate } from 'otplib'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { DomainEvent } from '../src/core/events.js'
import type { Client, User } from '../src/core/model.js'
import { generateUserCode } from '../src/core/user-code.js'
import { BUILT_IN_POLICY } from '../src/policy/compile.js'
import { NO_GEO } from '../src/policy/geo.js'
import { PolicyService } from '../src/policy/service.js'
import { createSqliteStore } from '../src/storage/sqlite.js'
import type { DeviceGrantRecord, Store } from '../src/storage/store.js'
import { sha256Hex, systemRandom } from '../src/system.js'
import { createVerificationService, type VerificationService, type WebSession } from '../src/verification/service.js'
import { typedCodeProof } from '../src/verification/sessions.js'
import { SIGN_IN_MAX_FAILURES, SIGN_IN_WINDOW_SECONDS } from '../src/verification/sign-in.js'
import { createUserDirectory, hashPassword } from '../src/web/user-directory.js'
import { publicDeviceClient } from './support/clients.js'
import { TestClock } from './support/server.js'

const MAX_FAILURES = 5
const WINDOW = 600
const IP = '192.0.2.10'
const TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'

function client(id: string, riskTier?: Client['riskTier']): Client {
  return publicDeviceClient(id, { name: `App ${id}`, ...(riskTier ? { riskTier } : {}) })
}
const CLIENTS = new Map([client('cli'), client('risky', 'high'), client('admin-app', 'admin')].map((c) => [c.id, c]))

let users: User[]
let tmp: string
let dbCounter = 0
let store: Store
let clock: TestClock
let events: DomainEvent[]
let service: VerificationService

beforeAll(async () => {
  const passwordHash = await hashPassword('right-pass')
  users = [
    { username: 'alice', displayName: 'Alice', passwordHash, disabled: false, totpSecret: TOTP_SECRET },
    { username: 'bob', displayName: 'Bob', passwordHash, disabled: false },
  ]
  tmp = await mkdtemp(join(tmpdir(), 'devicegate-verification-service-'))
})

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true })
})

beforeEach(async () => {
  store = await createSqliteStore(join(tmp, `s-${dbCounter++}.sqlite`))
  await store.migrate()
  clock = new TestClock()
  clock.freeze()
  events = []
  const directory = createUserDirectory(users)
  const clients = { get: (id: string) => CLIENTS.get(id) }
  service = createVerificationService({
    store,
    random: systemRandom,
    clients,
    users: directory,
    codeEntryMaxFailures: MAX_FAILURES,
    codeEntryWindowSeconds: WINDOW,
    sessionTtlSeconds: 3600,
    policy: new PolicyService({ source: { current: () => BUILT_IN_POLICY }, geo: NO_GEO, users: directory, clients }),
    events: { record: async (e) => void events.push(e) },
    logger: { info: () => {}, warn: () => {} },
  })
})

afterEach(async () => {
  await store.close()
})

async function createGrant(clientId = 'cli', overrides: Partial<DeviceGrantRecord> = {}): Promise<DeviceGrantRecord> {
  const now = clock.nowSeconds()
  const grant: DeviceGrantRecord = {
    id: `g-${Math.random().toString(36).slice(2)}`,
    deviceCodeHash: sha256Hex(`dc-${Math.random()}`),
    userCode: generateUserCode(systemRandom),
    clientId,
    scope: 'read',
    status: 'pending',
    subject: null,
    createdAt: now,
    expiresAt: now + 600,
    intervalSeconds: 5,
    lastPolledAt: null,
    decidedAt: null,
    requestIp: IP,
    requestUserAgent: 'test-cli/1.0',
    dpopJkt: null,
    grantId: null,
    ...overrides,
  }
  await store.createDeviceGrant(grant)
  return grant
}

async function anonymous(): Promise<WebSession> {
  return (await service.sessions.start(clock.nowSeconds())).session
}

async function signedIn(username = 'alice'): Promise<WebSession> {
  const person = users.find((u) => u.username === username)!
  return (await service.establishSession(person, clock.nowSeconds(), { ip: IP })).session
}

describe('RFC 8628 §5.1 code entry limits', () => {
  it('blocks a signed-out session after the maximum failed entries, even for a correct code', async () => {
    const session = await anonymous()
    const now = clock.nowSeconds()
    for (let i = 0; i < MAX_FAILURES; i++) {
      expect(await service.showCode({ session, rawCode: 'BBBB-BBBB', source: 'typed', ip: IP }, now)).toEqual({
        kind: 'problem',
        problem: 'invalid',
        attemptsLeft: MAX_FAILURES - 1 - i,
      })
    }
    const grant = await createGrant()
    const blocked = await service.showCode({ session, rawCode: grant.userCode, source: 'typed', ip: IP }, now)
    // Sliding window: the oldest failure frees a whole window after it was made.
    expect(blocked).toEqual({ kind: 'blocked', retryAfterSeconds: WINDOW, signInRequired: false })
  })

  it('counts signed-out failures per IP, so a fresh session from the same address is blocked too', async () => {
    const now = clock.nowSeconds()
    for (let i = 0; i < MAX_FAILURES; i++) await service.showCode({ session: await anonymous(), rawCode: 'nope', source: 'typed', ip: IP }, now)
    expect((await service.showCode({ session: await anonymous(), rawCode: 'nope', source: 'typed', ip: IP }, now)).kind).toBe('blocked')
    expect((await service.showCode({ session: await anonymous(), rawCode: 'nope', source: 'typed', ip: '192.0.2.99' }, now)).kind).toBe('problem')
  })

  it('counts a signed-in typed entry against the account and the signed-in source, not the signed-out source budget', async () => {
    const now = clock.nowSeconds()
    for (let i = 0; i < MAX_FAILURES; i++) await service.showCode({ session: await signedIn('alice'), rawCode: 'nope', source: 'typed', ip: IP }, now)
    expect((await service.showCode({ session: await signedIn('alice'), rawCode: 'nope', source: 'typed', ip: '192.0.2.99' }, now)).kind).toBe('blocked')
    // Another account from the same address is not locked out by one account's guessing (the
    // signed-in source budget is twice an account's), nor is signed-out entry from that address.
    expect((await service.showCode({ session: await signedIn('bob'), rawCode: 'nope', source: 'typed', ip: IP }, now)).kind).toBe('problem')
    expect((await service.showCode({ session: await anonymous(), rawCode: 'nope', source: 'typed', ip: IP }, now)).kind).toBe('problem')
  })

  it('never counts a followed link against the account (crafted links cannot lock a victim out)', async () => {
    const now = clock.nowSeconds()
    for (let i = 0; i < MAX_FAILURES; i++) await service.showCode({ session: await signedIn('alice'), rawCode: 'nope', source: 'link', ip: `192.0.2.${i}` }, now)
    expect((await service.showCode({ session: await signedIn('alice'), rawCode: 'nope', source: 'typed', ip: IP }, now)).kind).toBe('problem')
  })

  it('opens again when the window ends', async () => {
    const session = await anonymous()
    for (let i = 0; i < MAX_FAILURES; i++) await service.showCode({ session, rawCode: 'nope', source: 'typed', ip: IP }, clock.nowSeconds())
    const blocked = await service.showCode({ session, rawCode: 'nope', source: 'typed', ip: IP }, clock.nowSeconds())
    expect(blocked.kind).toBe('blocked')
    clock.advance(blocked.kind === 'blocked' ? blocked.retryAfterSeconds : 0)
    expect((await service.showCode({ session, rawCode: 'nope', source: 'typed', ip: IP }, clock.nowSeconds())).kind).toBe('problem')
  })

  it('records user_code.looked_up for each lookup, and tells expired and used codes apart', async () => {
    const session = await anonymous()
    const expired = await createGrant('cli', { expiresAt: clock.nowSeconds() - 1 })
    const used = await createGrant('cli', { status: 'denied', subject: 'bob' })
    const now = clock.nowSeconds()
    expect(await service.showCode({ session, rawCode: expired.userCode, source: 'typed', ip: IP }, now)).toEqual({ kind: 'problem', problem: 'expired', attemptsLeft: 4 })
    expect(await service.showCode({ session, rawCode: used.userCode, source: 'typed', ip: IP }, now)).toEqual({ kind: 'problem', problem: 'used', attemptsLeft: 3 })
    expect(events.filter((e) => e.type === 'user_code.looked_up').map((e) => e.details?.outcome)).toEqual(['expired', 'used'])
  })
})

describe('RFC 8628 §3.3 showing a code', () => {
  it('asks a signed-out visitor to sign in, with the canonical code', async () => {
    const grant = await createGrant()
    const shown = await service.showCode({ session: await anonymous(), rawCode: grant.userCode.toLowerCase(), source: 'typed', ip: IP }, clock.nowSeconds())
    expect(shown).toEqual({ kind: 'sign_in', userCode: grant.userCode })
  })

  it('shows a signed-in person the review with the policy evaluated (confirmation for a high-risk app)', async () => {
    const grant = await createGrant('risky')
    const shown = await service.showCode({ session: await signedIn(), rawCode: grant.userCode, source: 'typed', ip: IP }, clock.nowSeconds())
    expect(shown.kind).toBe('review')
    if (shown.kind !== 'review') return
    expect(shown.review.grant.id).toBe(grant.id)
    expect(shown.review.policy?.decision.decision).toBe('allow')
    expect(shown.review.policy?.confirmSuffixLength).toBe(4)
  })

  it('shows a person the decision they already made instead of counting a failure', async () => {
    const session = await signedIn()
    const grant = await createGrant('cli', { status: 'approved', subject: 'alice' })
    const shown = await service.showCode({ session, rawCode: grant.userCode, source: 'typed', ip: IP }, clock.nowSeconds())
    expect(shown).toMatchObject({ kind: 'already_decided', outcome: 'approved', clientName: 'App cli', conflicts: false })
  })
})

describe('the decision, re-checked on the server', () => {
  it('approves, records device_code.approved and the grant as approved by this person', async () => {
    const grant = await createGrant()
    const session = await signedIn()
    if (session.user === undefined) throw new Error('not signed in')
    const outcome = await service.decide({ session: { ...session, user: session.user }, rawCode: grant.userCode, outcome: 'approved', confirmCode: undefined, ip: IP }, clock.nowSeconds())
    expect(outcome).toMatchObject({ kind: 'decided', outcome: 'approved' })
    expect(await store.findDeviceGrantByUserCode(grant.userCode)).toMatchObject({ status: 'approved', subject: 'alice' })
    expect(events.map((e) => e.type)).toContain('device_code.approved')
    expect(events.map((e) => e.type)).toContain('policy.decided')
  })

  it('refuses approval of an admin app until the second factor is done in this sign-in', async () => {
    const grant = await createGrant('admin-app')
    const session = await signedIn()
    const signed = { ...session, user: session.user! }
    const refused = await service.decide({ session: signed, rawCode: grant.userCode, outcome: 'approved', confirmCode: undefined, ip: IP }, clock.nowSeconds())
    expect(refused.kind).toBe('step_up_required')
    expect((await store.findDeviceGrantByUserCode(grant.userCode))?.status).toBe('pending')

    const totp = await generate({ secret: TOTP_SECRET, epoch: clock.nowSeconds() })
    const stepped = await service.stepUp({ session, rawCode: grant.userCode, totp, ip: IP }, clock.nowSeconds())
    expect(stepped.kind).toBe('completed')
    const record = await store.findWebSession(session.record.idHash, clock.nowSeconds())
    expect(record?.mfaAt).toBe(clock.nowSeconds())
    const approved = await service.decide(
      { session: { ...signed, record: record! }, rawCode: grant.userCode, outcome: 'approved', confirmCode: grant.userCode.slice(-4), ip: IP },
      clock.nowSeconds(),
    )
    expect(approved).toMatchObject({ kind: 'decided', outcome: 'approved' })
  })

  it('counts a wrong confirmation for a high-risk app as a failed code entry and records nothing', async () => {
    const grant = await createGrant('risky')
    const session = await signedIn()
    const signed = { ...session, user: session.user! }
    const wrong = grant.userCode.slice(-4) === 'BBBB' ? 'CCCC' : 'BBBB'
    for (let i = 0; i < MAX_FAILURES; i++) {
      const outcome = await service.decide({ session: signed, rawCode: grant.userCode, outcome: 'approved', confirmCode: wrong, ip: IP }, clock.nowSeconds())
      expect(outcome.kind).toBe('confirm_mismatch')
    }
    const blocked = await service.decide({ session: signed, rawCode: grant.userCode, outcome: 'approved', confirmCode: grant.userCode.slice(-4), ip: IP }, clock.nowSeconds())
    expect(blocked.kind).toBe('blocked')
    expect((await store.findDeviceGrantByUserCode(grant.userCode))?.status).toBe('pending')
  })

  it('answers a second click on the other button with the recorded decision, marked as conflicting', async () => {
    const grant = await createGrant()
    const session = await signedIn()
    const signed = { ...session, user: session.user! }
    await service.decide({ session: signed, rawCode: grant.userCode, outcome: 'denied', confirmCode: undefined, ip: IP }, clock.nowSeconds())
    const again = await service.decide({ session: signed, rawCode: grant.userCode, outcome: 'approved', confirmCode: undefined, ip: IP }, clock.nowSeconds())
    expect(again).toMatchObject({ kind: 'already_decided', outcome: 'denied', conflicts: true })
  })
})

describe('sign-in and sessions', () => {
  it('rotates the session at sign-in and returns to the code with a typed-code proof', async () => {
    const before = await anonymous()
    const outcome = await service.signIn({ session: before, username: 'alice', password: 'right-pass', userCode: 'bcdf-ghjk', ip: IP }, clock.nowSeconds())
    expect(outcome.kind).toBe('signed_in')
    if (outcome.kind !== 'signed_in') return
    const { session, cookieValue, returnTo } = outcome.established
    expect(returnTo).toBe(`/device?user_code=BCDFGHJK&typed=${typedCodeProof(session.record, 'BCDFGHJK')}`)
    expect(session.record.csrfToken).not.toBe(before.record.csrfToken)
    expect(await store.findWebSession(before.record.idHash, clock.nowSeconds())).toBeUndefined()
    expect((await service.sessions.load(cookieValue, clock.nowSeconds()))?.user?.username).toBe('alice')
    expect(events.at(-1)).toMatchObject({ type: 'session.signed_in', subject: 'alice', ip: IP })
  })

  it('establishes a session for a person signed in another way, returning to /device', async () => {
    const established = await service.establishSession(users[1]!, clock.nowSeconds(), { ip: IP })
    expect(established.returnTo).toBe('/device')
    expect(established.session.record).toMatchObject({ subject: 'bob', authTime: clock.nowSeconds(), expiresAt: clock.nowSeconds() + 3600 })
  })

  it('blocks sign-in per IP and username after the maximum failures, even with the right password', async () => {
    const session = await anonymous()
    const now = clock.nowSeconds()
    for (let i = 0; i < SIGN_IN_MAX_FAILURES; i++) {
      expect(await service.signIn({ session, username: 'alice', password: 'wrong', userCode: undefined, ip: IP }, now)).toEqual({ kind: 'failed', userCode: undefined, username: 'alice' })
    }
    const blocked = await service.signIn({ session, username: 'alice', password: 'right-pass', userCode: undefined, ip: IP }, now)
    expect(blocked).toEqual({ kind: 'blocked', retryAfterSeconds: SIGN_IN_WINDOW_SECONDS - (now % SIGN_IN_WINDOW_SECONDS) })
    expect((await service.signIn({ session, username: 'bob', password: 'right-pass', userCode: undefined, ip: IP }, now)).kind).toBe('signed_in')
    expect(events.filter((e) => e.type === 'session.sign_in_failed')).toHaveLength(SIGN_IN_MAX_FAILURES)
  })

  it('treats a session as signed out once its lifetime has passed', async () => {
    const established = await service.establishSession(users[0]!, clock.nowSeconds(), { ip: IP })
    clock.advance(3600)
    expect(await service.sessions.load(established.cookieValue, clock.nowSeconds())).toBeUndefined()
  })
})

describe('RFC 6238 second factor', () => {
  it('never offers enrolment to a person without an authenticator', async () => {
    expect(await service.stepUp({ session: await signedIn('bob'), rawCode: undefined, totp: '123456', ip: IP }, clock.nowSeconds())).toEqual({ kind: 'not_enrolled' })
  })

  it('asks a signed-out session to sign in first', async () => {
    expect(await service.stepUp({ session: await anonymous(), rawCode: 'bcdf ghjk', totp: '123456', ip: IP }, clock.nowSeconds())).toEqual({
      kind: 'sign_in_required',
      userCode: 'BCDFGHJK',
    })
  })

  it('accepts a code once: a replay in the same step fails', async () => {
    const session = await signedIn()
    const totp = await generate({ secret: TOTP_SECRET, epoch: clock.nowSeconds() })
    expect(await service.stepUp({ session, rawCode: undefined, totp, ip: IP }, clock.nowSeconds())).toEqual({ kind: 'completed', review: undefined })
    expect(await service.stepUp({ session, rawCode: undefined, totp, ip: IP }, clock.nowSeconds())).toEqual({ kind: 'failed', result: 'replayed', review: undefined })
  })

  it('lets only a session that completed the second factor enrol a new authenticator', async () => {
    const session = await signedIn()
    expect(service.startTotpEnrolment(session)).toEqual({ kind: 'mfa_required' })
    const totp = await generate({ secret: TOTP_SECRET, epoch: clock.nowSeconds() })
    await service.stepUp({ session, rawCode: undefined, totp, ip: IP }, clock.nowSeconds())
    const after = { ...session, record: { ...session.record, mfaAt: clock.nowSeconds() } }
    const ready = service.startTotpEnrolment(after)
    expect(ready.kind).toBe('ready')
    if (ready.kind !== 'ready') return
    clock.advance(30)
    const code = await generate({ secret: ready.secret, epoch: clock.nowSeconds() })
    expect(await service.enrolTotp({ session: after, secret: ready.secret, totp: code, ip: IP }, clock.nowSeconds())).toEqual({ kind: 'saved' })
    expect((await store.findTotpSecret('alice'))?.secret).toBe(ready.secret)
  })
})
