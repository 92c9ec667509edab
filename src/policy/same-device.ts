/**
 * Same-device detection for the device flow.
 *
 * The device flow is a cross-device flow: the device that asks for tokens and the browser that
 * approves are meant to be different machines. RFC 10027 (Cross-Device Flows, BCP 247) warns that
 * using a cross-device flow where a same-device flow would fit widens the attack surface (consent
 * phishing) for no gain; when the approving browser runs on the requesting machine, the tool
 * should use a browser-based flow (authorization code with PKCE, RFC 7636, with a loopback
 * redirect, RFC 8252 §7.3) instead.
 *
 * devicegate judges "same machine" from what both requests show: the same client address and the
 * same operating-system platform in both User-Agent headers. Both must hold; when either side does
 * not name its platform the answer is `null` (unknown), never `true`, so a NAT shared by a phone
 * and a laptop (same address, different platforms) does not count.
 */
import Bowser from 'bowser'
import { canonicalIp } from './net.js'

/** Platforms devicegate tells apart. */
export type Platform = 'windows' | 'macos' | 'linux' | 'ios' | 'android' | 'chromeos' | 'bsd'

/**
 * Node-style `process.platform` names in a product comment, as CLIs and the devicegate SDK send
 * them: `devicegate-client/0.1.0 (linux; x64) node/20.11.0`.
 */
const NODE_PLATFORMS: Readonly<Record<string, Platform>> = {
  linux: 'linux',
  darwin: 'macos',
  win32: 'windows',
  freebsd: 'bsd',
  openbsd: 'bsd',
  netbsd: 'bsd',
}

const BOWSER_PLATFORMS: Readonly<Record<string, Platform>> = {
  Windows: 'windows',
  macOS: 'macos',
  Linux: 'linux',
  iOS: 'ios',
  iPadOS: 'ios',
  Android: 'android',
  'Chrome OS': 'chromeos',
}

/**
 * The operating-system platform a User-Agent names, or null when it names none (`curl/8.4.0`,
 * `node`). Browsers are parsed with bowser; tools that put `process.platform` in a product
 * comment (`(darwin; arm64)`) are recognised too.
 */
export function platformOf(userAgent: string | null | undefined): Platform | null {
  if (!userAgent) return null
  const comment = /\((linux|darwin|win32|freebsd|openbsd|netbsd)[;)\s]/i.exec(userAgent)
  if (comment) return NODE_PLATFORMS[comment[1]!.toLowerCase()] ?? null
  const name = Bowser.parse(userAgent.slice(0, 512)).os.name
  return name === undefined ? null : (BOWSER_PLATFORMS[name] ?? null)
}

/** The two sides of one approval. */
export interface ApprovalSides {
  requestIp: string
  requestUserAgent: string | null | undefined
  approverIp: string
  approverUserAgent: string | null | undefined
}

/**
 * Whether the approving browser runs on the requesting machine: same address (canonical form, so
 * `::ffff:10.0.0.1` equals `10.0.0.1`) and the same platform in both User-Agents.
 *
 * @returns true (same machine), false (different address, or both platforms known and different),
 *   or null (same address but a platform unknown on one side: cannot tell).
 */
export function isSameDevice(sides: ApprovalSides): boolean | null {
  if (canonicalIp(sides.requestIp) !== canonicalIp(sides.approverIp)) return false
  const a = platformOf(sides.requestUserAgent)
  const b = platformOf(sides.approverUserAgent)
  if (a === null || b === null) return null
  return a === b
}

/** The advice shown wherever same-device use is reported. */
export const SAME_DEVICE_ADVICE =
  'The approving browser ran on the requesting machine: this tool would fit a browser-based sign-in (authorization code with PKCE and a loopback redirect, RFC 8252) instead of the device flow (RFC 10027, BCP 247).'
