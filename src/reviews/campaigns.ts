/**
 * Access reviews of device-issued grants: campaigns, their rounds, the items a
 * reviewer keeps or revokes with a justification, the deadline that applies the default action to
 * undecided items exactly once, and recurring campaigns that open their next round.
 *
 * - Which grants: live families minted by the device flow, narrowed by the campaign scope
 *   (client, risk tier, older than N days, dormant for N days, people in a group).
 * - Who reviews: the client's `owners`, the person's `manager`, or the members of a group —
 *   never the person whose grant it is (a reviewer never reviews their own grants).
 * - Revocations go through the central revocation service (audited as `token.revoked` with the
 *   item in the reason; that service also emits CAEP `session-revoked`) and are linked from the
 *   item (`revokedAt`).
 * - Events: `review.round_opened`, `review.item_decided`, `review.reminder_due` (once per round,
 *   a day before the deadline) and `review.round_closed`. Each is also an outbox event (trigger
 *   of migration `015_signals_review_events`), delivered to the webhooks subscribed to it
 *   (`signals/webhooks.ts`): reminders reach reviewers through the webhooks.
 *
 * The console's reviewer inbox calls {@link ReviewService.inbox} and {@link ReviewService.decide}.
 */
import { stringify } from 'csv-stringify/sync'
import { campaignSchema, resolveCampaign, type CampaignDefinition, type ReviewsConfig } from '../config/reviews.js'
import type { EventSink } from '../core/events.js'
import type { ClientDirectory, User } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import type { RevocationService } from '../governance/revocation.js'
import { parseStoredDecision } from '../policy/service.js'
import type { GrantSummary, Store } from '../storage/store.js'
import { recordId } from '../system.js'
import type { ReviewEvidenceSource, ReviewRoundSummary } from './evidence.js'
import type { AccessReviewStore, ReviewDecision, ReviewItemRecord, ReviewRoundRecord } from '../storage/access-reviews.js'

/** Stable codes of {@link ReviewError}. */
export type ReviewErrorCode = 'ERR_INVALID' | 'ERR_NOT_FOUND' | 'ERR_CAMPAIGN_EXISTS' | 'ERR_NOT_REVIEWER' | 'ERR_OWN_GRANT' | 'ERR_ALREADY_DECIDED'

/** A request the reviews service refuses; `message` is fit to show. */
export class ReviewError extends Error {
  override readonly name = 'ReviewError'
  constructor(
    readonly code: ReviewErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/** The HTTP status of each {@link ReviewErrorCode}, for the admin API and the console alike. */
export const REVIEW_ERROR_STATUS: Readonly<Record<ReviewErrorCode, number>> = Object.freeze({
  ERR_INVALID: 400,
  ERR_NOT_FOUND: 404,
  ERR_CAMPAIGN_EXISTS: 409,
  ERR_NOT_REVIEWER: 403,
  ERR_OWN_GRANT: 403,
  ERR_ALREADY_DECIDED: 409,
})

/** What a reviewer sees about one grant (stored with the item when the round opens). */
export interface ItemFacts {
  person: string | null
  app: { id: string; name: string; tier: string }
  scope: string
  issuedAt: number
  ageDays: number
  lastUsedAt: number | null
  lastUsedIp: string | null
  requestIp: string | null
  approvedAt: number | null
  /** The approval's policy decision and its reason codes, when one was recorded. */
  policyDecision: { decision: string; reasons: string[] } | null
}

/** An item with its campaign and round, as the inbox and exports show it. */
export type ReviewItemView = Omit<ReviewItemRecord, 'factsJson'> & { campaignId: string; deadlineAt: number; facts: ItemFacts }

/** What {@link ReviewService.tick} did. */
export interface TickResult {
  opened: string[]
  closed: string[]
  /** Items given their default action at a deadline by this call. */
  defaulted: number
  /** Grants revoked by this call (deadline defaults). */
  revoked: number
  reminded: string[]
}

export interface ReviewServiceDeps {
  store: AccessReviewStore
  grants: Pick<Store, 'listGrantSummaries' | 'findDeviceGrantPolicy'>
  clients: ClientDirectory
  users: { get(username: string): User | undefined }
  /** Usernames in a group (configuration or SCIM). */
  groupMembers(group: string): string[]
  revocation: Pick<RevocationService, 'revoke'>
  events: EventSink
  clock: Clock
  random: Random
  config: ReviewsConfig
}

const DAY = 86_400
/** Longest justification kept, in characters. */
export const MAX_JUSTIFICATION = 1000

export class ReviewService implements ReviewEvidenceSource {
  readonly #d: ReviewServiceDeps

  constructor(deps: ReviewServiceDeps) {
    this.#d = deps
  }

  /** Every campaign: configuration first, then those created through the admin API. */
  async campaigns(): Promise<CampaignDefinition[]> {
    const stored = await this.#d.store.listReviewCampaigns()
    return [...this.#d.config.campaigns, ...stored.map((c) => resolveCampaign(campaignSchema.parse(JSON.parse(c.definitionJson)), 'api'))]
  }

  async countCampaigns(): Promise<number> {
    return (await this.campaigns()).length
  }

  /**
   * Creates a campaign from an admin API body (the `reviews.campaigns[]` shape, snake_case).
   * @throws {ReviewError} `ERR_INVALID` naming each problem, `ERR_CAMPAIGN_EXISTS`.
   */
  async createCampaign(input: unknown, actor: string): Promise<CampaignDefinition> {
    const parsed = campaignSchema.safeParse(input)
    if (!parsed.success) throw new ReviewError('ERR_INVALID', parsed.error.issues.map((i) => `${i.path.join('.') || 'campaign'}: ${i.message}`).join('; '))
    const def = resolveCampaign(parsed.data, 'api')
    if (this.#d.config.campaigns.some((c) => c.id === def.id)) throw new ReviewError('ERR_CAMPAIGN_EXISTS', `campaign "${def.id}" exists in the configuration`)
    const now = this.#d.clock.nowSeconds()
    if (!(await this.#d.store.insertReviewCampaign({ id: def.id, definitionJson: JSON.stringify(parsed.data), createdAt: now, createdBy: actor })))
      throw new ReviewError('ERR_CAMPAIGN_EXISTS', `campaign "${def.id}" exists`)
    await this.#d.events.record({ type: 'review.campaign_created', actor, details: { campaignId: def.id, reviewers: def.reviewers, everySeconds: def.everySeconds ?? null } })
    return def
  }

  /**
   * The scheduler, run periodically (`reviews.check_every_seconds`) and safe on several instances:
   * closes rounds past their deadline (default actions applied exactly once), closes rounds whose
   * items are all decided, emits the reminder a day before a deadline, and opens due rounds
   * (the first at `starts_at` or now; recurring ones `every_days` after the previous opened).
   */
  async tick(): Promise<TickResult> {
    const now = this.#d.clock.nowSeconds()
    const result: TickResult = { opened: [], closed: [], defaulted: 0, revoked: 0, reminded: [] }
    for (const round of await this.#d.store.listOpenReviewRounds()) {
      if (now >= round.deadlineAt) {
        const r = await this.#closeAtDeadline(round, now)
        result.defaulted += r.defaulted
        result.revoked += r.revoked
        if (r.closed) result.closed.push(round.id)
        continue
      }
      const items = await this.#d.store.listReviewItems(round.id)
      if (items.length > 0 && items.every((i) => i.decision !== null)) {
        if (await this.#close(round, now, 'completed', items)) result.closed.push(round.id)
        continue
      }
      const remindAt = round.deadlineAt - Math.min(DAY, Math.floor((round.deadlineAt - round.openedAt) / 4))
      if (now >= remindAt && (await this.#d.store.markReviewRoundReminded(round.id, now))) {
        const open = items.filter((i) => i.decision === null)
        await this.#d.events.record({
          type: 'review.reminder_due',
          actor: 'system',
          details: { campaignId: round.campaignId, roundId: round.id, deadlineAt: round.deadlineAt, undecided: open.length, reviewers: [...new Set(open.flatMap((i) => i.reviewers))], undecidedByReviewer: countByReviewer(open) },
        })
        result.reminded.push(round.id)
      }
    }
    for (const def of await this.campaigns()) {
      const [last] = await this.#d.store.listReviewRounds(def.id)
      let openedAt: number | undefined
      if (last === undefined) openedAt = def.startsAt === undefined ? now : now >= def.startsAt ? def.startsAt : undefined
      else if (def.everySeconds !== undefined && last.closedAt !== null && now >= last.openedAt + def.everySeconds) openedAt = last.openedAt + def.everySeconds
      if (openedAt === undefined) continue
      const id = await this.#openRound(def, (last?.number ?? 0) + 1, openedAt, now)
      if (id !== undefined) result.opened.push(id)
    }
    return result
  }

  async #openRound(def: CampaignDefinition, number: number, openedAt: number, now: number): Promise<string | undefined> {
    const roundId = `${def.id}.${number}`
    const grants = await this.#selectGrants(def, now)
    const items: ReviewItemRecord[] = []
    for (const g of grants) {
      const client = this.#d.clients.get(g.clientId)
      const tier = client?.riskTier ?? 'standard'
      const record = g.deviceGrantId ? await this.#d.grants.findDeviceGrantPolicy(g.deviceGrantId) : undefined
      const decision = parseStoredDecision(record?.explanationJson)
      const facts: ItemFacts = {
        person: g.subject,
        app: { id: g.clientId, name: client?.name ?? g.clientId, tier },
        scope: g.scope,
        issuedAt: g.createdAt,
        ageDays: Math.floor((now - g.createdAt) / DAY),
        lastUsedAt: g.lastUsedAt,
        lastUsedIp: g.lastUsedIp,
        requestIp: g.requestIp,
        approvedAt: g.approvedAt,
        policyDecision: decision ? { decision: decision.decision, reasons: decision.reasons.map((r) => r.code) } : record?.decision ? { decision: record.decision, reasons: [] } : null,
      }
      items.push({
        id: `${roundId}.${recordId(this.#d.random)}`,
        roundId,
        grantId: g.id,
        clientId: g.clientId,
        subject: g.subject,
        reviewers: this.#reviewersOf(def, g),
        defaultAction: def.defaultAction ?? (tier === 'admin' ? 'revoke' : 'keep'),
        factsJson: JSON.stringify(facts),
        decision: null,
        decidedBy: null,
        decidedAt: null,
        decidedVia: null,
        justification: null,
        revokedAt: null,
      })
    }
    const round: ReviewRoundRecord = { id: roundId, campaignId: def.id, number, openedAt, deadlineAt: openedAt + def.durationSeconds, closedAt: null, closeReason: null, remindedAt: null }
    if (!(await this.#d.store.openReviewRound(round, items))) return undefined
    await this.#d.events.record({
      type: 'review.round_opened',
      actor: 'system',
      details: { campaignId: def.id, roundId, number, deadlineAt: round.deadlineAt, items: items.length, reviewers: [...new Set(items.flatMap((i) => i.reviewers))], itemsByReviewer: countByReviewer(items) },
    })
    return roundId
  }

  async #selectGrants(def: CampaignDefinition, now: number): Promise<GrantSummary[]> {
    const s = def.scope
    const out: GrantSummary[] = []
    const clientIds = s.clients ?? [undefined]
    for (const clientId of clientIds) {
      let after: { createdAt: number; id: string } | undefined
      for (;;) {
        const page = await this.#d.grants.listGrantSummaries(
          {
            revoked: false,
            unexpiredAt: now,
            ...(clientId !== undefined ? { clientId } : {}),
            ...(s.olderThanSeconds !== undefined ? { createdBefore: now - s.olderThanSeconds } : {}),
            ...(s.dormantSeconds !== undefined ? { lastUsedBefore: now - s.dormantSeconds } : {}),
          },
          { limit: 1000, ...(after ? { after } : {}) },
        )
        for (const g of page) {
          if (g.deviceGrantId === null) continue
          if (s.tiers && !s.tiers.includes(this.#d.clients.get(g.clientId)?.riskTier ?? 'standard')) continue
          if (s.groups) {
            const groups = (g.subject && this.#d.users.get(g.subject)?.groups) || []
            if (!groups.some((x) => s.groups!.includes(x))) continue
          }
          out.push(g)
        }
        if (page.length < 1000) break
        const last = page[page.length - 1]!
        after = { createdAt: last.createdAt, id: last.id }
      }
    }
    return out
  }

  /** Reviewers of one grant; the grant's own person is never one of them. */
  #reviewersOf(def: CampaignDefinition, g: GrantSummary): string[] {
    let names: string[]
    if (def.reviewers === 'owners') names = [...(this.#d.clients.get(g.clientId)?.owners ?? [])]
    else if (def.reviewers === 'manager') {
      const m = g.subject ? this.#d.users.get(g.subject)?.manager : undefined
      names = m ? [m] : []
    } else names = this.#d.groupMembers(def.reviewerGroup ?? '')
    return [...new Set(names)].filter((n) => n !== g.subject).sort()
  }

  /**
   * Records a reviewer's decision on one item; `revoke` revokes the grant at once through the
   * central revocation service.
   * @throws {ReviewError} `ERR_INVALID` (decision or justification), `ERR_NOT_FOUND`,
   *   `ERR_OWN_GRANT` (a reviewer never reviews their own grant), `ERR_NOT_REVIEWER`,
   *   `ERR_ALREADY_DECIDED` (decided before, or the round is closed).
   */
  async decide(itemId: string, input: { reviewer: string; decision: unknown; justification: unknown }, ctx: { actor: string; ip?: string | null } = { actor: input.reviewer }): Promise<ReviewItemView> {
    if (input.decision !== 'keep' && input.decision !== 'revoke') throw new ReviewError('ERR_INVALID', '"decision" must be keep or revoke')
    const justification = typeof input.justification === 'string' ? input.justification.trim() : ''
    if (justification.length === 0 || justification.length > MAX_JUSTIFICATION) throw new ReviewError('ERR_INVALID', `"justification" is required (1–${MAX_JUSTIFICATION} characters)`)
    const item = await this.#d.store.findReviewItem(itemId)
    if (!item) throw new ReviewError('ERR_NOT_FOUND', 'review item not found')
    if (item.subject !== null && item.subject === input.reviewer) throw new ReviewError('ERR_OWN_GRANT', 'a reviewer never reviews their own grants')
    if (!item.reviewers.includes(input.reviewer)) throw new ReviewError('ERR_NOT_REVIEWER', `"${input.reviewer}" is not a reviewer of this item`)
    const now = this.#d.clock.nowSeconds()
    const decision: ReviewDecision = input.decision
    if (!(await this.#d.store.decideReviewItem(itemId, { decision, decidedBy: input.reviewer, decidedAt: now, justification })))
      throw new ReviewError('ERR_ALREADY_DECIDED', 'this item is already decided or its round is closed')
    const round = (await this.#d.store.findReviewRound(item.roundId))!
    if (decision === 'revoke') await this.#revoke(item, round, `${input.reviewer}: ${justification}`, now)
    await this.#d.events.record({
      type: 'review.item_decided',
      actor: ctx.actor === input.reviewer ? input.reviewer : `${ctx.actor} for ${input.reviewer}`,
      clientId: item.clientId,
      subject: item.subject,
      grantId: item.grantId,
      ip: ctx.ip ?? null,
      details: { campaignId: round.campaignId, roundId: round.id, itemId, decision, via: 'reviewer', justification },
    })
    return this.#view((await this.#d.store.findReviewItem(itemId))!, round)
  }

  async #revoke(item: ReviewItemRecord, round: ReviewRoundRecord, why: string, now: number): Promise<number> {
    const r = await this.#d.revocation.revoke(
      { kind: 'grant', grantId: item.grantId },
      { actor: `review:${round.campaignId}`, reason: `access review ${round.id} item ${item.id} (${why})`, listLimit: 0 },
    )
    await this.#d.store.markReviewItemRevoked(item.id, now)
    return r.grants
  }

  async #closeAtDeadline(round: ReviewRoundRecord, now: number): Promise<{ defaulted: number; revoked: number; closed: boolean }> {
    const defaulted = await this.#d.store.applyReviewDefaults(round.id, now)
    let revoked = 0
    for (const item of defaulted) {
      if (item.decision === 'revoke') revoked += await this.#revoke(item, round, 'default action at the deadline', now)
      await this.#d.events.record({
        type: 'review.item_decided',
        actor: 'system',
        clientId: item.clientId,
        subject: item.subject,
        grantId: item.grantId,
        details: { campaignId: round.campaignId, roundId: round.id, itemId: item.id, decision: item.decision, via: 'deadline', deadlineAt: round.deadlineAt },
      })
    }
    const items = await this.#d.store.listReviewItems(round.id)
    // A revocation interrupted before (crash between the decision and the revocation) is finished here.
    for (const item of items) if (item.decision === 'revoke' && item.revokedAt === null) revoked += await this.#revoke(item, round, 'completing an earlier revocation', now)
    const closed = await this.#close(round, now, 'deadline', items)
    return { defaulted: defaulted.length, revoked, closed }
  }

  async #close(round: ReviewRoundRecord, now: number, reason: 'completed' | 'deadline', items: ReviewItemRecord[]): Promise<boolean> {
    if (!(await this.#d.store.closeReviewRound(round.id, now, reason))) return false
    const s = summarize(items)
    await this.#d.events.record({
      type: 'review.round_closed',
      actor: 'system',
      details: { campaignId: round.campaignId, roundId: round.id, reason, deadlineAt: round.deadlineAt, items: s.items, decided: s.decided, kept: s.kept, revoked: s.revoked },
    })
    return true
  }

  #view(item: ReviewItemRecord, round: ReviewRoundRecord): ReviewItemView {
    const { factsJson, ...rest } = item
    return { ...rest, campaignId: round.campaignId, deadlineAt: round.deadlineAt, facts: JSON.parse(factsJson) as ItemFacts }
  }

  /** Undecided items of open rounds that `reviewer` may decide (never their own), soonest deadline first. */
  async inbox(reviewer: string): Promise<ReviewItemView[]> {
    const items = (await this.#d.store.listUndecidedReviewItems()).filter((i) => i.reviewers.includes(reviewer) && i.subject !== reviewer)
    const rounds = new Map<string, ReviewRoundRecord>()
    const out: ReviewItemView[] = []
    for (const i of items) {
      let r = rounds.get(i.roundId)
      if (!r) rounds.set(i.roundId, (r = (await this.#d.store.findReviewRound(i.roundId))!))
      out.push(this.#view(i, r))
    }
    return out
  }

  /** Rounds of a campaign (newest first), or of every campaign. */
  rounds(campaignId?: string): Promise<ReviewRoundRecord[]> {
    return this.#d.store.listReviewRounds(campaignId)
  }

  /**
   * One round with every item: the evidence of who decided what, when and why, and which grants
   * were revoked. @throws {ReviewError} `ERR_NOT_FOUND`.
   */
  async roundEvidence(roundId: string): Promise<{ round: ReviewRoundRecord; summary: ReturnType<typeof summarize>; items: ReviewItemView[] }> {
    const round = await this.#d.store.findReviewRound(roundId)
    if (!round) throw new ReviewError('ERR_NOT_FOUND', 'review round not found')
    const items = await this.#d.store.listReviewItems(roundId)
    return { round, summary: summarize(items), items: items.map((i) => this.#view(i, round)) }
  }

  /** The round's evidence as CSV (RFC 4180), one line per item. */
  async roundEvidenceCsv(roundId: string): Promise<string> {
    const { round, items } = await this.roundEvidence(roundId)
    return stringify(
      items.map((i) => ({
        campaign_id: round.campaignId,
        round_id: round.id,
        item_id: i.id,
        grant_id: i.grantId,
        client_id: i.clientId,
        person: i.subject ?? '',
        scope: i.facts.scope,
        age_days: i.facts.ageDays,
        last_used_at: i.facts.lastUsedAt === null ? '' : new Date(i.facts.lastUsedAt * 1000).toISOString(),
        last_used_ip: i.facts.lastUsedIp ?? '',
        policy_decision: i.facts.policyDecision ? `${i.facts.policyDecision.decision} ${i.facts.policyDecision.reasons.join(' ')}`.trim() : '',
        reviewers: i.reviewers.join(' '),
        default_action: i.defaultAction,
        decision: i.decision ?? '',
        decided_by: i.decidedBy ?? '',
        decided_at: i.decidedAt === null ? '' : new Date(i.decidedAt * 1000).toISOString(),
        decided_via: i.decidedVia ?? '',
        justification: i.justification ?? '',
        revoked_at: i.revokedAt === null ? '' : new Date(i.revokedAt * 1000).toISOString(),
      })),
      // A cell that a spreadsheet would run as a formula (=, +, -, @) is prefixed with ' (OWASP CSV injection).
      { header: true, cast: { string: (v) => (/^[=+\-@\t\r]/.test(v) ? `'${v}` : v) } },
    )
  }

  /** The most recently closed round, for the compliance report. */
  async lastCompletedRound(): Promise<ReviewRoundSummary | undefined> {
    const round = await this.#d.store.lastClosedReviewRound()
    if (!round || round.closedAt === null) return undefined
    const s = summarize(await this.#d.store.listReviewItems(round.id))
    return { campaignId: round.campaignId, roundId: round.id, openedAt: round.openedAt, completedAt: round.closedAt, ...s }
  }
}

/** How many of `items` each reviewer may decide (for reminders: the inbox size per person). */
function countByReviewer(items: readonly ReviewItemRecord[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const i of items) for (const r of i.reviewers) if (r !== i.subject) out[r] = (out[r] ?? 0) + 1
  return out
}

/** Counts of a round's items. */
export function summarize(items: readonly ReviewItemRecord[]): { items: number; decided: number; kept: number; revoked: number } {
  return {
    items: items.length,
    decided: items.filter((i) => i.decidedVia === 'reviewer').length,
    kept: items.filter((i) => i.decision === 'keep').length,
    revoked: items.filter((i) => i.decision === 'revoke').length,
  }
}
