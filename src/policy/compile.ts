/**
 * Policy loading: YAML text → validated {@link PolicyFile} → immutable {@link CompiledPolicy}.
 *
 * Compilation does all the parsing (CIDR sets, time-zone formatters) once, so evaluation is a
 * cheap walk over closures. A compiled policy is frozen and never changes: reloading builds a new
 * one and swaps the reference (see `holder.ts`).
 */
import { createHash } from 'node:crypto'
import { parse as parseYaml } from 'yaml'
import { formatConfigIssues } from '../config/load.js'
import { BASELINE_RULES, PROFILE_SPECS } from './baseline.js'
import type { PolicyFacts, ProximityFacts } from './model.js'
import { compileCidrs } from './net.js'
import {
  policyFileSchema,
  WEEKDAYS,
  type ConditionsFile,
  type ConstraintsFile,
  type Effect,
  type PolicyFile,
  type ProfileName,
  type ProximityAttribute,
  type RuleFile,
} from './schema.js'

/** A policy file that cannot be used; `message` names each bad path (`rules[2].when.tiers[0]: …`). */
export class PolicyError extends Error {
  override readonly name = 'PolicyError'
  readonly code = 'ERR_POLICY'
}

/** What a condition sees: the facts and the requester/approver comparison. */
export interface MatchContext {
  facts: PolicyFacts
  proximity: ProximityFacts
}

/** A rule ready to evaluate. */
export interface CompiledRule {
  readonly name: string
  readonly effect: Effect
  /** Stable reason code reported when the rule matches. */
  readonly reason: string
  readonly message: string | undefined
  readonly constraints: ConstraintsFile | undefined
  readonly matches: (ctx: MatchContext) => boolean
  /** The rule's `when` names a `storage` condition (anywhere, including under `not` and `any`). */
  readonly usesStorage: boolean
}

/** Per-client settings that apply before any evaluation (device authorization, page rendering). */
export interface ClientPolicySettings {
  profile: ProfileName | null
  /** The code must be typed; verification_uri_complete is refused and not returned. */
  requireTypedCode: boolean
  /** Approve needs the code's last characters typed; undefined = by tier (high and admin). */
  confirmCode: boolean | undefined
  /** Cap on the device code lifetime in seconds, or null. */
  deviceCodeTtlSeconds: number | null
  /** The device code must be bound to a DPoP key at device authorization (`require_bound_device_code`). */
  requireBoundDeviceCode: boolean
  /** Refuse refreshes from another location than the request's (attributes compared), or null. */
  refreshFromNewLocation: { on: readonly ProximityAttribute[]; missingGeo: 'mismatch' | 'ignore' } | null
}

/** An immutable, ready-to-evaluate policy. */
export interface CompiledPolicy {
  /** `sha256:<hex>` of the source text, or `built-in` for the baseline alone. */
  readonly id: string
  /** File path, or `built-in`. */
  readonly source: string
  readonly defaultEffect: 'allow' | 'deny'
  readonly subnetPrefixV4: number
  readonly subnetPrefixV6: number
  readonly rules: readonly CompiledRule[]
  readonly blockDeviceFlow: {
    readonly clients: ReadonlySet<string>
    readonly users: ReadonlySet<string>
    readonly groups: ReadonlySet<string>
    readonly message: string | undefined
  }
  clientSettings(clientId: string): ClientPolicySettings
}

const DEFAULT_REASON: Record<Effect, string> = {
  allow: 'allowed_by_rule',
  warn: 'warning',
  step_up: 'mfa_required',
  deny: 'denied_by_rule',
}

const WEEKDAY_INDEX: Record<string, number> = { Mon: 0, Tue: 1, Wed: 2, Thu: 3, Fri: 4, Sat: 5, Sun: 6 }

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number) as [number, number]
  return h * 60 + m
}

/** Compiles one `when` block to a predicate. `path` names it in errors. */
function compileConditions(c: ConditionsFile, path: string): (ctx: MatchContext) => boolean {
  const tests: ((ctx: MatchContext) => boolean)[] = []
  if (c.clients) {
    const ids = new Set(c.clients)
    tests.push(({ facts }) => ids.has(facts.client.id))
  }
  if (c.tiers) {
    const tiers = new Set<string>(c.tiers)
    tests.push(({ facts }) => tiers.has(facts.client.tier))
  }
  if (c.users) {
    const users = new Set(c.users)
    tests.push(({ facts }) => facts.user !== null && users.has(facts.user.username))
  }
  if (c.groups) {
    const groups = new Set(c.groups)
    tests.push(({ facts }) => facts.user !== null && facts.user.groups.some((g) => groups.has(g)))
  }
  if (c.account_status !== undefined) {
    const disabled = c.account_status === 'disabled'
    tests.push(({ facts }) => facts.user !== null && facts.user.disabled === disabled)
  }
  if (c.mfa !== undefined) {
    const want = c.mfa
    tests.push(({ facts }) => facts.mfaDone === want)
  }
  if (c.user_risk) {
    const min = c.user_risk.min ?? 0
    const max = c.user_risk.max ?? 100
    tests.push(({ facts }) => facts.user !== null && facts.user.risk >= min && facts.user.risk <= max)
  }
  for (const side of ['request', 'approver'] as const) {
    const net = side === 'request' ? c.request_network : c.approver_network
    if (!net) continue
    let inCidrs: (ip: string) => boolean
    try {
      inCidrs = compileCidrs(net.cidrs ?? [])
    } catch (err) {
      throw new PolicyError(`${path}.${side}_network.cidrs: ${(err as Error).message}`)
    }
    const countries = new Set(net.countries ?? [])
    const asns = new Set(net.asns ?? [])
    tests.push(({ facts }) => {
      const n = side === 'request' ? facts.request : facts.approver
      if (n === null) return false
      return inCidrs(n.ip) || (n.country !== null && countries.has(n.country)) || (n.asn !== null && asns.has(n.asn))
    })
  }
  if (c.proximity_mismatch) {
    const { on, missing_geo } = c.proximity_mismatch
    const missingIsMismatch = missing_geo === 'mismatch'
    tests.push(({ facts, proximity }) => {
      if (facts.approver === null) return false
      return on.some((attr) => {
        const same =
          attr === 'ip' ? proximity.sameIp : attr === 'subnet' ? proximity.sameSubnet : attr === 'asn' ? proximity.sameAsn : proximity.sameCountry
        return same === null ? missingIsMismatch : !same
      })
    })
  }
  if (c.posture) {
    const p = c.posture
    tests.push(({ facts }) => {
      const valid = facts.posture.status === 'valid'
      if (p.present !== undefined && valid !== p.present) return false
      const needsClaims = p.managed !== undefined || p.disk_encrypted !== undefined || p.max_os_patch_age_days !== undefined
      if (!needsClaims) return true
      if (!valid) return false
      if (p.managed !== undefined && facts.posture.managed !== p.managed) return false
      if (p.disk_encrypted !== undefined && facts.posture.diskEncrypted !== p.disk_encrypted) return false
      if (p.max_os_patch_age_days !== undefined) {
        const age = facts.posture.osPatchAgeDays
        if (age === undefined || age > p.max_os_patch_age_days) return false
      }
      return true
    })
  }
  if (c.device_registered !== undefined) {
    const want = c.device_registered
    // Unknown (no DPoP key, or no registry) counts as not registered.
    tests.push(({ facts }) => (facts.device.registered === true) === want)
  }
  if (c.storage) {
    const inList = c.storage.in !== undefined
    const classes = new Set<string>(c.storage.in ?? c.storage.not_in)
    const registeredSatisfies = c.storage.registered_device_satisfies ?? true
    tests.push(({ facts }) => {
      if (registeredSatisfies && facts.device.registered === true) return inList
      const listed = classes.has(facts.storage ?? 'unknown')
      return inList ? listed : !listed
    })
  }
  if (c.same_device !== undefined) {
    const want = c.same_device
    tests.push(({ facts }) => facts.sameDevice === want) // unknown (null, or absent in older records) never matches
  }
  if (c.time) {
    const fmt = new Intl.DateTimeFormat('en-US', {
      timeZone: c.time.timezone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
    const days = c.time.days ? new Set(c.time.days.map((d) => WEEKDAYS.indexOf(d))) : undefined
    const from = c.time.from === undefined ? undefined : minutesOf(c.time.from)
    const to = c.time.to === undefined ? undefined : minutesOf(c.time.to)
    tests.push(({ facts }) => {
      const parts = fmt.formatToParts(new Date(facts.now * 1000))
      const get = (type: string) => parts.find((x) => x.type === type)?.value ?? ''
      const day = WEEKDAY_INDEX[get('weekday')] ?? -1
      const minute = Number(get('hour')) * 60 + Number(get('minute'))
      if (days && !days.has(day)) return false
      if (from === undefined || to === undefined) return true
      return from <= to ? minute >= from && minute < to : minute >= from || minute < to
    })
  }
  if (c.not) {
    const inner = compileConditions(c.not, `${path}.not`)
    tests.push((ctx) => !inner(ctx))
  }
  if (c.any) {
    const inner = c.any.map((x, i) => compileConditions(x, `${path}.any[${i}]`))
    tests.push((ctx) => inner.some((t) => t(ctx)))
  }
  return (ctx) => tests.every((t) => t(ctx))
}

function compileRule(rule: RuleFile, path: string): CompiledRule {
  return Object.freeze({
    name: rule.name,
    effect: rule.effect,
    reason: rule.reason ?? DEFAULT_REASON[rule.effect],
    message: rule.message,
    constraints: rule.constraints === undefined ? undefined : Object.freeze({ ...rule.constraints }),
    matches: compileConditions(rule.when, `${path}.when`),
    usesStorage: mentionsStorage(rule.when),
  })
}

function mentionsStorage(c: ConditionsFile): boolean {
  return c.storage !== undefined || (c.not !== undefined && mentionsStorage(c.not)) || (c.any ?? []).some(mentionsStorage)
}

/**
 * Compiles a validated policy.
 * @param source File path (for messages) or `built-in`.
 * @param id `sha256:…` of the source text, or `built-in`.
 * @throws {PolicyError} for problems zod cannot see (e.g. a CIDR with a bad prefix).
 */
export function compilePolicy(file: PolicyFile, source: string, id: string): CompiledPolicy {
  const rules = [
    ...(file.include_baseline ? BASELINE_RULES.map((r, i) => compileRule(r, `baseline[${i}]`)) : []),
    ...file.rules.map((r, i) => compileRule(r, `rules[${i}]`)),
  ]
  const settings = new Map<string, ClientPolicySettings>()
  for (const [clientId, c] of Object.entries(file.clients)) {
    const spec = c.profile === undefined ? undefined : PROFILE_SPECS[c.profile]
    settings.set(
      clientId,
      Object.freeze({
        profile: c.profile ?? null,
        requireTypedCode: (spec?.requireTypedCode ?? false) || (c.disallow_verification_uri_complete ?? false),
        confirmCode: c.confirm_code,
        deviceCodeTtlSeconds: spec?.deviceCodeTtlSeconds ?? null,
        requireBoundDeviceCode: c.require_bound_device_code ?? false,
        refreshFromNewLocation:
          c.refresh_from_new_location === undefined
            ? null
            : Object.freeze({ on: Object.freeze([...c.refresh_from_new_location.on]), missingGeo: c.refresh_from_new_location.missing_geo }),
      }),
    )
  }
  const none: ClientPolicySettings = Object.freeze({
    profile: null,
    requireTypedCode: false,
    confirmCode: undefined,
    deviceCodeTtlSeconds: null,
    requireBoundDeviceCode: false,
    refreshFromNewLocation: null,
  })
  return Object.freeze({
    id,
    source,
    defaultEffect: file.default_effect,
    subnetPrefixV4: file.proximity.subnet_prefix_v4,
    subnetPrefixV6: file.proximity.subnet_prefix_v6,
    rules: Object.freeze(rules),
    blockDeviceFlow: Object.freeze({
      clients: new Set(file.block_device_flow.clients),
      users: new Set(file.block_device_flow.users),
      groups: new Set(file.block_device_flow.groups),
      message: file.block_device_flow.message,
    }),
    clientSettings: (clientId: string) => settings.get(clientId) ?? none,
  })
}

/**
 * Validates a parsed policy document.
 * @throws {PolicyError} listing every problem as `path: message[, got value]`.
 */
export function parsePolicy(doc: unknown, source = 'policy'): PolicyFile {
  const result = policyFileSchema.safeParse(doc ?? {})
  if (!result.success) throw new PolicyError(`${source}: invalid policy:\n${formatConfigIssues(result.error, doc)}`)
  return result.data
}

/**
 * Parses, validates and compiles policy YAML text.
 * @throws {PolicyError} for bad YAML or an invalid policy, naming the path of each problem.
 */
export function compilePolicyText(text: string, source: string): CompiledPolicy {
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    throw new PolicyError(`${source}: not valid YAML: ${(err as Error).message}`)
  }
  const file = parsePolicy(doc, source)
  return compilePolicy(file, source, `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`)
}

/** The baseline alone: the policy in force when none is configured. */
export const BUILT_IN_POLICY: CompiledPolicy = compilePolicy(parsePolicy({ version: 1 }, 'built-in'), 'built-in', 'built-in')

export { PROFILE_SPECS }
