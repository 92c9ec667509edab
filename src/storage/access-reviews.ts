/**
 * Storage of access-review campaigns (access reviews): campaigns created through the admin API,
 * their rounds and items (tables `review_campaigns`, `review_rounds`, `review_items`; migration
 * `014_reviews`). Times are epoch seconds.
 *
 * The operations that must happen once are single conditional writes, correct when several
 * instances run the deadline job at the same time: opening a round is an INSERT guarded by the
 * unique (campaign, number); deciding an item is `UPDATE … WHERE decision IS NULL`; applying the
 * default action at the deadline is one `UPDATE … WHERE decision IS NULL RETURNING`; closing a
 * round is `UPDATE … WHERE closed_at IS NULL`.
 */
export type ReviewDecision = 'keep' | 'revoke'

/** A campaign created through the admin API (configuration campaigns are not stored). */
export interface StoredCampaignRecord {
  id: string
  /** The campaign as the admin API received it (snake_case, validated by `campaignSchema`), JSON text. */
  definitionJson: string
  createdAt: number
  createdBy: string
}

/** One round of a campaign. */
export interface ReviewRoundRecord {
  id: string
  campaignId: string
  /** 1, 2, … per campaign. */
  number: number
  openedAt: number
  deadlineAt: number
  closedAt: number | null
  /** `completed` (every item decided by a reviewer) or `deadline`. */
  closeReason: 'completed' | 'deadline' | null
  /** When the deadline reminder event was emitted, or null. */
  remindedAt: number | null
}

/** One grant under review. */
export interface ReviewItemRecord {
  id: string
  roundId: string
  grantId: string
  clientId: string
  subject: string | null
  /** Usernames who may decide (never the subject). */
  reviewers: string[]
  defaultAction: ReviewDecision
  /** What the reviewer sees: scopes, age, last use and where, the approval's policy decision (JSON text). */
  factsJson: string
  decision: ReviewDecision | null
  decidedBy: string | null
  decidedAt: number | null
  /** `reviewer` or `deadline` (the default action). */
  decidedVia: 'reviewer' | 'deadline' | null
  justification: string | null
  /** When the grant was revoked because of this item. */
  revokedAt: number | null
}

/** The storage interface of the reviews domain. */
export interface AccessReviewStore {
  /** @returns false when a campaign with this id exists. */
  insertReviewCampaign(c: StoredCampaignRecord): Promise<boolean>
  listReviewCampaigns(): Promise<StoredCampaignRecord[]>
  /**
   * Opens a round with its items in one transaction.
   * @returns false (nothing written) when the campaign already has a round with this number.
   */
  openReviewRound(round: ReviewRoundRecord, items: readonly ReviewItemRecord[]): Promise<boolean>
  findReviewRound(id: string): Promise<ReviewRoundRecord | undefined>
  /** Rounds of a campaign, newest first (all campaigns when omitted). */
  listReviewRounds(campaignId?: string): Promise<ReviewRoundRecord[]>
  listOpenReviewRounds(): Promise<ReviewRoundRecord[]>
  /** The most recently closed round of any campaign. */
  lastClosedReviewRound(): Promise<ReviewRoundRecord | undefined>
  findReviewItem(id: string): Promise<ReviewItemRecord | undefined>
  listReviewItems(roundId: string): Promise<ReviewItemRecord[]>
  /** Undecided items of open rounds (the inbox is filtered by reviewer in the service). */
  listUndecidedReviewItems(): Promise<ReviewItemRecord[]>
  /**
   * Records a reviewer's decision only when the item is undecided.
   * @returns true when this call decided it.
   */
  decideReviewItem(id: string, d: { decision: ReviewDecision; decidedBy: string; decidedAt: number; justification: string }): Promise<boolean>
  /**
   * Gives every undecided item of the round its default action, once.
   * @returns the items this call decided (empty when another call did).
   */
  applyReviewDefaults(roundId: string, now: number): Promise<ReviewItemRecord[]>
  markReviewItemRevoked(id: string, now: number): Promise<void>
  /** @returns true when this call closed the round. */
  closeReviewRound(id: string, now: number, reason: 'completed' | 'deadline'): Promise<boolean>
  /** @returns true when this call marked the reminder (so emits the event once). */
  markReviewRoundReminded(id: string, now: number): Promise<boolean>
}

