/**
 * The `device_code` (RFC 8628 §3.2) as devicegate issues it, and the key it is stored and looked
 * up under.
 */
import type { Random } from '../core/ports.js'
import { randomToken, sha256Hex } from '../system.js'

/** Separates the device grant's record id from the secret in a `device_code`. */
export const DEVICE_CODE_SEPARATOR = '.'

/** Random bytes in a `device_code`'s secret: 256 bits, 43 base64url characters. */
export const DEVICE_CODE_SECRET_BYTES = 32

/**
 * A record id as `recordId()` (system.ts) makes it: 12 hex digits of the creation time in
 * milliseconds, then 14 base64url characters (80 random bits).
 */
const RECORD_ID_PATTERN = /^[0-9a-f]{12}[A-Za-z0-9_-]{14}$/

/** The secret of a `device_code`: {@link DEVICE_CODE_SECRET_BYTES} bytes in base64url, unpadded. */
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/

/**
 * A new `device_code` for the device grant `id` (a `recordId()`): `<id>.<secret>`, where the
 * secret is 256 random bits in base64url (43 characters) — 70 characters in all, and the code still
 * carries 256 bits of randomness (RFC 8628 §5.2).
 *
 * @returns `code` for the client and `key`, its {@link deviceCodeLookupKey}, the only form stored.
 * @throws {TypeError} when `id` is not a record id (a programming error).
 */
export function issueDeviceCode(id: string, random: Random): { code: string; key: string } {
  const code = id + DEVICE_CODE_SEPARATOR + randomToken(random, DEVICE_CODE_SECRET_BYTES)
  const key = deviceCodeLookupKey(code)
  if (key === undefined) throw new TypeError(`device grant id ${JSON.stringify(id)} is not a record id`)
  return { code, key }
}

/**
 * The key a presented `device_code` is stored and looked up under (`DeviceGrantRecord.deviceCodeHash`):
 * the only place that turns a device code into that key, at issuance and at every poll.
 *
 * - `<id>.<secret>` (the current format): `<id>.` followed by the SHA-256 (hex) of the secret.
 *   `<id>` is the device grant's record id (`recordId()`): the store finds the grant by it, its
 *   primary key, and compares the whole key in constant time, so no index of its own is written
 *   for the code at a device authorization. The id is not a secret; the secret is still kept only
 *   as its hash (RFC 8628 §5.2: device codes are stored only as hashes), and the code still
 *   carries 256 random bits.
 * - A code without the separator (issued before: 43 base64url characters, still valid until it
 *   expires): the SHA-256 (hex) of the whole code, as before, found under a unique index of such keys.
 *
 * The two kinds of keys never collide: an old key is 64 hex digits, a new one contains a `.`.
 *
 * @param deviceCode The presented `device_code`, as received (its length bounded only by the body
 *   limit; it is hashed, never stored or echoed).
 * @returns the key, or `undefined` for a code with a separator that no issued code can match (an id
 *   or secret of the wrong shape): the caller answers it as an unknown code (`invalid_grant`).
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-5.2
 */
export function deviceCodeLookupKey(deviceCode: string): string | undefined {
  const at = deviceCode.indexOf(DEVICE_CODE_SEPARATOR)
  if (at < 0) return sha256Hex(deviceCode)
  const id = deviceCode.slice(0, at)
  const secret = deviceCode.slice(at + 1)
  if (!RECORD_ID_PATTERN.test(id) || !SECRET_PATTERN.test(secret)) return undefined
  return id + DEVICE_CODE_SEPARATOR + sha256Hex(secret)
}
