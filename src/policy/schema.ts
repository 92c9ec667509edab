/**
 * The policy file schema (YAML, snake_case), validated with zod.
 *
 * A policy is an ordered list of rules. Each rule has a `when` block (every condition present
 * must hold; a list inside one condition matches any of its items) and an `effect`:
 * - `allow`   — may carry `constraints` that shape the issued tokens,
 * - `warn`    — adds its reason to the decision and to the approval page, changes nothing else,
 * - `step_up` — the approver must complete MFA in this sign-in first,
 * - `deny`    — the request cannot be approved; `message` is shown to the approver.
 *
 * Every matching rule contributes (deny beats step_up beats allow; constraints combine by taking
 * the strictest value). See `examples/policy.yaml` and the README section "Policies and
 * conditional approval".
 */
import { z } from 'zod'
import { STORAGE_CLASSES, type StorageClass } from '../core/storage-class.js'

/** Per-app risk tiers, lowest to highest. */
export const RISK_TIERS = ['low', 'standard', 'high', 'admin'] as const
export type RiskTier = (typeof RISK_TIERS)[number]

/** Stable snake_case reason code (`network_outside_allowlist`). */
const reasonCode = z.string().regex(/^[a-z][a-z0-9_]{1,63}$/, 'a reason code is snake_case, 2–64 characters')

const ipOrCidr = z
  .string()
  .regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'expected an IP address or CIDR, e.g. 10.0.0.0/8')

/** ISO 3166-1 alpha-2 country code, upper case (`DE`). */
const countryCode = z.string().regex(/^[A-Z]{2}$/, 'expected an ISO 3166-1 alpha-2 code in upper case, e.g. DE')

/** A network: any of the CIDRs, countries or autonomous systems. */
const networkSchema = z
  .object({
    cidrs: z.array(ipOrCidr).optional(),
    countries: z.array(countryCode).optional(),
    asns: z.array(z.number().int().min(0).max(4_294_967_295)).optional(),
  })
  .strict()
  .refine((n) => (n.cidrs?.length ?? 0) + (n.countries?.length ?? 0) + (n.asns?.length ?? 0) > 0, 'name at least one of cidrs, countries, asns')

/** Attributes two addresses can share. `subnet` uses the policy's subnet prefix lengths. */
export const PROXIMITY_ATTRIBUTES = ['ip', 'subnet', 'asn', 'country'] as const
export type ProximityAttribute = (typeof PROXIMITY_ATTRIBUTES)[number]

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected HH:MM (24 h)')
export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const

/** Conditions of one rule. Every condition present must hold (AND). */
export interface ConditionsFile {
  clients?: string[] | undefined
  tiers?: RiskTier[] | undefined
  users?: string[] | undefined
  groups?: string[] | undefined
  account_status?: 'active' | 'disabled' | undefined
  mfa?: boolean | undefined
  user_risk?: { min?: number | undefined; max?: number | undefined } | undefined
  request_network?: z.infer<typeof networkSchema> | undefined
  approver_network?: z.infer<typeof networkSchema> | undefined
  proximity_mismatch?: { on: ProximityAttribute[]; missing_geo: 'mismatch' | 'ignore' } | undefined
  posture?:
    | {
        present?: boolean | undefined
        managed?: boolean | undefined
        disk_encrypted?: boolean | undefined
        max_os_patch_age_days?: number | undefined
      }
    | undefined
  device_registered?: boolean | undefined
  storage?: { in?: StorageClass[] | undefined; not_in?: StorageClass[] | undefined; registered_device_satisfies?: boolean | undefined } | undefined
  same_device?: boolean | undefined
  time?: { timezone: string; days?: (typeof WEEKDAYS)[number][] | undefined; from?: string | undefined; to?: string | undefined } | undefined
  not?: ConditionsFile | undefined
  any?: ConditionsFile[] | undefined
}

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
    return true
  } catch {
    return false
  }
}

/** The `when` block. `not` matches when its conditions do not all hold; `any` when one of its blocks holds. */
export const conditionsSchema: z.ZodType<ConditionsFile> = z.lazy(() =>
  z
    .object({
      /** Client ids (RFC 6749 §2.2). */
      clients: z.array(z.string().min(1)).min(1).optional(),
      /** Risk tiers of the client (`risk_tier` in the client configuration). */
      tiers: z.array(z.enum(RISK_TIERS)).min(1).optional(),
      /** Approver usernames. */
      users: z.array(z.string().min(1)).min(1).optional(),
      /** Approver groups: matches when the approver is in any of them. */
      groups: z.array(z.string().min(1)).min(1).optional(),
      /** Account status of the approver (at refresh, a disabled account). */
      account_status: z.enum(['active', 'disabled']).optional(),
      /** Whether the approver completed MFA in this sign-in. */
      mfa: z.boolean().optional(),
      /** The approver's risk attribute, 0–100, inclusive bounds. */
      user_risk: z
        .object({ min: z.number().int().min(0).max(100).optional(), max: z.number().int().min(0).max(100).optional() })
        .strict()
        .refine((r) => r.min !== undefined || r.max !== undefined, 'give min, max or both')
        .optional(),
      /** The requesting device's address is in this network. */
      request_network: networkSchema.optional(),
      /** The approving browser's address is in this network. */
      approver_network: networkSchema.optional(),
      /** The requesting device and the approver differ in any of `on`. */
      proximity_mismatch: z
        .object({
          on: z.array(z.enum(PROXIMITY_ATTRIBUTES)).min(1),
          /** Whether an attribute the IP database does not know counts as a mismatch. Default: ignore. */
          missing_geo: z.enum(['mismatch', 'ignore']).default('ignore'),
        })
        .strict()
        .optional(),
      /** A valid device posture assertion satisfies every listed claim. */
      posture: z
        .object({
          present: z.boolean().optional(),
          managed: z.boolean().optional(),
          disk_encrypted: z.boolean().optional(),
          max_os_patch_age_days: z.number().int().min(0).max(3650).optional(),
        })
        .strict()
        .optional(),
      /** The requesting device's DPoP key is (or is not) in the trusted device registry. */
      device_registered: z.boolean().optional(),
      /**
       * The declared token storage (`storage_class`) is in `in` / is not in `not_in`.
       * A declaration is a claim: with `registered_device_satisfies` (default: true) a DPoP key
       * from the trusted-device registry counts as acceptable storage whatever was declared, so
       * `in` matches and `not_in` does not.
       */
      storage: z
        .object({
          in: z.array(z.enum(STORAGE_CLASSES)).min(1).optional(),
          not_in: z.array(z.enum(STORAGE_CLASSES)).min(1).optional(),
          registered_device_satisfies: z.boolean().optional(),
        })
        .strict()
        .refine((s) => (s.in === undefined) !== (s.not_in === undefined), 'give exactly one of in, not_in')
        .optional(),
      /**
       * The approving browser runs on the requesting machine (same address and platform, see
       * `policy/same-device.ts`; RFC 10027 cross-device guidance). Unknown never matches.
       */
      same_device: z.boolean().optional(),
      /** Local time in `timezone` is on one of `days` and within [from, to) (wraps past midnight when from > to). */
      time: z
        .object({
          timezone: z.string().refine(isTimeZone, 'unknown IANA time zone'),
          days: z.array(z.enum(WEEKDAYS)).min(1).optional(),
          from: hhmm.optional(),
          to: hhmm.optional(),
        })
        .strict()
        .refine((t) => (t.from === undefined) === (t.to === undefined), 'give both from and to, or neither')
        .optional(),
      not: conditionsSchema.optional(),
      any: z.array(conditionsSchema).min(1).optional(),
    })
    .strict(),
)

/** Token constraints an `allow` rule or a profile can set; the strictest value wins. */
export const constraintsSchema = z
  .object({
    /** Upper bound of the access-token lifetime in seconds, 30–86400. */
    access_token_ttl_seconds: z.number().int().min(30).max(86_400).optional(),
    /** Whether a refresh token may be issued. */
    refresh: z.boolean().optional(),
    /** Upper bound of the refresh-token family lifetime in seconds. */
    refresh_max_lifetime_seconds: z.number().int().min(60).max(31_536_000).optional(),
    /** Scopes the tokens may carry at most: the granted scope is narrowed to these. */
    scopes: z.array(z.string().min(1)).optional(),
    /** Tokens must be DPoP-bound (RFC 9449): redemption without a proof is refused. */
    dpop: z.boolean().optional(),
    /** Upper bound of the whole session (every token of the family) in seconds. */
    max_session_seconds: z.number().int().min(60).max(31_536_000).optional(),
    /** At most one live token family per user and app: redemption revokes older ones. */
    single_session: z.boolean().optional(),
  })
  .strict()

export type ConstraintsFile = z.infer<typeof constraintsSchema>

export const EFFECTS = ['allow', 'warn', 'step_up', 'deny'] as const
export type Effect = (typeof EFFECTS)[number]

/** One rule. */
export const ruleSchema = z
  .object({
    /** Unique name, reported as `rule` next to each reason code. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits and . _ - (start with a letter or digit)'),
    when: conditionsSchema.default({}),
    effect: z.enum(EFFECTS),
    /** Stable reason code reported when the rule matches. Default: by effect. */
    reason: reasonCode.optional(),
    /** Text shown to the approver for `deny`, `warn` and `step_up`. */
    message: z.string().min(1).max(300).optional(),
    constraints: constraintsSchema.optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.constraints !== undefined && r.effect !== 'allow')
      ctx.addIssue({ code: 'custom', message: 'only an allow rule carries constraints', path: ['constraints'] })
  })

export type RuleFile = z.infer<typeof ruleSchema>

/** Built-in profiles a client can be put under. */
export const PROFILES = ['shared_device', 'kiosk'] as const
export type ProfileName = (typeof PROFILES)[number]

/** Per-client settings in the policy. */
export const clientPolicySchema = z
  .object({
    /** Built-in profile: `shared_device` or `kiosk`. */
    profile: z.enum(PROFILES).optional(),
    /** Refuse `verification_uri_complete`: the approver must type the code (kiosk implies it). */
    disallow_verification_uri_complete: z.boolean().optional(),
    /** Approvers confirm by typing the code's last characters (default: for high and admin tiers). */
    confirm_code: z.boolean().optional(),
    /**
     * The device authorization request must bind the device code to a DPoP key (proof or
     * `dpop_jkt`); an unbound one gets `invalid_request`. Same as the client's
     * `dpop.bind_device_code`, either one suffices. Default: false.
     */
    require_bound_device_code: z.boolean().optional(),
    /**
     * Refuse a refresh (RFC 6749 §6) made from an address that differs from the device
     * authorization request's in any of `on` (`country`, `asn`, `subnet`, `ip`): answered
     * `invalid_grant` with reason `refresh_from_new_location` at that refresh; the family is kept
     * (a refresh from the usual place works again). `missing_geo`: whether an attribute the IP
     * database does not know counts as a change. Default: not set (no such check).
     */
    refresh_from_new_location: z
      .object({ on: z.array(z.enum(PROXIMITY_ATTRIBUTES)).min(1), missing_geo: z.enum(['mismatch', 'ignore']).default('ignore') })
      .strict()
      .optional(),
  })
  .strict()

/** The whole policy file. */
export const policyFileSchema = z
  .object({
    /** Format version. Must be 1. */
    version: z.literal(1),
    /** Decision when no allow/deny/step_up rule matched. Default: allow. */
    default_effect: z.enum(['allow', 'deny']).default('allow'),
    /** How `subnet` proximity is judged: prefix lengths. Default: /24 and /56. */
    proximity: z
      .object({
        subnet_prefix_v4: z.number().int().min(8).max(32).default(24),
        subnet_prefix_v6: z.number().int().min(16).max(128).default(56),
      })
      .strict()
      .default({ subnet_prefix_v4: 24, subnet_prefix_v6: 56 }),
    /** Block the device flow entirely for these apps, users or groups. */
    block_device_flow: z
      .object({
        clients: z.array(z.string().min(1)).default([]),
        users: z.array(z.string().min(1)).default([]),
        groups: z.array(z.string().min(1)).default([]),
        message: z.string().min(1).max(300).optional(),
      })
      .strict()
      .default({ clients: [], users: [], groups: [] }),
    /** Settings per client id. */
    clients: z.record(z.string().min(1), clientPolicySchema).default({}),
    rules: z.array(ruleSchema).default([]),
    /**
     * Keep the built-in baseline rules (admin requires MFA; proximity warns for low/standard,
     * denies for high/admin) before this file's rules. Default: true.
     */
    include_baseline: z.boolean().default(true),
  })
  .strict()
  .superRefine((p, ctx) => {
    const names = new Set<string>()
    for (const [i, r] of p.rules.entries()) {
      if (names.has(r.name)) ctx.addIssue({ code: 'custom', message: `duplicate rule name "${r.name}"`, path: ['rules', i, 'name'] })
      names.add(r.name)
    }
  })

export type PolicyFile = z.infer<typeof policyFileSchema>
