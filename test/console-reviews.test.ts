/**
 * The access-review reviewer inbox in the console (issue 15 §1 "Deciding … in the console"):
 * over HTTP with a browser-like session (cookie, CSRF token, Origin), against a real SQLite store
 * and the real review service. Campaign: reviewers = group `staff` (alice, bob), so bob reviews
 * alice's grant and alice reviews bob's; vera (viewer role, not in the group) reviews nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startConsoleServer, type ConsoleTestServer } from './support/console.js'

let t: ConsoleTestServer
let aliceGrant: string
let bobGrant: string
let aliceItem: string
let bobItem: string
beforeAll(async () => {
  t = await startConsoleServer()
  aliceGrant = await t.seedGrant({ user: 'alice', requestIp: '198.51.100.7' })
  bobGrant = await t.seedGrant({ user: 'bob', requestIp: '192.0.2.44' })
  await t.server.reviews.createCampaign({ id: 'staff-cli', name: 'Staff CLI review', reviewers: 'group', reviewer_group: 'staff', scope: { clients: ['cli'] }, duration_days: 14 }, 'test')
  const tick = await t.server.reviews.tick()
  expect(tick.opened).toEqual(['staff-cli.1'])
  aliceItem = (await t.server.reviews.inbox('bob')).find((i) => i.grantId === aliceGrant)!.id
  bobItem = (await t.server.reviews.inbox('alice')).find((i) => i.grantId === bobGrant)!.id
})
afterAll(async () => {
  await t?.close()
})

async function audit(type: string) {
  await t.server.governance.audit?.flush()
  return (await t.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === type)
}

describe('console reviewer inbox (issue 15 §1)', () => {
  it('lists a reviewer’s open items with person, app, scopes, age, last use, policy decision — never their own — for a person without a console role', async () => {
    const bob = await t.signIn('bob')
    const res = await bob.get('/console/reviews')
    expect(res.status).toBe(200)
    expect(res.body).toContain('<a href="/console/reviews" aria-current="page">Access reviews</a>')
    expect(res.body).toContain('alice on Test CLI')
    expect(res.body).toContain(`action="/console/reviews/items/${aliceItem}/decision"`)
    expect(res.body).not.toContain(`/console/reviews/items/${bobItem}/decision`)
    expect(res.body).toContain('<code>read offline_access</code>')
    expect(res.body).toContain('requested from <code>198.51.100.7</code>')
    expect(res.body).toMatch(/<dt>Policy decision<\/dt><dd><span class="badge allow">allow<\/span>/)
    expect(res.body).toMatch(/<dt>Last use<\/dt><dd>(never|\d+ (min|h|d) ago from <code>)/)
    expect(res.body).toContain('name="justification" required')
    const vera = await t.signIn('vera')
    expect((await vera.get('/console/reviews')).body).toContain('Nothing to review.')
  })

  it('answers a decision without a justification with a 400 page and changes nothing', async () => {
    const bob = await t.signIn('bob')
    const res = await bob.post(`/console/reviews/items/${aliceItem}/decision`, { decision: 'revoke', justification: '   ' })
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toContain('text/html')
    expect(res.body).toContain('Not recorded: &quot;justification&quot; is required')
    expect((await t.server.store.findGrant(aliceGrant))!.revokedAt).toBeNull()
  })

  it('refuses a non-reviewer’s and a reviewer’s own hand-made POST with 403, audited, and a POST without the CSRF token', async () => {
    const vera = await t.signIn('vera')
    const notReviewer = await vera.post(`/console/reviews/items/${aliceItem}/decision`, { decision: 'keep', justification: 'looks fine' })
    expect(notReviewer.status).toBe(403)
    expect(notReviewer.body).toContain('You are not a reviewer of this item')
    const alice = await t.signIn('alice')
    const own = await alice.post(`/console/reviews/items/${aliceItem}/decision`, { decision: 'keep', justification: 'I still need it' })
    expect(own.status).toBe(403)
    expect(own.body).toContain('You cannot review your own grant')
    expect((await alice.post('/console/reviews/items/nope/decision', { decision: 'keep', justification: 'x' })).status).toBe(404)
    const bob = await t.signIn('bob')
    expect((await bob.post(`/console/reviews/items/${aliceItem}/decision`, { decision: 'revoke', justification: 'x', csrf_token: 'forged' })).status).toBe(403)
    const denied = await audit('console.access_denied')
    expect(denied.map((e) => e.actor).sort()).toEqual(['alice', 'vera'])
    expect((await t.server.store.findGrant(aliceGrant))!.revokedAt).toBeNull()
  })

  it('revokes the grant on a revoke decision, audits it with the reviewer and the justification, and takes it off the inbox', async () => {
    const bob = await t.signIn('bob')
    const res = await bob.post(`/console/reviews/items/${aliceItem}/decision`, { decision: 'revoke', justification: 'alice left the project' })
    expect(res.status).toBe(200)
    expect(res.body).toContain('Revoked: the app is signed out.')
    expect(res.body).not.toContain(`/console/reviews/items/${aliceItem}/decision`)
    expect((await t.server.store.findGrant(aliceGrant))!.revokedAt).toBe(t.clock.nowSeconds())
    const decided = await audit('review.item_decided')
    expect(decided).toHaveLength(1)
    expect(decided[0]).toMatchObject({ actor: 'bob', subject: 'alice', grantId: aliceGrant })
    expect(JSON.stringify(decided[0])).toContain('alice left the project')
    expect((await audit('token.revoked')).some((e) => e.grantId === aliceGrant)).toBe(true)
    expect((await bob.post(`/console/reviews/items/${aliceItem}/decision`, { decision: 'keep', justification: 'again' })).status).toBe(409)
  })
})
