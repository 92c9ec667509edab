/**
 * Access reviews on Kysely: `review_campaigns`, `review_rounds`, `review_items` (see
 * ../access-reviews.ts). The once-only operations are single conditional writes.
 */
import type { Kysely } from 'kysely'
import type { AccessReviewStore, ReviewDecision, ReviewItemRecord, ReviewRoundRecord, StoredCampaignRecord } from '../access-reviews.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase, ReviewItemsTable, ReviewRoundsTable } from './tables.js'

const n = (v: number | string | null): number | null => (v === null ? null : Number(v))

function toRound(r: ReviewRoundsTable): ReviewRoundRecord {
  return {
    id: r.id,
    campaignId: r.campaign_id,
    number: Number(r.number),
    openedAt: Number(r.opened_at),
    deadlineAt: Number(r.deadline_at),
    closedAt: n(r.closed_at),
    closeReason: r.close_reason as ReviewRoundRecord['closeReason'],
    remindedAt: n(r.reminded_at),
  }
}

function toItem(r: ReviewItemsTable): ReviewItemRecord {
  return {
    id: r.id,
    roundId: r.round_id,
    grantId: r.grant_id,
    clientId: r.client_id,
    subject: r.subject,
    reviewers: JSON.parse(r.reviewers_json) as string[],
    defaultAction: r.default_action as ReviewDecision,
    factsJson: r.facts_json,
    decision: r.decision as ReviewDecision | null,
    decidedBy: r.decided_by,
    decidedAt: n(r.decided_at),
    decidedVia: r.decided_via as ReviewItemRecord['decidedVia'],
    justification: r.justification,
    revokedAt: n(r.revoked_at),
  }
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string }
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || /UNIQUE constraint failed/.test(e?.message ?? '')
}

export class KyselyAccessReviewStore implements AccessReviewStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
  }

  insertReviewCampaign(c: StoredCampaignRecord): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const r = await this.#db
        .insertInto('review_campaigns')
        .values({ id: c.id, definition_json: c.definitionJson, created_at: c.createdAt, created_by: c.createdBy })
        .onConflict((oc) => oc.column('id').doNothing())
        .executeTakeFirst()
      return Number(r.numInsertedOrUpdatedRows ?? 0) > 0
    })
  }

  listReviewCampaigns(): Promise<StoredCampaignRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db.selectFrom('review_campaigns').selectAll().orderBy('created_at').orderBy('id').execute()
      return rows.map((r) => ({ id: r.id, definitionJson: r.definition_json, createdAt: Number(r.created_at), createdBy: r.created_by }))
    })
  }

  openReviewRound(round: ReviewRoundRecord, items: readonly ReviewItemRecord[]): Promise<boolean> {
    return this.#ctx.guard(async () => {
      try {
        await this.#db.transaction().execute(async (tx) => {
          await tx
            .insertInto('review_rounds')
            .values({
              id: round.id,
              campaign_id: round.campaignId,
              number: round.number,
              opened_at: round.openedAt,
              deadline_at: round.deadlineAt,
              closed_at: round.closedAt,
              close_reason: round.closeReason,
              reminded_at: null,
            })
            .execute()
          for (let i = 0; i < items.length; i += 200) {
            await tx
              .insertInto('review_items')
              .values(
                items.slice(i, i + 200).map((it) => ({
                  id: it.id,
                  round_id: it.roundId,
                  grant_id: it.grantId,
                  client_id: it.clientId,
                  subject: it.subject,
                  reviewers_json: JSON.stringify(it.reviewers),
                  default_action: it.defaultAction,
                  facts_json: it.factsJson,
                  decision: null,
                  decided_by: null,
                  decided_at: null,
                  decided_via: null,
                  justification: null,
                  revoked_at: null,
                })),
              )
              .execute()
          }
        })
        return true
      } catch (err) {
        if (isUniqueViolation(err)) return false
        throw err
      }
    })
  }

  findReviewRound(id: string): Promise<ReviewRoundRecord | undefined> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.selectFrom('review_rounds').selectAll().where('id', '=', id).executeTakeFirst()
      return r && toRound(r)
    })
  }

  listReviewRounds(campaignId?: string): Promise<ReviewRoundRecord[]> {
    return this.#ctx.guard(async () => {
      let q = this.#db.selectFrom('review_rounds').selectAll()
      if (campaignId !== undefined) q = q.where('campaign_id', '=', campaignId)
      return (await q.orderBy('opened_at', 'desc').orderBy('number', 'desc').execute()).map(toRound)
    })
  }

  listOpenReviewRounds(): Promise<ReviewRoundRecord[]> {
    return this.#ctx.guard(async () => {
      return (await this.#db.selectFrom('review_rounds').selectAll().where('closed_at', 'is', null).orderBy('deadline_at').execute()).map(toRound)
    })
  }

  lastClosedReviewRound(): Promise<ReviewRoundRecord | undefined> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.selectFrom('review_rounds').selectAll().where('closed_at', 'is not', null).orderBy('closed_at', 'desc').limit(1).executeTakeFirst()
      return r && toRound(r)
    })
  }

  findReviewItem(id: string): Promise<ReviewItemRecord | undefined> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.selectFrom('review_items').selectAll().where('id', '=', id).executeTakeFirst()
      return r && toItem(r)
    })
  }

  listReviewItems(roundId: string): Promise<ReviewItemRecord[]> {
    return this.#ctx.guard(async () => {
      return (await this.#db.selectFrom('review_items').selectAll().where('round_id', '=', roundId).orderBy('client_id').orderBy('subject').orderBy('id').execute()).map(toItem)
    })
  }

  listUndecidedReviewItems(): Promise<ReviewItemRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .selectFrom('review_items')
        .innerJoin('review_rounds', 'review_rounds.id', 'review_items.round_id')
        .selectAll('review_items')
        .where('review_items.decision', 'is', null)
        .where('review_rounds.closed_at', 'is', null)
        .orderBy('review_rounds.deadline_at')
        .orderBy('review_items.id')
        .execute()
      return rows.map(toItem)
    })
  }

  decideReviewItem(id: string, d: { decision: ReviewDecision; decidedBy: string; decidedAt: number; justification: string }): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const r = await this.#db
        .updateTable('review_items')
        .set({ decision: d.decision, decided_by: d.decidedBy, decided_at: d.decidedAt, decided_via: 'reviewer', justification: d.justification })
        .where('id', '=', id)
        .where('decision', 'is', null)
        .where((eb) => eb.exists(eb.selectFrom('review_rounds').select('review_rounds.id').whereRef('review_rounds.id', '=', 'review_items.round_id').where('review_rounds.closed_at', 'is', null)))
        .executeTakeFirst()
      return Number(r.numUpdatedRows) > 0
    })
  }

  applyReviewDefaults(roundId: string, now: number): Promise<ReviewItemRecord[]> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .updateTable('review_items')
        .set((eb) => ({
          decision: eb.ref('default_action'),
          decided_by: 'system:deadline',
          decided_at: now,
          decided_via: 'deadline',
          justification: 'undecided at the deadline: the campaign’s default action',
        }))
        .where('round_id', '=', roundId)
        .where('decision', 'is', null)
        .returningAll()
        .execute()
      return rows.map(toItem)
    })
  }

  markReviewItemRevoked(id: string, now: number): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db.updateTable('review_items').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null).execute()
    })
  }

  closeReviewRound(id: string, now: number, reason: 'completed' | 'deadline'): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.updateTable('review_rounds').set({ closed_at: now, close_reason: reason }).where('id', '=', id).where('closed_at', 'is', null).executeTakeFirst()
      return Number(r.numUpdatedRows) > 0
    })
  }

  markReviewRoundReminded(id: string, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.updateTable('review_rounds').set({ reminded_at: now }).where('id', '=', id).where('reminded_at', 'is', null).executeTakeFirst()
      return Number(r.numUpdatedRows) > 0
    })
  }
}
