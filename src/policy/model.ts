/**
 * Facts a policy decides on, and the decision it returns. Both are plain JSON-serialisable data:
 * the decision, with its facts, is stored with the device grant as the explanation.
 */
import type { StorageClass } from '../core/storage-class.js'
import type { Effect, ProfileName, ProximityAttribute, RiskTier } from './schema.js'

/** Where one side of the flow is, as far as its address and the IP database tell. */
export interface NetworkFacts {
  ip: string
  /** ISO 3166-1 alpha-2, or null when the IP database does not know the address. */
  country: string | null
  /** Autonomous system number, or null when unknown. */
  asn: number | null
  /** Name of the autonomous system's organisation, or null. */
  asOrg: string | null
}

/** Verified claims of a device posture assertion (a JWT from the device-management system). */
export interface PostureFacts {
  /** `absent` (none sent), `valid` (signature, issuer, audience and age verified), `invalid`. */
  status: 'absent' | 'valid' | 'invalid'
  /** Why an assertion was invalid (`signature`, `expired`, `too_old`, `not_configured`, …). */
  error?: string
  /** JWT `sub`: the device identifier in the device-management system. */
  deviceId?: string
  managed?: boolean
  diskEncrypted?: boolean
  /** Days since the OS last received security patches. */
  osPatchAgeDays?: number
}

/** Where in a grant's life the policy is evaluated. */
export type PolicyPhase = 'authorization' | 'approval' | 'redemption' | 'refresh' | 'explain'

/** Everything the policy can look at. */
export interface PolicyFacts {
  phase: PolicyPhase
  /** Evaluation time, epoch seconds. */
  now: number
  client: { id: string; tier: RiskTier }
  /** The approver; null before anyone signed in (device authorization). */
  user: { username: string; groups: string[]; risk: number; disabled: boolean } | null
  /** The approver completed MFA in this sign-in (RFC 8176 `otp`). */
  mfaDone: boolean
  /** The requesting device (device authorization request). */
  request: NetworkFacts
  /** The approving browser; null when not known. */
  approver: NetworkFacts | null
  posture: PostureFacts
  /** The requesting device's DPoP key (RFC 7638 thumbprint) and whether it is registered; null = unknown. */
  device: { jkt: string | null; registered: boolean | null }
  /**
   * The client's declared token storage (`storage_class`). Absent in decisions stored
   * before it existed: read as `unknown`.
   */
  storage?: StorageClass
  /**
   * Whether the approving browser runs on the requesting machine; null when it
   * cannot be told or before approval. Absent in older stored decisions: null.
   */
  sameDevice?: boolean | null
}

/** Requester and approver compared. null = the IP database cannot tell. */
export interface ProximityFacts {
  sameIp: boolean
  sameSubnet: boolean
  sameAsn: boolean | null
  sameCountry: boolean | null
}

/** One reason for a decision: a stable snake_case code and the rule that produced it. */
export interface Reason {
  code: string
  rule: string
  effect: Effect
  /** Text for the approver, when the rule has one. */
  message?: string
}

/** Effective constraints on the tokens of an allowed request; the strictest value of every source. */
export interface Constraints {
  /** Access-token lifetime cap in seconds, or null for the client's own. */
  accessTokenTtlSeconds: number | null
  refreshAllowed: boolean
  /** Refresh-token family lifetime cap in seconds, or null. */
  refreshMaxLifetimeSeconds: number | null
  /** Scopes the tokens may carry at most, or null for no narrowing. */
  scopes: string[] | null
  dpopRequired: boolean
  /** Whole-session lifetime cap in seconds, or null. */
  maxSessionSeconds: number | null
  /** At most one live token family per user and client. */
  singleSession: boolean
}

/** The result of {@link evaluate}. */
export interface PolicyDecision {
  decision: 'allow' | 'deny' | 'step_up'
  /** In rule order; warnings included. */
  reasons: Reason[]
  /** Names of every rule that matched, in order. */
  matchedRules: string[]
  constraints: Constraints
  /** The client's profile, if any. */
  profile: ProfileName | null
  proximity: ProximityFacts
  /** Attributes in which requester and approver differ (known values only). */
  proximityMismatch: ProximityAttribute[]
  facts: PolicyFacts
  /** Identifies the policy that decided (`sha256:…` of its source, or `built-in`). */
  policyId: string
}

/** Constraints that constrain nothing. */
export const NO_CONSTRAINTS: Readonly<Constraints> = Object.freeze({
  accessTokenTtlSeconds: null,
  refreshAllowed: true,
  refreshMaxLifetimeSeconds: null,
  scopes: null,
  dpopRequired: false,
  maxSessionSeconds: null,
  singleSession: false,
})
