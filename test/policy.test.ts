/**
 * Conditional approval: the policy schema, evaluate() over every condition, outcome,
 * profile and the flow block (table-driven: each row names the case, the decision and the exact
 * reason codes), hot reload, the posture verifier and the IP helpers.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose'
import { afterAll, describe, expect, it } from 'vitest'
import { BUILT_IN_POLICY, compilePolicyText, PolicyError, type CompiledPolicy } from '../src/policy/compile.js'
import { evaluate } from '../src/policy/evaluate.js'
import { createStaticGeoLookup } from '../src/policy/geo.js'
import { PolicyHolder } from '../src/policy/holder.js'
import type { Constraints, NetworkFacts, PolicyFacts, PostureFacts } from '../src/policy/model.js'
import { isSameSubnet } from '../src/policy/net.js'
import { createPostureVerifier } from '../src/policy/posture.js'

/** Wednesday 2025-06-04 10:00 UTC = 12:00 in Berlin. */
const WED_NOON_BERLIN = Date.UTC(2025, 5, 4, 10, 0) / 1000
const at = (iso: string) => Date.parse(iso) / 1000

const TEST_POLICY = compilePolicyText(
  `
version: 1
block_device_flow:
  clients: [blocked-app]
  users: [eve]
  groups: [contractors]
clients:
  shared-tv: { profile: shared_device }
  kiosk-app: { profile: kiosk }
  typed-app: { disallow_verification_uri_complete: true, confirm_code: true }
rules:
  - name: deny-high-risk-users
    when: { user_risk: { min: 80 } }
    effect: deny
    reason: user_risk_too_high
    message: Your account is under review.
  - name: step-up-medium-risk
    when: { user_risk: { min: 40, max: 79 } }
    effect: step_up
  - name: deploy-needs-posture
    when: { clients: [deploy], not: { posture: { managed: true, disk_encrypted: true, max_os_patch_age_days: 30 } } }
    effect: deny
    reason: posture_noncompliant
  - name: deploy-office-hours
    when:
      clients: [deploy]
      not: { time: { timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], from: "08:00", to: "19:00" } }
    effect: deny
    reason: outside_business_hours
  - name: deploy-constraints
    when: { clients: [deploy] }
    effect: allow
    constraints: { access_token_ttl_seconds: 300, refresh: false, dpop: true, scopes: [deploy] }
  - name: sanctioned-countries
    when: { request_network: { countries: [KP] } }
    effect: deny
    reason: network_blocked_country
  - name: reader-corp-network
    when: { clients: [reader], not: { request_network: { cidrs: [10.0.0.0/8], asns: [64500] } } }
    effect: deny
    reason: network_outside_allowlist
  - name: reader-short-without-mfa
    when: { clients: [reader], mfa: false }
    effect: allow
    constraints: { max_session_seconds: 3600, refresh_max_lifetime_seconds: 7200, access_token_ttl_seconds: 900 }
  - name: reader-cap
    when: { clients: [reader] }
    effect: allow
    constraints: { access_token_ttl_seconds: 600, scopes: [read, write] }
  - name: console-approver-vpn
    when: { clients: [console], not: { approver_network: { cidrs: [192.0.2.0/24] } } }
    effect: deny
    reason: approver_network_outside_allowlist
  - name: console-admins-only
    when: { clients: [console], not: { groups: [admins] } }
    effect: deny
    reason: group_not_allowed
  - name: fleet-registered-device
    when: { clients: [fleet], device_registered: false }
    effect: deny
    reason: device_not_registered
  - name: tv-same-subnet
    when: { clients: [shared-tv], proximity_mismatch: { on: [subnet] } }
    effect: deny
    reason: not_same_network
  - name: watch-bob
    when: { users: [bob] }
    effect: warn
    reason: watched_user
  - name: dave-active
    when: { users: [dave], account_status: active }
    effect: warn
    reason: account_active
  - name: night-shift
    when: { clients: [night], not: { time: { timezone: UTC, from: "22:00", to: "06:00" } } }
    effect: deny
    reason: outside_night_shift
  - name: auditors-read-only
    when: { any: [{ users: [carol] }, { groups: [auditors] }] }
    effect: allow
    constraints: { scopes: [read] }
`,
  'test-policy.yaml',
)

const DEFAULT_DENY = compilePolicyText(
  `
version: 1
default_effect: deny
include_baseline: false
rules:
  - name: only-cli
    when: { clients: [cli] }
    effect: allow
`,
  'default-deny.yaml',
)

const NO_BASELINE = compilePolicyText('version: 1\ninclude_baseline: false\n', 'no-baseline.yaml')

type FactsInput = Partial<Omit<PolicyFacts, 'client' | 'user' | 'request' | 'approver' | 'posture' | 'device'>> & {
  client?: string
  tier?: PolicyFacts['client']['tier']
  user?: Partial<NonNullable<PolicyFacts['user']>> | null
  request?: Partial<NetworkFacts>
  approver?: Partial<NetworkFacts> | null
  posture?: PostureFacts
  registered?: boolean | null
}

const HOME: NetworkFacts = { ip: '198.51.100.10', country: 'DE', asn: 3320, asOrg: 'Deutsche Telekom' }
const PHONE: NetworkFacts = { ip: '198.51.100.77', country: 'DE', asn: 3320, asOrg: 'Deutsche Telekom' }
const ABROAD: NetworkFacts = { ip: '203.0.113.9', country: 'US', asn: 7922, asOrg: 'Comcast' }
const UNKNOWN: NetworkFacts = { ip: '203.0.113.50', country: null, asn: null, asOrg: null }
const COMPLIANT: PostureFacts = { status: 'valid', managed: true, diskEncrypted: true, osPatchAgeDays: 3 }

function facts(i: FactsInput = {}): PolicyFacts {
  const { client, tier, user, request, approver, posture, registered, ...rest } = i
  return {
    phase: 'approval',
    now: WED_NOON_BERLIN,
    mfaDone: false,
    client: { id: client ?? 'app', tier: tier ?? 'standard' },
    user: user === null ? null : { username: 'alice', groups: ['staff'], risk: 0, disabled: false, ...user },
    request: { ...HOME, ...request },
    approver: approver === null ? null : { ...PHONE, ...approver },
    posture: posture ?? { status: 'absent' },
    device: { jkt: registered === undefined ? null : 'jkt-1', registered: registered ?? null },
    ...rest,
  }
}

interface Row {
  name: string
  policy?: CompiledPolicy
  facts: FactsInput
  decision: 'allow' | 'deny' | 'step_up'
  reasons: string[]
  rules?: string[]
  constraints?: Partial<Constraints>
}

const BASELINE_ROWS: Row[] = [
  { name: 'standard app, same network: allowed by default', facts: {}, decision: 'allow', reasons: ['default_allow'] },
  {
    name: 'standard app, approver in another country: warns, still allowed',
    facts: { approver: ABROAD },
    decision: 'allow',
    reasons: ['proximity_mismatch', 'default_allow'],
    rules: ['baseline.proximity-warn'],
  },
  { name: 'low app, other ASN: warns', facts: { tier: 'low', approver: { asn: 1234 } }, decision: 'allow', reasons: ['proximity_mismatch', 'default_allow'] },
  { name: 'standard app, geo unknown: no warning', facts: { approver: UNKNOWN }, decision: 'allow', reasons: ['default_allow'] },
  { name: 'high app, other ASN: denied', facts: { tier: 'high', approver: { asn: 1234 } }, decision: 'deny', reasons: ['proximity_mismatch'], rules: ['baseline.proximity-deny'] },
  { name: 'high app, other country: denied', facts: { tier: 'high', approver: ABROAD }, decision: 'deny', reasons: ['proximity_mismatch'] },
  { name: 'high app, geo unknown counts as mismatch: denied', facts: { tier: 'high', approver: UNKNOWN }, decision: 'deny', reasons: ['proximity_mismatch'] },
  {
    name: 'high app, same IP with geo unknown: same network, allowed',
    facts: { tier: 'high', request: { ip: '127.0.0.1', country: null, asn: null }, approver: { ip: '127.0.0.1', country: null, asn: null } },
    decision: 'allow',
    reasons: ['default_allow'],
  },
  { name: 'high app, same country and ASN: allowed', facts: { tier: 'high' }, decision: 'allow', reasons: ['default_allow'] },
  { name: 'admin app without MFA: step_up', facts: { tier: 'admin' }, decision: 'step_up', reasons: ['mfa_required'], rules: ['baseline.admin-mfa'] },
  { name: 'admin app with MFA in this sign-in: allowed', facts: { tier: 'admin', mfaDone: true }, decision: 'allow', reasons: ['mfa_completed'] },
  {
    name: 'admin app with MFA but another country: denied',
    facts: { tier: 'admin', mfaDone: true, approver: ABROAD },
    decision: 'deny',
    reasons: ['mfa_completed', 'proximity_mismatch'],
  },
  { name: 'admin app without MFA and other country: deny beats step_up', facts: { tier: 'admin', approver: ABROAD }, decision: 'deny', reasons: ['mfa_required', 'proximity_mismatch'] },
  { name: 'disabled account at refresh: denied', facts: { phase: 'refresh', user: { disabled: true } }, decision: 'deny', reasons: ['user_disabled'], rules: ['account_status'] },
  {
    name: 'invalid posture assertion is reported',
    facts: { posture: { status: 'invalid', error: 'signature' } },
    decision: 'allow',
    reasons: ['posture_invalid', 'default_allow'],
  },
  { name: 'include_baseline: false turns proximity off', policy: NO_BASELINE, facts: { tier: 'high', approver: ABROAD }, decision: 'allow', reasons: ['default_allow'] },
  { name: 'default_effect deny: unmatched request denied', policy: DEFAULT_DENY, facts: { client: 'other' }, decision: 'deny', reasons: ['default_deny'] },
  { name: 'default_effect deny: an allow rule lets it through', policy: DEFAULT_DENY, facts: { client: 'cli' }, decision: 'allow', reasons: ['allowed_by_rule'], rules: ['only-cli'] },
]

const P = TEST_POLICY
const RULE_ROWS: Row[] = [
  // flow block
  { name: 'flow block: client', policy: P, facts: { client: 'blocked-app', user: null, approver: null }, decision: 'deny', reasons: ['device_flow_blocked_client'], rules: ['block_device_flow'] },
  { name: 'flow block: user', policy: P, facts: { user: { username: 'eve' } }, decision: 'deny', reasons: ['device_flow_blocked_user'] },
  { name: 'flow block: group', policy: P, facts: { user: { groups: ['staff', 'contractors'] } }, decision: 'deny', reasons: ['device_flow_blocked_group'] },
  // user risk → deny / step_up
  { name: 'user risk 85: denied', policy: P, facts: { user: { risk: 85 } }, decision: 'deny', reasons: ['user_risk_too_high'] },
  { name: 'user risk 80 (inclusive bound): denied', policy: P, facts: { user: { risk: 80 } }, decision: 'deny', reasons: ['user_risk_too_high'] },
  { name: 'user risk 50 without MFA: step_up', policy: P, facts: { user: { risk: 50 } }, decision: 'step_up', reasons: ['mfa_required'], rules: ['step-up-medium-risk'] },
  { name: 'user risk 50 with MFA: allowed', policy: P, facts: { user: { risk: 50 }, mfaDone: true }, decision: 'allow', reasons: ['mfa_completed'] },
  { name: 'user risk 39: allowed', policy: P, facts: { user: { risk: 39 } }, decision: 'allow', reasons: ['default_allow'] },
  // posture + time + constraints (deploy)
  {
    name: 'deploy: compliant posture in office hours: allowed with constraints',
    policy: P,
    facts: { client: 'deploy', posture: COMPLIANT },
    decision: 'allow',
    reasons: ['allowed_by_rule'],
    rules: ['deploy-constraints'],
    constraints: { accessTokenTtlSeconds: 300, refreshAllowed: false, dpopRequired: true, scopes: ['deploy'] },
  },
  { name: 'deploy: no posture: denied', policy: P, facts: { client: 'deploy' }, decision: 'deny', reasons: ['posture_noncompliant', 'allowed_by_rule'] },
  { name: 'deploy: unmanaged device: denied', policy: P, facts: { client: 'deploy', posture: { ...COMPLIANT, managed: false } }, decision: 'deny', reasons: ['posture_noncompliant', 'allowed_by_rule'] },
  { name: 'deploy: unencrypted disk: denied', policy: P, facts: { client: 'deploy', posture: { ...COMPLIANT, diskEncrypted: false } }, decision: 'deny', reasons: ['posture_noncompliant', 'allowed_by_rule'] },
  { name: 'deploy: patches 45 days old: denied', policy: P, facts: { client: 'deploy', posture: { ...COMPLIANT, osPatchAgeDays: 45 } }, decision: 'deny', reasons: ['posture_noncompliant', 'allowed_by_rule'] },
  { name: 'deploy: patches exactly 30 days old: allowed', policy: P, facts: { client: 'deploy', posture: { ...COMPLIANT, osPatchAgeDays: 30 } }, decision: 'allow', reasons: ['allowed_by_rule'] },
  {
    name: 'deploy: badly signed posture: denied',
    policy: P,
    facts: { client: 'deploy', posture: { status: 'invalid', error: 'signature' } },
    decision: 'deny',
    reasons: ['posture_invalid', 'posture_noncompliant', 'allowed_by_rule'],
  },
  { name: 'deploy: Saturday: denied', policy: P, facts: { client: 'deploy', posture: COMPLIANT, now: at('2025-06-07T10:00:00Z') }, decision: 'deny', reasons: ['outside_business_hours', 'allowed_by_rule'] },
  { name: 'deploy: 19:00 Berlin (end exclusive): denied', policy: P, facts: { client: 'deploy', posture: COMPLIANT, now: at('2025-06-04T17:00:00Z') }, decision: 'deny', reasons: ['outside_business_hours', 'allowed_by_rule'] },
  { name: 'deploy: 07:59 Berlin: denied', policy: P, facts: { client: 'deploy', posture: COMPLIANT, now: at('2025-06-04T05:59:00Z') }, decision: 'deny', reasons: ['outside_business_hours', 'allowed_by_rule'] },
  { name: 'deploy: 08:00 Berlin (start inclusive): allowed', policy: P, facts: { client: 'deploy', posture: COMPLIANT, now: at('2025-06-04T06:00:00Z') }, decision: 'allow', reasons: ['allowed_by_rule'] },
  { name: 'deploy: 08:30 Berlin in winter (UTC+1): allowed', policy: P, facts: { client: 'deploy', posture: COMPLIANT, now: at('2025-01-15T07:30:00Z') }, decision: 'allow', reasons: ['allowed_by_rule'] },
  { name: 'night shift: 23:30 UTC inside wrapped window: allowed', policy: P, facts: { client: 'night', now: at('2025-06-04T23:30:00Z') }, decision: 'allow', reasons: ['default_allow'] },
  { name: 'night shift: 12:00 UTC outside wrapped window: denied', policy: P, facts: { client: 'night' }, decision: 'deny', reasons: ['outside_night_shift'] },
  // requesting network
  { name: 'request from a sanctioned country: denied (and the country mismatch warns)', policy: P, facts: { request: { country: 'KP' } }, decision: 'deny', reasons: ['proximity_mismatch', 'network_blocked_country'] },
  {
    name: 'reader: request inside 10/8: allowed with combined constraints',
    policy: P,
    facts: { client: 'reader', request: { ip: '10.1.2.3' } },
    decision: 'allow',
    reasons: ['allowed_by_rule', 'allowed_by_rule'],
    rules: ['reader-short-without-mfa', 'reader-cap'],
    constraints: { accessTokenTtlSeconds: 600, maxSessionSeconds: 3600, refreshMaxLifetimeSeconds: 7200, scopes: ['read', 'write'], refreshAllowed: true },
  },
  { name: 'reader: request from allowed ASN: allowed', policy: P, facts: { client: 'reader', request: { asn: 64500 }, approver: { asn: 64500 } }, decision: 'allow', reasons: ['allowed_by_rule', 'allowed_by_rule'] },
  { name: 'reader: request outside allowlist: denied', policy: P, facts: { client: 'reader' }, decision: 'deny', reasons: ['network_outside_allowlist', 'allowed_by_rule', 'allowed_by_rule'] },
  {
    name: 'reader with MFA: the no-MFA rule does not match',
    policy: P,
    facts: { client: 'reader', request: { ip: '10.9.9.9' }, mfaDone: true },
    decision: 'allow',
    reasons: ['allowed_by_rule'],
    rules: ['reader-cap'],
    constraints: { accessTokenTtlSeconds: 600, maxSessionSeconds: null },
  },
  // approver network + groups
  { name: 'console: admin approving from the VPN: allowed', policy: P, facts: { client: 'console', user: { groups: ['admins'] }, approver: { ip: '192.0.2.5' } }, decision: 'allow', reasons: ['default_allow'] },
  { name: 'console: approver outside the VPN: denied', policy: P, facts: { client: 'console', user: { groups: ['admins'] } }, decision: 'deny', reasons: ['approver_network_outside_allowlist'] },
  { name: 'console: approver not in admins: denied', policy: P, facts: { client: 'console', approver: { ip: '192.0.2.5' } }, decision: 'deny', reasons: ['group_not_allowed'] },
  // registered device
  { name: 'fleet: unregistered device key: denied', policy: P, facts: { client: 'fleet', registered: false }, decision: 'deny', reasons: ['device_not_registered'] },
  { name: 'fleet: no DPoP key (unknown) counts as unregistered: denied', policy: P, facts: { client: 'fleet' }, decision: 'deny', reasons: ['device_not_registered'] },
  { name: 'fleet: registered device: allowed', policy: P, facts: { client: 'fleet', registered: true }, decision: 'allow', reasons: ['default_allow'] },
  // profiles
  {
    name: 'shared_device profile: no refresh, 15 min, one session',
    policy: P,
    facts: { client: 'shared-tv', approver: { ip: '198.51.100.99' } },
    decision: 'allow',
    reasons: ['profile_shared_device', 'default_allow'],
    constraints: { refreshAllowed: false, accessTokenTtlSeconds: 900, singleSession: true },
  },
  { name: 'shared_device + subnet proximity rule: other subnet denied', policy: P, facts: { client: 'shared-tv', approver: { ip: '198.51.101.5' } }, decision: 'deny', reasons: ['profile_shared_device', 'not_same_network'] },
  { name: 'kiosk profile: constraints apply', policy: P, facts: { client: 'kiosk-app' }, decision: 'allow', reasons: ['profile_kiosk', 'default_allow'], constraints: { refreshAllowed: false, singleSession: true } },
  // warn, account status, any
  { name: 'warn rule: reported, still allowed', policy: P, facts: { user: { username: 'bob' } }, decision: 'allow', reasons: ['watched_user', 'default_allow'], rules: ['watch-bob'] },
  { name: 'account_status active matches an enabled account', policy: P, facts: { user: { username: 'dave' } }, decision: 'allow', reasons: ['account_active', 'default_allow'] },
  { name: 'account_status: a disabled account is denied before rules', policy: P, facts: { user: { username: 'dave', disabled: true }, phase: 'refresh' }, decision: 'deny', reasons: ['user_disabled'] },
  { name: 'any: carol by name narrows scopes', policy: P, facts: { user: { username: 'carol' } }, decision: 'allow', reasons: ['allowed_by_rule'], constraints: { scopes: ['read'] } },
  { name: 'any: auditors group narrows scopes', policy: P, facts: { user: { groups: ['auditors'] } }, decision: 'allow', reasons: ['allowed_by_rule'], constraints: { scopes: ['read'] } },
  { name: 'baseline still applies inside a configured policy', policy: P, facts: { tier: 'admin' }, decision: 'step_up', reasons: ['mfa_required'], rules: ['baseline.admin-mfa'] },
]

describe('policy evaluate(): decisions and reason codes', () => {
  for (const row of [...BASELINE_ROWS, ...RULE_ROWS]) {
    it(`${row.name} → ${row.decision} [${row.reasons.join(', ')}]`, () => {
      const d = evaluate(row.policy ?? BUILT_IN_POLICY, facts(row.facts))
      expect(d.decision).toBe(row.decision)
      expect(d.reasons.map((r) => r.code)).toEqual(row.reasons)
      if (row.rules) expect(d.matchedRules).toEqual(row.rules)
      if (row.constraints) expect(d.constraints).toMatchObject(row.constraints)
      // The decision is a record: JSON-serialisable, facts included.
      expect(JSON.parse(JSON.stringify(d))).toMatchObject({ decision: row.decision, facts: { client: { id: facts(row.facts).client.id } } })
    })
  }

  it('reports deny messages for the approver and the rule behind each reason', () => {
    const d = evaluate(TEST_POLICY, facts({ user: { risk: 90 } }))
    expect(d.reasons).toEqual([{ code: 'user_risk_too_high', rule: 'deny-high-risk-users', effect: 'deny', message: 'Your account is under review.' }])
  })

  it('names the attributes in which requester and approver differ', () => {
    const d = evaluate(BUILT_IN_POLICY, facts({ approver: ABROAD }))
    expect(d.proximityMismatch).toEqual(['ip', 'subnet', 'asn', 'country'])
    expect(d.proximity).toEqual({ sameIp: false, sameSubnet: false, sameAsn: false, sameCountry: false })
  })

  it('is pure: the same input gives the same output and the facts are not changed', () => {
    const f = facts({ tier: 'admin', approver: ABROAD })
    const before = JSON.stringify(f)
    expect(evaluate(BUILT_IN_POLICY, f)).toEqual(evaluate(BUILT_IN_POLICY, f))
    expect(JSON.stringify(f)).toBe(before)
  })

  it('exposes per-client settings: kiosk requires a typed code and a 3-minute device code', () => {
    expect(TEST_POLICY.clientSettings('kiosk-app')).toEqual({ profile: 'kiosk', requireTypedCode: true, confirmCode: undefined, deviceCodeTtlSeconds: 180, requireBoundDeviceCode: false, refreshFromNewLocation: null })
    expect(TEST_POLICY.clientSettings('typed-app')).toMatchObject({ profile: null, requireTypedCode: true, confirmCode: true })
    expect(TEST_POLICY.clientSettings('unknown').requireTypedCode).toBe(false)
  })
})

describe('policy file validation: errors name the path', () => {
  const bad: [string, string, RegExp][] = [
    ['unknown tier', 'version: 1\nrules:\n  - { name: r, effect: deny, when: { tiers: [medium] } }', /rules\[0\]\.when\.tiers\[0\]/],
    ['bad CIDR', 'version: 1\nrules:\n  - { name: r, effect: deny, when: { request_network: { cidrs: [10.0.0.0/99] } } }', /rules\[0\]\.when\.request_network\.cidrs/],
    ['unknown key', 'version: 1\nrules:\n  - { name: r, effect: deny, when: { colour: red } }', /rules\[0\]\.when/],
    ['bad time zone', 'version: 1\nrules:\n  - { name: r, effect: deny, when: { time: { timezone: Mars/Olympus } } }', /rules\[0\]\.when\.time\.timezone: unknown IANA time zone/],
    ['duplicate rule', 'version: 1\nrules:\n  - { name: r, effect: warn }\n  - { name: r, effect: warn }', /rules\[1\]\.name: duplicate rule name "r"/],
    ['constraints on deny', 'version: 1\nrules:\n  - { name: r, effect: deny, constraints: { refresh: false } }', /rules\[0\]\.constraints: only an allow rule/],
    ['bad effect', 'version: 1\nrules:\n  - { name: r, effect: maybe }', /rules\[0\]\.effect/],
    ['missing version', 'rules: []', /version/],
    ['bad reason code', 'version: 1\nrules:\n  - { name: r, effect: warn, reason: Not-Snake }', /rules\[0\]\.reason/],
    ['bad profile', 'version: 1\nclients:\n  tv: { profile: hotel }', /clients\.tv\.profile/],
    ['not YAML', 'version: [1', /not valid YAML/],
  ]
  for (const [name, text, pattern] of bad) {
    it(`refuses ${name}`, () => {
      expect(() => compilePolicyText(text, 'p.yaml')).toThrow(PolicyError)
      expect(() => compilePolicyText(text, 'p.yaml')).toThrow(pattern)
    })
  }
  it('accepts the example policy file', async () => {
    const { readFileSync } = await import('node:fs')
    const text = readFileSync(new URL('../examples/policy.yaml', import.meta.url), 'utf8')
    expect(compilePolicyText(text, 'examples/policy.yaml').rules.length).toBeGreaterThan(3)
  })
})

describe('policy reload', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-policy-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const denyAll = 'version: 1\ndefault_effect: deny\ninclude_baseline: false\n'
  const allowAll = 'version: 1\ninclude_baseline: false\n'

  it('swaps to a valid new file and keeps the old policy when the new file is invalid', async () => {
    const path = join(dir, 'reload.yaml')
    writeFileSync(path, allowAll)
    const errors: object[] = []
    const holder = await PolicyHolder.open(path, { watch: false, reloadOnSighup: false, logger: { info() {}, error: (o) => errors.push(o) } })
    try {
      const first = holder.current()
      expect(evaluate(first, facts()).decision).toBe('allow')
      writeFileSync(path, denyAll)
      expect(await holder.reload()).toBe(true)
      expect(evaluate(holder.current(), facts()).decision).toBe('deny')
      // A request that read the old object keeps deciding with it.
      expect(evaluate(first, facts()).decision).toBe('allow')
      writeFileSync(path, 'version: 1\nrules: [{ name: x, effect: nope }]\n')
      expect(await holder.reload()).toBe(false)
      expect(evaluate(holder.current(), facts()).decision).toBe('deny')
      expect(errors).toMatchObject([{ event: 'policy.reload_failed' }])
    } finally {
      holder.close()
    }
  })

  it('reloads when the file changes (fs.watch, debounced)', async () => {
    const path = join(dir, 'watched.yaml')
    writeFileSync(path, allowAll)
    const holder = await PolicyHolder.open(path, { reloadOnSighup: false, debounceMs: 20 })
    try {
      const before = holder.current().id
      writeFileSync(path, denyAll)
      await expect.poll(() => holder.current().id, { timeout: 5000 }).not.toBe(before)
      expect(evaluate(holder.current(), facts()).decision).toBe('deny')
    } finally {
      holder.close()
    }
  })

  it('reloads on SIGHUP', async () => {
    const path = join(dir, 'sighup.yaml')
    writeFileSync(path, allowAll)
    const holder = await PolicyHolder.open(path, { watch: false })
    try {
      writeFileSync(path, denyAll)
      process.emit('SIGHUP', 'SIGHUP')
      await expect.poll(() => evaluate(holder.current(), facts()).decision, { timeout: 5000 }).toBe('deny')
    } finally {
      holder.close()
    }
  })

  it('fails fast at start-up on an invalid file', async () => {
    const path = join(dir, 'invalid.yaml')
    writeFileSync(path, 'version: 2\n')
    await expect(PolicyHolder.open(path, { watch: false, reloadOnSighup: false })).rejects.toThrow(/version/)
  })
})

describe('device posture assertions (JWT from the device-management key)', async () => {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const other = await generateKeyPair('ES256')
  const now = WED_NOON_BERLIN
  const verifier = await createPostureVerifier({ keyText: await exportSPKI(publicKey), issuer: 'https://mdm.example', audience: 'https://auth.example', maxAgeSeconds: 3600 })
  const sign = (claims: Record<string, unknown>, key = privateKey, iat = now - 60) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setIssuer('https://mdm.example').setAudience('https://auth.example').setSubject('dev-42').setIssuedAt(iat).setExpirationTime(iat + 7200).sign(key)

  it('reads managed, disk_encrypted and os_patch_age_days from a valid assertion', async () => {
    expect(await verifier.verify(await sign({ managed: true, disk_encrypted: true, os_patch_age_days: 12 }), now)).toEqual({
      status: 'valid',
      deviceId: 'dev-42',
      managed: true,
      diskEncrypted: true,
      osPatchAgeDays: 12,
    })
  })
  it('refuses another key, an old assertion and garbage', async () => {
    expect(await verifier.verify(await sign({ managed: true }, other.privateKey), now)).toEqual({ status: 'invalid', error: 'signature' })
    expect((await verifier.verify(await sign({ managed: true }, privateKey, now - 7000), now)).status).toBe('invalid')
    expect(await verifier.verify('not.a.jwt', now)).toEqual({ status: 'invalid', error: 'malformed' })
  })
  it('accepts a JWKS as the key', async () => {
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256' }] })
    const v = await createPostureVerifier({ keyText: jwks, issuer: 'https://mdm.example', audience: 'https://auth.example', maxAgeSeconds: 3600 })
    expect((await v.verify(await sign({ managed: false }), now)).managed).toBe(false)
  })
})

describe('IP helpers and static geo lookup', () => {
  it('compares subnets for IPv4 and IPv6', () => {
    expect(isSameSubnet('198.51.100.1', '198.51.100.200', 24, 56)).toBe(true)
    expect(isSameSubnet('198.51.100.1', '198.51.101.1', 24, 56)).toBe(false)
    expect(isSameSubnet('2001:db8:0:1::1', '2001:db8:0:ff::2', 24, 56)).toBe(true)
    expect(isSameSubnet('2001:db8:0:100::1', '2001:db8::1', 24, 56)).toBe(false)
    expect(isSameSubnet('::ffff:10.0.0.1', '10.0.0.2', 24, 56)).toBe(true)
    expect(isSameSubnet('10.0.0.1', '::1', 24, 56)).toBe(false)
  })
  it('answers from configured networks first, then the fallback', () => {
    const geo = createStaticGeoLookup([{ cidr: '10.0.0.0/8', country: 'DE', asn: 64500, asOrg: 'Corp' }], createStaticGeoLookup([{ cidr: '0.0.0.0/0', country: 'US' }]))
    expect(geo.lookup('10.2.3.4')).toEqual({ country: 'DE', asn: 64500, asOrg: 'Corp' })
    expect(geo.lookup('8.8.8.8')).toEqual({ country: 'US', asn: null, asOrg: null })
    expect(geo.lookup('::1')).toEqual({ country: null, asn: null, asOrg: null })
  })
})
