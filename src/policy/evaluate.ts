/**
 * Policy evaluation: a pure function of a compiled policy and the facts.
 *
 * Order: the flow block (`device_flow_blocked_*`), account status (`user_disabled`), then every
 * rule in order (baseline first). All matching rules contribute reasons; the decision is the
 * strongest effect — `deny` > `step_up` (unless MFA was done in this sign-in: `mfa_completed`) >
 * `allow`. When no allow, step_up or deny rule matched, the policy's `default_effect` decides
 * (`default_allow` / `default_deny`). Constraints of matching allow rules and of the client's
 * profile combine by taking the strictest value.
 */
import { PROFILE_SPECS } from './baseline.js'
import type { CompiledPolicy } from './compile.js'
import { NO_CONSTRAINTS, type Constraints, type PolicyDecision, type PolicyFacts, type ProximityFacts, type Reason } from './model.js'
import { canonicalIp, isSameSubnet } from './net.js'
import type { ConstraintsFile, ProximityAttribute } from './schema.js'

/** Compares the requesting device with the approver. */
export function compareSides(facts: PolicyFacts, prefixV4: number, prefixV6: number): ProximityFacts {
  const a = facts.request
  const b = facts.approver
  if (b === null) return { sameIp: false, sameSubnet: false, sameAsn: null, sameCountry: null }
  const sameIp = canonicalIp(a.ip) === canonicalIp(b.ip)
  // The same address is the same network and country, whatever the IP database knows.
  const same = <T>(x: T | null, y: T | null): boolean | null => (sameIp ? true : x === null || y === null ? null : x === y)
  return {
    sameIp,
    sameSubnet: sameIp || isSameSubnet(a.ip, b.ip, prefixV4, prefixV6),
    sameAsn: same(a.asn, b.asn),
    sameCountry: same(a.country, b.country),
  }
}

/** Tightens `acc` with `c`: lower caps, refresh and DPoP only if both allow, scopes intersected. */
export function tightenConstraints(acc: Constraints, c: ConstraintsFile): Constraints {
  const min = (x: number | null, y: number | undefined) => (y === undefined ? x : x === null ? y : Math.min(x, y))
  return {
    accessTokenTtlSeconds: min(acc.accessTokenTtlSeconds, c.access_token_ttl_seconds),
    refreshAllowed: acc.refreshAllowed && c.refresh !== false,
    refreshMaxLifetimeSeconds: min(acc.refreshMaxLifetimeSeconds, c.refresh_max_lifetime_seconds),
    scopes: c.scopes === undefined ? acc.scopes : acc.scopes === null ? [...c.scopes] : acc.scopes.filter((s) => c.scopes!.includes(s)),
    dpopRequired: acc.dpopRequired || c.dpop === true,
    maxSessionSeconds: min(acc.maxSessionSeconds, c.max_session_seconds),
    singleSession: acc.singleSession || c.single_session === true,
  }
}

/**
 * Decides one device-flow request.
 *
 * @param policy The compiled policy in force (never mutated).
 * @param facts Everything known about client, approver, both networks, posture, device and time.
 * @returns the decision, every reason as `{ code, rule }` (stable snake_case codes), the effective
 *   constraints, the requester/approver comparison and the facts themselves (for the record).
 */
export function evaluate(policy: CompiledPolicy, facts: PolicyFacts): PolicyDecision {
  const proximity = compareSides(facts, policy.subnetPrefixV4, policy.subnetPrefixV6)
  const proximityMismatch: ProximityAttribute[] = []
  if (facts.approver !== null) {
    if (!proximity.sameIp) proximityMismatch.push('ip')
    if (!proximity.sameSubnet) proximityMismatch.push('subnet')
    if (proximity.sameAsn === false) proximityMismatch.push('asn')
    if (proximity.sameCountry === false) proximityMismatch.push('country')
  }
  const settings = policy.clientSettings(facts.client.id)
  const reasons: Reason[] = []
  const matchedRules: string[] = []
  let constraints: Constraints = { ...NO_CONSTRAINTS }
  const base = { proximity, proximityMismatch, facts, policyId: policy.id, profile: settings.profile }
  const deny = (code: string, rule: string, message?: string): PolicyDecision => ({
    ...base,
    decision: 'deny',
    reasons: [...reasons, { code, rule, effect: 'deny', ...(message ? { message } : {}) }],
    matchedRules: [...matchedRules, rule],
    constraints,
  })

  const block = policy.blockDeviceFlow
  const blockMessage = block.message ?? 'Signing in with a device code is not allowed for this app or account.'
  if (block.clients.has(facts.client.id)) return deny('device_flow_blocked_client', 'block_device_flow', blockMessage)
  if (facts.user !== null) {
    if (block.users.has(facts.user.username)) return deny('device_flow_blocked_user', 'block_device_flow', blockMessage)
    if (facts.user.groups.some((g) => block.groups.has(g))) return deny('device_flow_blocked_group', 'block_device_flow', blockMessage)
    if (facts.user.disabled) return deny('user_disabled', 'account_status', 'This account is disabled.')
  }
  if (facts.posture.status === 'invalid')
    reasons.push({ code: 'posture_invalid', rule: 'device_posture', effect: 'warn' })

  if (settings.profile !== null) {
    constraints = tightenConstraints(constraints, PROFILE_SPECS[settings.profile].constraints)
    reasons.push({ code: `profile_${settings.profile}`, rule: `profile.${settings.profile}`, effect: 'allow' })
  }

  let denied = false
  let stepUp = false
  let decisive = false
  const ctx = { facts, proximity }
  for (const rule of policy.rules) {
    if (!rule.matches(ctx)) continue
    matchedRules.push(rule.name)
    const msg = rule.message === undefined ? {} : { message: rule.message }
    switch (rule.effect) {
      case 'deny':
        denied = true
        decisive = true
        reasons.push({ code: rule.reason, rule: rule.name, effect: 'deny', ...msg })
        break
      case 'step_up':
        decisive = true
        if (facts.mfaDone) reasons.push({ code: 'mfa_completed', rule: rule.name, effect: 'allow' })
        else {
          stepUp = true
          reasons.push({ code: rule.reason, rule: rule.name, effect: 'step_up', ...msg })
        }
        break
      case 'allow':
        decisive = true
        if (rule.constraints) constraints = tightenConstraints(constraints, rule.constraints)
        reasons.push({ code: rule.reason, rule: rule.name, effect: 'allow' })
        break
      case 'warn':
        reasons.push({ code: rule.reason, rule: rule.name, effect: 'warn', ...msg })
        break
    }
  }
  if (!decisive) {
    if (policy.defaultEffect === 'deny') {
      denied = true
      reasons.push({ code: 'default_deny', rule: 'default', effect: 'deny', message: 'No policy rule allows this request.' })
    } else reasons.push({ code: 'default_allow', rule: 'default', effect: 'allow' })
  }
  const decision = denied ? 'deny' : stepUp ? 'step_up' : 'allow'
  return { ...base, decision, reasons, matchedRules, constraints }
}

/** The message to show the approver for a deny or step_up decision (first one with text). */
export function decisionMessage(d: PolicyDecision): string | undefined {
  const wanted = d.decision === 'deny' ? 'deny' : d.decision === 'step_up' ? 'step_up' : undefined
  return d.reasons.find((r) => r.effect === wanted && r.message !== undefined)?.message
}
