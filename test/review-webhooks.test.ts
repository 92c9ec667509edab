/**
 * Access-review events through the signed webhooks (issue 15 §1 "Reminders go out through the
 * webhooks of the signals issue"): with a frozen clock, a round opening, its reminder, and the
 * deadline closing it (revoking the undecided item by default) each reach a subscribed
 * endpoint once, signed the Standard Webhooks way (verified here with node:crypto), with the
 * reviewer, campaign, item count and deadline — and no token value.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FIXTURE, fixtureConfigFile, startTestServer, TestClock, type TestServer } from './support/server.js'
import { deviceLogin, signalsConfig } from './support/signals.js'

const DAY = 86_400
const SECRET = `whsec_${randomBytes(32).toString('base64')}`
const clock = new TestClock()
let t: TestServer
let hook: Server
const received: { headers: IncomingHttpHeaders; raw: string }[] = []
let tokens: { access_token: string; refresh_token: string }

/** Standard Webhooks verification, written out: v1 HMAC-SHA256 of `id.timestamp.body` with the base64 key. */
function verify(headers: IncomingHttpHeaders, raw: string): { type: string; timestamp: string; data: any } {
  const id = String(headers['webhook-id'])
  const timestamp = String(headers['webhook-timestamp'])
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64')
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${raw}`).digest()
  const ok = String(headers['webhook-signature'])
    .split(' ')
    .some((sig) => sig.startsWith('v1,') && Buffer.from(sig.slice(3), 'base64').length === expected.length && timingSafeEqual(Buffer.from(sig.slice(3), 'base64'), expected))
  if (!ok) throw new Error('bad webhook signature')
  return JSON.parse(raw)
}

const ofType = (type: string) => received.map((r) => ({ ...r, body: verify(r.headers, r.raw) })).filter((r) => r.body.type === type)

async function deliveredOf(type: string, n: number) {
  const end = Date.now() + 15_000
  for (;;) {
    // The audit record (and its outbox row) is written in a batch; the dispatcher polls every 50 ms.
    await t.server.governance.audit?.flush()
    const got = ofType(type)
    if (got.length >= n) return got
    if (Date.now() > end) throw new Error(`waited for ${n} ${type} webhook(s), got ${got.length}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

beforeAll(async () => {
  clock.freeze()
  hook = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push({ headers: req.headers, raw: Buffer.concat(chunks).toString('utf8') })
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()))
  process.env.DG_TEST_REVIEW_HOOK_SECRET = SECRET
  const events = ['review.round_opened', 'review.reminder_due', 'review.item_decided', 'review.round_closed']
  const base = await signalsConfig({ webhooks: [{ id: 'reviews', url: `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`, secret_env: 'DG_TEST_REVIEW_HOOK_SECRET', events }] })
  t = await startTestServer({
    clock,
    config: await fixtureConfigFile({
      ...base,
      clients: base.clients.map((c) => (c.client_id === 'cli' ? { ...c, owners: ['bob'], refresh_token_ttl_seconds: 200 * DAY } : c)),
      users: [...base.users, { username: 'bob', display_name: 'Bob', email: 'bob@example.com', password_hash: await hash(FIXTURE.password) }],
      reviews: { campaigns: [{ id: 'cli-review', name: 'CLI review', reviewers: 'owners', scope: { clients: ['cli'] }, duration_days: 14, default_action: 'revoke' }] },
    }),
  })
  tokens = await deviceLogin(t.url)
})
afterAll(async () => {
  await t?.close()
  await new Promise((r) => hook?.close(r))
  delete process.env.DG_TEST_REVIEW_HOOK_SECRET
})

describe('access-review events as signed webhooks (issue 15 §1, Standard Webhooks)', () => {
  let openedAt = 0

  it('sends review.round_opened with the campaign, deadline, item count and each reviewer', async () => {
    openedAt = clock.nowSeconds()
    expect((await t.server.reviews.tick()).opened).toEqual(['cli-review.1'])
    const [opened] = await deliveredOf('review.round_opened', 1)
    expect(opened!.body.data).toMatchObject({
      campaignId: 'cli-review',
      roundId: 'cli-review.1',
      number: 1,
      items: 1,
      deadlineAt: openedAt + 14 * DAY,
      deadline: new Date((openedAt + 14 * DAY) * 1000).toISOString(),
      reviewers: [{ reviewer: 'bob', email: 'bob@example.com', items: 1 }],
    })
  })

  it('delivers the reminder due a day before the deadline once, signed, with no token value', async () => {
    clock.advance(13 * DAY)
    expect((await t.server.reviews.tick()).reminded).toEqual(['cli-review.1'])
    expect((await t.server.reviews.tick()).reminded).toEqual([])
    const [reminder] = await deliveredOf('review.reminder_due', 1)
    expect(reminder!.headers['content-type']).toBe('application/json')
    expect(Number(reminder!.headers['webhook-timestamp'])).toBe(clock.nowSeconds())
    expect(reminder!.headers['webhook-id']).toMatch(/^msg_evt_\d+$/)
    expect(reminder!.body).toMatchObject({ type: 'review.reminder_due', timestamp: expect.any(String) })
    expect(reminder!.body.data).toEqual({
      id: expect.stringMatching(/^evt_\d+$/),
      campaignId: 'cli-review',
      roundId: 'cli-review.1',
      deadlineAt: openedAt + 14 * DAY,
      deadline: new Date((openedAt + 14 * DAY) * 1000).toISOString(),
      items: 1,
      reviewers: [{ reviewer: 'bob', email: 'bob@example.com', items: 1 }],
    })
    for (const r of received) {
      expect(r.raw).not.toContain(tokens.access_token)
      expect(r.raw).not.toContain(tokens.refresh_token)
    }
    // Later dispatcher passes (every 50 ms) send nothing again.
    await new Promise((r) => setTimeout(r, 500))
    expect(ofType('review.reminder_due')).toHaveLength(1)
  })

  it('sends the deadline revocation of the undecided item (default action revoke) and the round closing', async () => {
    clock.advance(DAY)
    const tick = await t.server.reviews.tick()
    expect(tick).toMatchObject({ closed: ['cli-review.1'], defaulted: 1, revoked: 1 })
    const [decided] = await deliveredOf('review.item_decided', 1)
    expect(decided!.body.data).toMatchObject({ campaignId: 'cli-review', roundId: 'cli-review.1', decision: 'revoke', via: 'deadline', clientId: 'cli', subject: 'alice', deadlineAt: openedAt + 14 * DAY })
    const [closed] = await deliveredOf('review.round_closed', 1)
    expect(closed!.body.data).toMatchObject({ campaignId: 'cli-review', roundId: 'cli-review.1', reason: 'deadline', items: 1, revoked: 1, deadlineAt: openedAt + 14 * DAY })
    expect(new Set(received.map((r) => r.headers['webhook-id'])).size).toBe(received.length)
  })
})
