/**
 * The built-in baseline: the policy in force when none is configured, and (unless
 * `include_baseline: false`) the first rules of every configured policy.
 *
 * - `baseline.admin-mfa`: apps of tier `admin` require MFA in this sign-in (`step_up`, `mfa_required`).
 * - `baseline.proximity-deny`: for `high` and `admin` apps, a requesting device and approver in a
 *   different country or autonomous system are denied (`proximity_mismatch`); an address the IP
 *   database does not know counts as a mismatch (the same IP on both sides always matches).
 * - `baseline.proximity-warn`: for `low` and `standard` apps the same mismatch (known values only)
 *   only warns (`proximity_mismatch`), shown on the approval page.
 *
 * Profiles: `shared_device` — no refresh token, access tokens at most 15 minutes, one live session
 * per user and app. `kiosk` — the code must be typed (verification_uri_complete refused and not
 * returned), device codes live at most 3 minutes, no refresh token, access tokens at most
 * 15 minutes, one session.
 */
import type { ConstraintsFile, ProfileName, RuleFile } from './schema.js'

export const BASELINE_RULES: readonly RuleFile[] = Object.freeze([
  {
    name: 'baseline.admin-mfa',
    when: { tiers: ['admin'] },
    effect: 'step_up',
    reason: 'mfa_required',
    message: 'This app requires a second factor: enter the code from your authenticator app.',
  },
  {
    name: 'baseline.proximity-deny',
    when: { tiers: ['high', 'admin'], proximity_mismatch: { on: ['country', 'asn'], missing_geo: 'mismatch' } },
    effect: 'deny',
    reason: 'proximity_mismatch',
    message:
      'This request was started from a different network or country than the one you are using now. ' +
      'Approve only requests you started on a device you are holding; start again from the same network.',
  },
  {
    name: 'baseline.proximity-warn',
    when: { tiers: ['low', 'standard'], proximity_mismatch: { on: ['country', 'asn'], missing_geo: 'ignore' } },
    effect: 'warn',
    reason: 'proximity_mismatch',
    message: 'This request was started from a different network or country than the one you are using now.',
  },
])

/** What a built-in profile implies. */
export interface ProfileSpec {
  constraints: ConstraintsFile
  /** The code must be typed; verification_uri_complete is refused. */
  requireTypedCode: boolean
  /** Cap on the device code lifetime (`expires_in`, RFC 8628 §3.2) in seconds, or null. */
  deviceCodeTtlSeconds: number | null
}

export const PROFILE_SPECS: Readonly<Record<ProfileName, ProfileSpec>> = Object.freeze({
  shared_device: {
    constraints: { refresh: false, access_token_ttl_seconds: 900, single_session: true },
    requireTypedCode: false,
    deviceCodeTtlSeconds: null,
  },
  kiosk: {
    constraints: { refresh: false, access_token_ttl_seconds: 900, single_session: true },
    requireTypedCode: true,
    deviceCodeTtlSeconds: 180,
  },
})
