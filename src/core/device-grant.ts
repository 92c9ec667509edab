/**
 * The device grant state machine (RFC 8628 §3.4–3.5), pure.
 *
 * ```
 * pending ──approve──▶ approved ──redeem──▶ redeemed
 *    │                    │
 *    └──deny──▶ denied    └── (expiresAt passes) ──▶ expired
 * ```
 * Expiry is derived from `expiresAt`, never stored, so it needs no sweeper and holds across
 * instances. A redeemed code stays redeemed after expiry (a replay is still recognised).
 */

/** The state a poll observes. */
export type DeviceGrantState = 'pending' | 'approved' | 'denied' | 'redeemed' | 'expired'

/**
 * Effective state of a device grant at `now` (epoch seconds).
 *
 * Terminal outcomes win over expiry: a redeemed code is `redeemed` (so replays are detected) and a
 * denied code stays `denied` (the more useful answer); pending and approved codes expire at
 * `expiresAt` (an approved but unredeemed code still expires).
 */
export function deviceGrantState(grant: { status: 'pending' | 'approved' | 'denied' | 'redeemed'; expiresAt: number }, now: number): DeviceGrantState {
  if (grant.status === 'redeemed' || grant.status === 'denied') return grant.status
  return now >= grant.expiresAt ? 'expired' : grant.status
}

/** RFC 8628 §3.5: each `slow_down` adds this many seconds to the interval, for good. */
export const SLOW_DOWN_INCREMENT_SECONDS = 5
