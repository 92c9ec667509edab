/**
 * A pending code is claimed by the browser session that reviews it (issue 16 §5, RFC 8628 §3.3,
 * §5.4): while one session has the review open, another (another browser of the same person,
 * another person who learnt the code, a phishing relay) can neither approve nor deny it; once
 * decided, it is closed to everyone; an abandoned review frees the code after the claim lifetime.
 * The verification service on a real SQLite file with the test clock.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Client, User } from '../src/core/model.js'
import { generateUserCode } from '../src/core/user-code.js'
import { createSqliteStore } from '../src/storage/sqlite.js'
import type { DeviceGrantRecord, Store } from '../src/storage/store.js'
import { sha256Hex, systemRandom } from '../src/system.js'
import { createVerificationService, type SignedInSession, type VerificationService } from '../src/verification/service.js'
import { createUserDirectory, hashPassword } from '../src/web/user-directory.js'
import { publicDeviceClient } from './support/clients.js'
import { TestClock } from './support/server.js'

const IP = '192.0.2.10'
const CLAIM = 120
const CLIENT: Client = publicDeviceClient()

let tmp: string
let users: User[]
let store: Store
let clock: TestClock
let service: VerificationService
let n = 0

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'devicegate-review-claim-'))
  const passwordHash = await hashPassword('pw')
  users = ['alice', 'mallory'].map((username) => ({ username, displayName: username, passwordHash, disabled: false }))
})
afterAll(async () => rm(tmp, { recursive: true, force: true }))
beforeEach(async () => {
  store = await createSqliteStore(join(tmp, `s-${n++}.sqlite`))
  await store.migrate()
  clock = new TestClock()
  clock.freeze()
  service = createVerificationService({
    store,
    random: systemRandom,
    clients: { get: (id) => (id === 'cli' ? CLIENT : undefined) },
    users: createUserDirectory(users),
    codeEntryMaxFailures: 5,
    codeEntryWindowSeconds: 600,
    sessionTtlSeconds: 3600,
    reviewClaimSeconds: CLAIM,
    logger: { info: () => {}, warn: () => {} },
  })
})
afterEach(async () => store.close())

async function createGrant(): Promise<DeviceGrantRecord> {
  const now = clock.nowSeconds()
  const grant: DeviceGrantRecord = {
    id: `g-${Math.random().toString(36).slice(2)}`,
    deviceCodeHash: sha256Hex(`dc-${Math.random()}`),
    userCode: generateUserCode(systemRandom),
    clientId: 'cli',
    scope: 'read',
    status: 'pending',
    subject: null,
    createdAt: now,
    expiresAt: now + 600,
    intervalSeconds: 5,
    lastPolledAt: null,
    decidedAt: null,
    requestIp: IP,
    requestUserAgent: null,
    dpopJkt: null,
    grantId: null,
  }
  await store.createDeviceGrant(grant)
  return grant
}
async function browser(username: string): Promise<SignedInSession> {
  return (await service.establishSession(users.find((u) => u.username === username)!, clock.nowSeconds(), { ip: IP })).session
}
const show = (session: SignedInSession, grant: DeviceGrantRecord) =>
  service.showCode({ session, rawCode: grant.userCode, source: 'typed', ip: IP }, clock.nowSeconds())
const decide = (session: SignedInSession, grant: DeviceGrantRecord, outcome: 'approved' | 'denied') =>
  service.decide({ session, rawCode: grant.userCode, outcome, confirmCode: undefined, ip: IP }, clock.nowSeconds())
const statusOf = async (grant: DeviceGrantRecord) => (await store.findDeviceGrantByUserCode(grant.userCode))?.status

describe('a pending code is claimed by the session that reviews it', () => {
  it('another session can neither review, approve nor deny it while the review is open; nothing changes', async () => {
    const grant = await createGrant()
    const first = await browser('alice')
    expect((await show(first, grant)).kind).toBe('review')
    const secondBrowser = await browser('alice')
    const other = await browser('mallory')
    expect(await show(secondBrowser, grant)).toEqual({ kind: 'claimed_elsewhere', claimSeconds: CLAIM })
    expect(await decide(secondBrowser, grant, 'approved')).toEqual({ kind: 'claimed_elsewhere', claimSeconds: CLAIM })
    expect(await decide(other, grant, 'denied')).toEqual({ kind: 'claimed_elsewhere', claimSeconds: CLAIM })
    expect(await statusOf(grant)).toBe('pending')
    // The claim is no failed entry: the other sessions are not nearer a block.
    expect(await service.showCode({ session: other, rawCode: 'nope', source: 'typed', ip: IP }, clock.nowSeconds())).toMatchObject({ attemptsLeft: 4 })
  })

  it('refuses a hand-made decision from another session that never showed the review', async () => {
    const grant = await createGrant()
    expect((await show(await browser('alice'), grant)).kind).toBe('review')
    expect((await decide(await browser('mallory'), grant, 'approved')).kind).toBe('claimed_elsewhere')
    expect(await statusOf(grant)).toBe('pending')
  })

  it('the claiming session decides; once decided the code is closed to everyone', async () => {
    const grant = await createGrant()
    const first = await browser('alice')
    await show(first, grant)
    expect(await decide(first, grant, 'approved')).toMatchObject({ kind: 'decided', outcome: 'approved' })
    expect(await decide(await browser('mallory'), grant, 'denied')).toMatchObject({ kind: 'problem', problem: 'used' })
    clock.advance(CLAIM + 1)
    expect(await decide(await browser('mallory'), grant, 'denied')).toMatchObject({ kind: 'problem', problem: 'used' })
    expect(await statusOf(grant)).toBe('approved')
  })

  it(`an abandoned review frees the code after ${CLAIM} s; the first session then loses it`, async () => {
    const grant = await createGrant()
    const first = await browser('alice')
    await show(first, grant)
    clock.advance(CLAIM - 1)
    expect((await show(await browser('alice'), grant)).kind).toBe('claimed_elsewhere')
    clock.advance(1)
    const second = await browser('alice')
    expect((await show(second, grant)).kind).toBe('review')
    expect((await decide(first, grant, 'approved')).kind).toBe('claimed_elsewhere')
    expect(await decide(second, grant, 'denied')).toMatchObject({ kind: 'decided', outcome: 'denied' })
  })

  it('renews the claim on every review of the holding session', async () => {
    const grant = await createGrant()
    const first = await browser('alice')
    await show(first, grant)
    clock.advance(CLAIM - 10)
    await show(first, grant)
    clock.advance(CLAIM - 10)
    expect((await show(await browser('mallory'), grant)).kind).toBe('claimed_elsewhere')
  })

  it('of 5 sessions opening the review at once, exactly one holds it', async () => {
    const grant = await createGrant()
    const sessions = await Promise.all(Array.from({ length: 5 }, () => browser('alice')))
    const shown = await Promise.all(sessions.map((s) => show(s, grant)))
    expect(shown.filter((s) => s.kind === 'review')).toHaveLength(1)
    expect(shown.filter((s) => s.kind === 'claimed_elsewhere')).toHaveLength(4)
  })
})

describe('the page for a code under review elsewhere (HTTP)', () => {
  it('answers 409 with a clear page and no Approve/Deny buttons; the device still waits', async () => {
    const { startTestServer, PageSession, postForm, FIXTURE } = await import('./support/server.js')
    const t = await startTestServer()
    try {
      const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
      const first = new PageSession(t.url)
      await first.signIn('alice', FIXTURE.password)
      expect((await first.post('/device', { user_code: auth.json.user_code })).status).toBe(200)
      const second = new PageSession(t.url)
      await second.signIn('alice', FIXTURE.password)
      const page = await second.post('/device', { user_code: auth.json.user_code })
      expect(page.status).toBe(409)
      expect(page.headers.get('cache-control')).toBe('no-store')
      expect(page.body).toContain('Being reviewed elsewhere')
      expect(page.body).not.toContain('value="approve"')
      expect(page.body).not.toContain('value="deny"')
      expect((await second.post('/device', { user_code: auth.json.user_code, decision: 'deny' })).status).toBe(409)
      const poll = await postForm(`${t.url}/token`, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: auth.json.device_code, client_id: 'cli' })
      expect(poll.json.error).toBe('authorization_pending')
      expect((await first.post('/device', { user_code: auth.json.user_code, decision: 'approve' })).status).toBe(200)
    } finally {
      await t.close()
    }
  })
})
