/**
 * Storage of conditional approval (`policy/`): the verified posture and the explained policy
 * decision of each device authorization (`device_grant_policy`), and TOTP enrolments for
 * step-up MFA (`totp_secrets`). Kysely implementation: `kysely/conditional-approval.ts`.
 */

/**
 * Conditional-approval record of one device authorization: the verified device posture from the
 * request, and the explained policy decision from the approval (`policy/`).
 */
export interface DeviceGrantPolicyRecord {
  deviceGrantId: string
  /** Verified posture facts (`PostureFacts`) as JSON text, or null when none was sent. */
  postureJson: string | null
  /** Decision at approval, or null before. */
  decision: 'allow' | 'deny' | 'step_up' | null
  /** The explained decision (`PolicyDecision`: rules, reason codes, both sides' IP/country/ASN) as JSON. */
  explanationJson: string | null
  decidedAt: number | null
}

/** Posture, decisions and TOTP enrolments of conditional approval. */
export interface ConditionalApprovalStore {
  /** Stores the verified posture of a device authorization request (JSON text). */
  saveDevicePosture(deviceGrantId: string, postureJson: string): Promise<void>
  /** Stores (or replaces) the explained policy decision of a device authorization. */
  saveDeviceGrantDecision(deviceGrantId: string, decision: 'allow' | 'deny' | 'step_up', explanationJson: string, now: number): Promise<void>
  findDeviceGrantPolicy(deviceGrantId: string): Promise<DeviceGrantPolicyRecord | undefined>
  /** Stores a user's TOTP secret (base32), replacing any previous enrolment. */
  saveTotpSecret(username: string, secret: string, now: number): Promise<void>
  findTotpSecret(username: string): Promise<{ secret: string; createdAt: number } | undefined>
}
