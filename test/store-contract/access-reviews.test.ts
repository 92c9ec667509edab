/**
 * Storage contract: access-review campaigns, rounds and items (src/storage/access-reviews.ts), on
 * every adapter: the once-only writes (open a round, decide an item, apply defaults, close) hold.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import type { ReviewItemRecord, ReviewRoundRecord, Store } from '../../src/storage/store.js'
import { describeStoreContract } from '../support/store-contract.js'
import { id, NOW } from '../support/store-fixtures.js'

describeStoreContract('access reviews', (contract) => {
  let store: Store
  beforeAll(() => {
    store = contract.store
  })

  const round = (campaignId: string, number = 1): ReviewRoundRecord => ({
    id: `${campaignId}.${number}`,
    campaignId,
    number,
    openedAt: NOW,
    deadlineAt: NOW + 100,
    closedAt: null,
    closeReason: null,
    remindedAt: null,
  })
  const item = (roundId: string, defaultAction: 'keep' | 'revoke'): ReviewItemRecord => ({
    id: id('item'),
    roundId,
    grantId: id('grant'),
    clientId: 'cli',
    subject: 'alice',
    reviewers: ['bob'],
    defaultAction,
    factsJson: '{"scope":"read"}',
    decision: null,
    decidedBy: null,
    decidedAt: null,
    decidedVia: null,
    justification: null,
    revokedAt: null,
  })

  describe('campaigns, rounds and items', () => {
    it('stores a campaign once', async () => {
      const c = { id: id('camp'), definitionJson: '{"id":"x","reviewers":"owners"}', createdAt: NOW, createdBy: 'admin:root' }
      expect(await store.insertReviewCampaign(c)).toBe(true)
      expect(await store.insertReviewCampaign(c)).toBe(false)
      expect((await store.listReviewCampaigns()).filter((x) => x.id === c.id)).toEqual([c])
    })

    it('opens a round number once, with its items', async () => {
      const campaign = id('camp')
      const r = round(campaign)
      const items = [item(r.id, 'keep'), item(r.id, 'revoke')]
      expect(await store.openReviewRound(r, items)).toBe(true)
      expect(await store.openReviewRound({ ...r, id: `${r.id}-again` }, [])).toBe(false)
      expect(await store.findReviewRound(r.id)).toEqual(r)
      expect((await store.listReviewItems(r.id)).map((i) => i.id).sort()).toEqual(items.map((i) => i.id).sort())
      expect((await store.listOpenReviewRounds()).some((x) => x.id === r.id)).toBe(true)
    })

    it('decides an item once, applies defaults once, closes once', async () => {
      const r = round(id('camp'))
      const [a, b, c] = [item(r.id, 'keep'), item(r.id, 'revoke'), item(r.id, 'keep')]
      await store.openReviewRound(r, [a!, b!, c!])
      expect(await store.decideReviewItem(a!.id, { decision: 'revoke', decidedBy: 'bob', decidedAt: NOW + 1, justification: 'gone' })).toBe(true)
      expect(await store.decideReviewItem(a!.id, { decision: 'keep', decidedBy: 'bob', decidedAt: NOW + 2, justification: 'again' })).toBe(false)
      const defaulted = await store.applyReviewDefaults(r.id, NOW + 100)
      expect(defaulted.map((i) => [i.id, i.decision, i.decidedVia]).sort()).toEqual(
        [
          [b!.id, 'revoke', 'deadline'],
          [c!.id, 'keep', 'deadline'],
        ].sort(),
      )
      expect(await store.applyReviewDefaults(r.id, NOW + 101)).toEqual([])
      await store.markReviewItemRevoked(b!.id, NOW + 100)
      expect((await store.findReviewItem(b!.id))?.revokedAt).toBe(NOW + 100)
      expect(await store.markReviewRoundReminded(r.id, NOW + 50)).toBe(true)
      expect(await store.markReviewRoundReminded(r.id, NOW + 51)).toBe(false)
      expect(await store.closeReviewRound(r.id, NOW + 100, 'deadline')).toBe(true)
      expect(await store.closeReviewRound(r.id, NOW + 100, 'deadline')).toBe(false)
      expect((await store.listUndecidedReviewItems()).some((i) => i.roundId === r.id)).toBe(false)
      expect(await store.lastClosedReviewRound()).toMatchObject({ closedAt: NOW + 100 })
      // A closed round takes no decision.
      const r2 = round(id('camp'))
      const d = item(r2.id, 'keep')
      await store.openReviewRound(r2, [d])
      await store.closeReviewRound(r2.id, NOW + 5, 'deadline')
      expect(await store.decideReviewItem(d.id, { decision: 'keep', decidedBy: 'bob', decidedAt: NOW + 6, justification: 'late' })).toBe(false)
    })
  })
})
