/**
 * Upstream sign-in and password sign-in are one path: the upstream callback signs the person in
 * through the verification service's `establishSession` (session rotation against fixation, the
 * review claims moving with the browser, the `session.signed_in` audit event), never by writing
 * a web session itself. The provider is stubbed here (the end-to-end runs are in
 * identity-upstream*.test.ts); the verification service and the store are real.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import cookie from '@fastify/cookie'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { DomainEvent } from '../src/core/events.js'
import type { User } from '../src/core/model.js'
import { registerUpstreamRoutes } from '../src/identity/upstream-routes.js'
import type { UpstreamSignedIn, UpstreamSignIn } from '../src/identity/upstream.js'
import { createSqliteStore } from '../src/storage/sqlite.js'
import type { Store } from '../src/storage/store.js'
import { sha256Hex, systemRandom } from '../src/system.js'
import { createVerificationService } from '../src/verification/service.js'
import { reviewClaimId } from '../src/verification/sessions.js'
import { createUserDirectory, hashPassword } from '../src/web/user-directory.js'
import { TestClock } from './support/server.js'

const IP = '127.0.0.1'
let tmp: string
let store: Store
let app: FastifyInstance
let events: DomainEvent[]
const clock = new TestClock()

const dana: User = { username: 'person-7f3a', displayName: 'Dana Scully', passwordHash: '', disabled: false }
const signedIn = (stepUp: boolean): UpstreamSignedIn =>
  ({
    person: { id: dana.username },
    provider: { id: 'corp' },
    mfa: true,
    returnTo: '/device?user_code=BCDFGHJK',
    stepUp,
    amr: ['pwd', 'mfa'],
    acr: null,
  }) as unknown as UpstreamSignedIn
let next = signedIn(false)

const upstream = {
  provider: (id: string) => (id === 'corp' ? { id: 'corp' } : undefined),
  redirectUri: () => 'https://devicegate.test/device/upstream/corp/callback',
  complete: async () => next,
} as unknown as UpstreamSignIn

let service: ReturnType<typeof createVerificationService>
let establish: ReturnType<typeof vi.fn>

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'devicegate-upstream-session-'))
  store = await createSqliteStore(join(tmp, 'db.sqlite'))
  await store.migrate()
  events = []
  const users = createUserDirectory([dana, { username: 'alice', displayName: 'Alice', passwordHash: await hashPassword('right-pass'), disabled: false }])
  service = createVerificationService({
    store,
    random: systemRandom,
    clients: { get: () => undefined },
    users,
    codeEntryMaxFailures: 5,
    codeEntryWindowSeconds: 600,
    sessionTtlSeconds: 3600,
    events: { record: async (e) => void events.push(e) },
    logger: { info: () => {}, warn: () => {} },
  })
  establish = vi.fn(service.establishSession)
  app = Fastify()
  await app.register(cookie)
  // What the HTTP layer's request context gives every route (src/http/request-context.ts).
  app.decorateRequest('clientIp', '')
  app.addHook('onRequest', async (request) => {
    request.clientIp = IP
  })
  await registerUpstreamRoutes(app, { upstream, verification: { sessions: service.sessions, establishSession: establish as never }, users, clock, events: { record: async (e) => void events.push(e) } })
})
afterAll(async () => {
  await app?.close()
  await store?.close()
  await rm(tmp, { recursive: true, force: true })
})

async function callback(sessionCookie?: string) {
  return app.inject({
    method: 'GET',
    url: '/device/upstream/corp/callback?code=c&state=s',
    cookies: { dg_upstream: 's', ...(sessionCookie !== undefined ? { dg_session: sessionCookie } : {}) },
  })
}
const sessionCookieOf = (res: Awaited<ReturnType<typeof callback>>) => res.cookies.find((c) => c.name === 'dg_session')

describe('upstream sign-in goes through establishSession', () => {
  it('signs in through establishSession: a new session replaces the fixed one, MFA and how are recorded, audited as session.signed_in', async () => {
    const fixed = await service.sessions.start(clock.nowSeconds())
    const res = await callback(fixed.cookieValue)
    expect(res.statusCode).toBe(303)
    expect(res.headers.location).toBe('/device?user_code=BCDFGHJK')
    expect(establish).toHaveBeenCalledTimes(1)
    const [user, , options] = establish.mock.calls[0]!
    expect(user).toMatchObject({ username: dana.username })
    expect(options).toMatchObject({ replacing: { record: { idHash: fixed.session.record.idHash } }, mfa: true, ip: IP })
    const cookieSet = sessionCookieOf(res)!
    expect(cookieSet).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax', path: '/' })
    expect(cookieSet.value).not.toBe(fixed.cookieValue)
    // The fixed session is worth nothing; the new one is signed in with the provider's MFA.
    expect(await service.sessions.load(fixed.cookieValue, clock.nowSeconds())).toBeUndefined()
    const now = clock.nowSeconds()
    const loaded = await service.sessions.load(cookieSet.value, now)
    expect(loaded?.user?.username).toBe(dana.username)
    expect(loaded?.record.mfaAt).toBe(loaded?.record.authTime)
    expect(events.filter((e) => e.type === 'session.signed_in').at(-1)).toMatchObject({
      actor: dana.username,
      subject: dana.username,
      ip: IP,
      details: { via: 'upstream', provider: 'corp', mfa: true, stepUp: false, amr: ['pwd', 'mfa'] },
    })
  })

  it('an upstream step-up keeps the review claims of the signed-in browser (moved by establishSession)', async () => {
    const now = clock.nowSeconds()
    const first = await service.establishSession(dana, now, { ip: IP })
    const moved = vi.spyOn(store, 'moveDeviceGrantReviewClaims')
    next = signedIn(true)
    const res = await callback(first.cookieValue)
    expect(res.statusCode).toBe(303)
    const after = await service.sessions.load(sessionCookieOf(res)!.value, now)
    expect(moved).toHaveBeenCalledWith(reviewClaimId(first.session.record.idHash), reviewClaimId(after!.record.idHash), now)
    expect(await store.findWebSession(sha256Hex(first.cookieValue), now)).toBeUndefined()
    moved.mockRestore()
  })
})
