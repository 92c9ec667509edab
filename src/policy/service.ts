/**
 * The policy at run time: builds {@link PolicyFacts} from requests and stored records, and asks
 * the compiled policy in force. Everything here is cheap and in memory except the device-registry
 * check; nothing runs per poll before approval (see `protocol/policy-enforcement.ts`).
 */
import type { Client, ClientDirectory, User } from '../core/model.js'
import type { StorageClass } from '../core/storage-class.js'
import type { ClientPolicySettings, CompiledPolicy } from './compile.js'
import { compareSides, evaluate } from './evaluate.js'
import type { GeoLookup } from './geo.js'
import type { PolicySource } from './holder.js'
import type { NetworkFacts, PolicyDecision, PolicyFacts, PolicyPhase, PostureFacts } from './model.js'
import type { PostureVerifier } from './posture.js'
import { isSameDevice } from './same-device.js'
import type { ProximityAttribute } from './schema.js'

/** The trusted device registry (DPoP issue): is this key thumbprint a registered, live device? */
export interface DeviceRegistry {
  isRegisteredDevice(jkt: string): Promise<boolean>
}

/** What {@link PolicyService} needs; built by the composition root. */
export interface PolicyServiceDeps {
  source: PolicySource
  geo: GeoLookup
  /** Absent: posture assertions are recorded as `invalid` with error `not_configured`. */
  posture?: PostureVerifier | undefined
  /** Absent: registration is unknown (counts as not registered). */
  devices?: DeviceRegistry | undefined
  users: { get(username: string): User | undefined }
  clients: ClientDirectory
}

/** Input of {@link PolicyService.decide}. */
export interface DecideInput {
  phase: PolicyPhase
  /** Epoch seconds. */
  now: number
  client: Client
  /** The approver, or null when nobody is signed in. */
  username: string | null
  mfaDone: boolean
  requestIp: string
  approverIp: string | null
  posture: PostureFacts
  /** The requesting device's DPoP key thumbprint, if known. */
  dpopJkt: string | null
  /** Declared token storage (`storage_class`). Default: unknown. */
  storageClass?: StorageClass | undefined
  /** User-Agent of the device authorization request, for same-device detection. */
  requestUserAgent?: string | null | undefined
  /** User-Agent of the approving browser; absent: same-device is unknown. */
  approverUserAgent?: string | null | undefined
}

/**
 * Why a decision refuses because of the declared storage: the names of the matched
 * rules with a `storage` condition that deny, or that allow with `refresh: false`.
 */
export interface StorageRefusal {
  /** `flow`: the request is denied; `refresh`: no refresh token may be issued. */
  refuses: 'flow' | 'refresh'
  rules: string[]
  /** Reason codes of those rules. */
  codes: string[]
}

/** Parses a stored explanation; undefined when it is missing or unreadable. */
export function parseStoredDecision(json: string | null | undefined): PolicyDecision | undefined {
  if (!json) return undefined
  try {
    const d = JSON.parse(json) as PolicyDecision
    return d && typeof d === 'object' && d.facts && typeof d.facts === 'object' ? d : undefined
  } catch {
    return undefined
  }
}

export class PolicyService {
  readonly #deps: PolicyServiceDeps

  constructor(deps: PolicyServiceDeps) {
    this.#deps = deps
  }

  /** The compiled policy in force; read once per decision. */
  current(): CompiledPolicy {
    return this.#deps.source.current()
  }

  /** Per-client settings (profile, typed code, code TTL cap) of the policy in force. */
  settings(clientId: string): ClientPolicySettings {
    return this.current().clientSettings(clientId)
  }

  /**
   * The attributes (of the client's `refresh_from_new_location.on`) in which a refresh from
   * `refreshIp` differs from the device authorization request made from `requestIp`; empty when
   * the client has no such setting or nothing configured differs. Country and ASN come from the IP
   * database; unknown ones count as a change only with `missing_geo: mismatch`.
   */
  refreshLocationChanges(clientId: string, requestIp: string, refreshIp: string): ProximityAttribute[] {
    const policy = this.current()
    const rule = policy.clientSettings(clientId).refreshFromNewLocation
    if (rule === null) return []
    const request = this.network(requestIp)
    const refresh = this.network(refreshIp)
    const sides = compareSides({ request, approver: refresh } as PolicyFacts, policy.subnetPrefixV4, policy.subnetPrefixV6)
    const changed = (same: boolean | null) => same === false || (same === null && rule.missingGeo === 'mismatch')
    return rule.on.filter((attribute) => {
      switch (attribute) {
        case 'ip':
          return !sides.sameIp
        case 'subnet':
          return !sides.sameSubnet
        case 'asn':
          return changed(sides.sameAsn)
        case 'country':
          return changed(sides.sameCountry)
      }
    })
  }

  /** Whether the device flow is blocked for this client (checked at device authorization). */
  isClientBlocked(clientId: string): boolean {
    return this.current().blockDeviceFlow.clients.has(clientId)
  }

  /** Address plus what the IP database knows about it. */
  network(ip: string): NetworkFacts {
    const g = this.#deps.geo.lookup(ip)
    return { ip, country: g.country, asn: g.asn, asOrg: g.asOrg }
  }

  /** Verifies a `device_posture` assertion; never throws. */
  async verifyPosture(jwt: string, now: number): Promise<PostureFacts> {
    if (!this.#deps.posture) return { status: 'invalid', error: 'not_configured' }
    return this.#deps.posture.verify(jwt, now)
  }

  /** The approver as the policy sees them now; an unknown account counts as disabled. */
  userFacts(username: string | null): PolicyFacts['user'] {
    if (username === null) return null
    const u = this.#deps.users.get(username)
    if (!u) return { username, groups: [], risk: 100, disabled: true }
    return { username: u.username, groups: [...(u.groups ?? [])], risk: u.risk ?? 0, disabled: u.disabled }
  }

  async #deviceFacts(jkt: string | null): Promise<PolicyFacts['device']> {
    if (jkt === null || !this.#deps.devices) return { jkt, registered: null }
    return { jkt, registered: await this.#deps.devices.isRegisteredDevice(jkt) }
  }

  /** Builds the facts and evaluates them against `policy` (default: the policy in force). */
  async decide(input: DecideInput, policy: CompiledPolicy = this.current()): Promise<PolicyDecision> {
    const facts: PolicyFacts = {
      phase: input.phase,
      now: input.now,
      client: { id: input.client.id, tier: input.client.riskTier ?? 'standard' },
      user: this.userFacts(input.username),
      mfaDone: input.mfaDone,
      request: this.network(input.requestIp),
      approver: input.approverIp === null ? null : this.network(input.approverIp),
      posture: input.posture,
      device: await this.#deviceFacts(input.dpopJkt),
      storage: input.storageClass ?? 'unknown',
      sameDevice:
        input.approverIp === null || input.approverUserAgent === undefined
          ? null
          : isSameDevice({ requestIp: input.requestIp, requestUserAgent: input.requestUserAgent, approverIp: input.approverIp, approverUserAgent: input.approverUserAgent }),
    }
    return evaluate(policy, facts)
  }

  /** Whether any rule of the policy in force names a `storage` condition (skip storage work otherwise). */
  hasStorageRules(): boolean {
    return this.current().rules.some((r) => r.usesStorage)
  }

  /**
   * Decides at the Device Authorization Request (RFC 8628 §3.1), before anyone approves: nobody
   * is signed in and the approver is unknown, so only rules about the client, the request's
   * network, posture, device key, time and declared storage can match. Used to refuse the flow
   * at once for storage a rule does not accept; other denials wait for the approval.
   */
  decideAtAuthorization(input: Omit<DecideInput, 'phase' | 'username' | 'mfaDone' | 'approverIp' | 'approverUserAgent'>): Promise<PolicyDecision> {
    return this.decide({ ...input, phase: 'authorization', username: null, mfaDone: false, approverIp: null })
  }

  /**
   * Whether `decision` refuses the flow or refresh because of the declared storage: a matched
   * deny rule, or a matched allow rule with `refresh: false`, whose conditions name `storage`.
   * @returns undefined when storage played no part in a refusal.
   */
  storageRefusal(decision: PolicyDecision): StorageRefusal | undefined {
    const rules = this.current().rules.filter((r) => r.usesStorage && decision.matchedRules.includes(r.name))
    const deny = rules.filter((r) => r.effect === 'deny')
    if (decision.decision === 'deny' && deny.length > 0) return { refuses: 'flow', rules: deny.map((r) => r.name), codes: deny.map((r) => r.reason) }
    const noRefresh = rules.filter((r) => r.effect === 'allow' && r.constraints?.refresh === false)
    if (!decision.constraints.refreshAllowed && noRefresh.length > 0)
      return { refuses: 'refresh', rules: noRefresh.map((r) => r.name), codes: noRefresh.map((r) => r.reason) }
    return undefined
  }

  /**
   * Decides again for a stored approval (redemption, refresh): the approval-time facts about both
   * networks, the posture, MFA and same-device facts are kept; the declared storage is the
   * latest one when given; the account (status, groups, risk), the client's tier,
   * the device registration, the time and the policy are current.
   */
  async reevaluate(
    stored: PolicyDecision,
    input: { phase: PolicyPhase; now: number; client: Client; dpopJkt: string | null; storageClass?: StorageClass | undefined },
  ): Promise<PolicyDecision> {
    const f = stored.facts
    const facts: PolicyFacts = {
      ...f,
      phase: input.phase,
      now: input.now,
      client: { id: input.client.id, tier: input.client.riskTier ?? 'standard' },
      user: this.userFacts(f.user?.username ?? null),
      device: await this.#deviceFacts(input.dpopJkt ?? f.device.jkt),
      // The storage is the latest declaration (a refresh may declare it again).
      storage: input.storageClass ?? f.storage ?? 'unknown',
      sameDevice: f.sameDevice ?? null,
    }
    return evaluate(this.current(), facts)
  }
}
