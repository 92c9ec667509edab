/**
 * The `reviews:` section of the configuration: access-review campaigns of
 * device-issued grants and the limits the compliance report judges against. Its own module so the
 * main schema only references it. Times on the wire are days where people think in days
 * (`older_than_days`, `every_days`) and seconds elsewhere, as the names say.
 */
import { z } from 'zod'
import { RISK_TIERS, type RiskTier } from '../policy/schema.js'

const days = (max: number) => z.number().int().min(1).max(max)
const slug = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lower-case letters, digits and . _ - (start with a letter or digit)')

/** Who decides the items of a campaign. */
export const REVIEWER_KINDS = ['owners', 'manager', 'group'] as const
export type ReviewerKind = (typeof REVIEWER_KINDS)[number]

/** Which grants a campaign reviews. Every criterion present must hold (AND). */
export const campaignScopeSchema = z
  .object({
    /** Client ids. */
    clients: z.array(z.string().min(1)).min(1).optional(),
    /** Risk tiers of the client. */
    tiers: z.array(z.enum(RISK_TIERS)).min(1).optional(),
    /** Families issued more than this many days before the round opens. */
    older_than_days: days(3650).optional(),
    /** Families unused (no refresh, no reported use) for more than this many days. */
    dormant_days: days(3650).optional(),
    /** People (subjects) in any of these groups. */
    groups: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict()

/** One campaign definition. */
export const campaignSchema = z
  .object({
    /** Stable identifier, e.g. `quarterly-admin`. */
    id: slug,
    /** Shown to reviewers. Default: the id. */
    name: z.string().min(1).max(200).optional(),
    scope: campaignScopeSchema.default({}),
    /**
     * `owners`: the client's `owners`; `manager`: the person's manager (user `manager` attribute,
     * from the identity provider or SCIM); `group`: members of `reviewer_group`.
     */
    reviewers: z.enum(REVIEWER_KINDS),
    /** With `reviewers: group`: the group whose members decide. */
    reviewer_group: z.string().min(1).optional(),
    /** Days from a round's opening to its deadline, 1–365. */
    duration_days: days(365).default(14),
    /**
     * What happens to undecided items at the deadline: `revoke` or `keep`. Default: revoke for
     * items of admin-tier clients, keep for the others.
     */
    default_action: z.enum(['revoke', 'keep']).optional(),
    /** Open a new round this many days after the previous one opened (e.g. 90). Absent: one-off. */
    every_days: days(3650).optional(),
    /** When the first round opens (ISO 8601). Default: when the server first sees the campaign. */
    starts_at: z.iso.datetime({ offset: true }).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.reviewers === 'group' && c.reviewer_group === undefined)
      ctx.addIssue({ code: 'custom', message: 'reviewers: group needs reviewer_group', path: ['reviewer_group'] })
    if (c.reviewers !== 'group' && c.reviewer_group !== undefined)
      ctx.addIssue({ code: 'custom', message: 'reviewer_group applies only to reviewers: group', path: ['reviewer_group'] })
    if (c.every_days !== undefined && c.every_days < c.duration_days)
      ctx.addIssue({ code: 'custom', message: 'every_days must be at least duration_days (one round at a time)', path: ['every_days'] })
  })

export type CampaignFile = z.infer<typeof campaignSchema>

/** Limits the compliance report judges against. */
export const complianceSchema = z
  .object({
    /**
     * Longest refresh-token family lifetime allowed per risk tier, in seconds (OWASP NHI7
     * long-lived secrets). Defaults: low 2592000 (30 d), standard 1209600 (14 d), high 86400 (1 d),
     * admin 28800 (8 h).
     */
    max_refresh_lifetime_seconds: z
      .object({
        low: z.number().int().min(300).max(31_536_000).default(2_592_000),
        standard: z.number().int().min(300).max(31_536_000).default(1_209_600),
        high: z.number().int().min(300).max(31_536_000).default(86_400),
        admin: z.number().int().min(300).max(31_536_000).default(28_800),
      })
      .strict()
      .prefault({}),
    /** Oldest acceptable active signing key, in days (PR.AA-04). Default: 90. */
    max_signing_key_age_days: days(3650).default(90),
    /** A review round must have completed within this many days (GV.OV, PR.AA-05). Default: 90. */
    max_days_since_review: days(3650).default(90),
    /** Share (0–1) of live device-flow families that must be DPoP-bound for a pass (NHI2). Default: 0.9. */
    min_dpop_bound_share: z.number().min(0).max(1).default(0.9),
    /** Share (0–1) of same-device approvals per client above which the report warns (RFC 10027). Default: 0.2. */
    max_same_device_share: z.number().min(0).max(1).default(0.2),
  })
  .strict()
  .prefault({})

export const reviewsSchema = z
  .object({
    campaigns: z.array(campaignSchema).default([]),
    compliance: complianceSchema,
    /** Seconds between deadline and next-round checks, 10–86400. Default: 300. */
    check_every_seconds: z.number().int().min(10).max(86_400).default(300),
  })
  .strict()
  .prefault({})
  .superRefine((r, ctx) => {
    const ids = new Set<string>()
    for (const [i, c] of r.campaigns.entries()) {
      if (ids.has(c.id)) ctx.addIssue({ code: 'custom', message: `duplicate campaign id "${c.id}"`, path: ['campaigns', i, 'id'] })
      ids.add(c.id)
    }
  })

export type ReviewsFile = z.infer<typeof reviewsSchema>

/** A campaign definition, resolved (camelCase, seconds, frozen). */
export interface CampaignDefinition {
  readonly id: string
  readonly name: string
  readonly scope: {
    readonly clients?: readonly string[]
    readonly tiers?: readonly RiskTier[]
    readonly olderThanSeconds?: number
    readonly dormantSeconds?: number
    readonly groups?: readonly string[]
  }
  readonly reviewers: ReviewerKind
  readonly reviewerGroup?: string
  readonly durationSeconds: number
  /** Undefined: revoke for admin-tier items, keep for the others. */
  readonly defaultAction?: 'revoke' | 'keep'
  /** Undefined: one-off. */
  readonly everySeconds?: number
  /** Epoch seconds; undefined: the first time the scheduler sees the campaign. */
  readonly startsAt?: number
  /** `config` (from this file) or `api` (created through the admin API). */
  readonly source: 'config' | 'api'
}

/** Resolved reviews settings. */
export interface ReviewsConfig {
  readonly campaigns: readonly CampaignDefinition[]
  readonly compliance: {
    readonly maxRefreshLifetimeSeconds: Readonly<Record<RiskTier, number>>
    readonly maxSigningKeyAgeDays: number
    readonly maxDaysSinceReview: number
    readonly minDpopBoundShare: number
    readonly maxSameDeviceShare: number
  }
  readonly checkEverySeconds: number
}

const DAY = 86_400

/** Resolves one campaign definition (also used for campaigns created through the admin API). */
export function resolveCampaign(c: CampaignFile, source: 'config' | 'api'): CampaignDefinition {
  const s = c.scope
  return Object.freeze({
    id: c.id,
    name: c.name ?? c.id,
    scope: Object.freeze({
      ...(s.clients ? { clients: Object.freeze([...s.clients]) } : {}),
      ...(s.tiers ? { tiers: Object.freeze([...s.tiers]) } : {}),
      ...(s.older_than_days !== undefined ? { olderThanSeconds: s.older_than_days * DAY } : {}),
      ...(s.dormant_days !== undefined ? { dormantSeconds: s.dormant_days * DAY } : {}),
      ...(s.groups ? { groups: Object.freeze([...s.groups]) } : {}),
    }),
    reviewers: c.reviewers,
    ...(c.reviewer_group !== undefined ? { reviewerGroup: c.reviewer_group } : {}),
    durationSeconds: c.duration_days * DAY,
    ...(c.default_action !== undefined ? { defaultAction: c.default_action } : {}),
    ...(c.every_days !== undefined ? { everySeconds: c.every_days * DAY } : {}),
    ...(c.starts_at !== undefined ? { startsAt: Math.floor(Date.parse(c.starts_at) / 1000) } : {}),
    source,
  })
}

/** Resolves the validated section. */
export function resolveReviewsConfig(file: ReviewsFile | undefined): ReviewsConfig {
  const r = file ?? reviewsSchema.parse(undefined)
  const m = r.compliance.max_refresh_lifetime_seconds
  return Object.freeze({
    campaigns: Object.freeze(r.campaigns.map((c) => resolveCampaign(c, 'config'))),
    compliance: Object.freeze({
      maxRefreshLifetimeSeconds: Object.freeze({ low: m.low, standard: m.standard, high: m.high, admin: m.admin }),
      maxSigningKeyAgeDays: r.compliance.max_signing_key_age_days,
      maxDaysSinceReview: r.compliance.max_days_since_review,
      minDpopBoundShare: r.compliance.min_dpop_bound_share,
      maxSameDeviceShare: r.compliance.max_same_device_share,
    }),
    checkEverySeconds: r.check_every_seconds,
  })
}
