/**
 * Production implementations of the core ports and the hashing primitives every layer shares.
 * The only module (with `protocol/jose` users) that touches `node:crypto` for randomness and digests.
 */
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto'
import type { Clock, Random } from './core/ports.js'

/** Wall clock in whole epoch seconds. */
export const systemClock: Clock = { nowSeconds: () => Math.floor(Date.now() / 1000) }

/** CSPRNG from node:crypto. */
export const systemRandom: Random = {
  bytes: (n) => randomBytes(n),
  int: (max) => randomInt(max),
}

/** Hex SHA-256 of a UTF-8 string: how device codes, tokens and session ids are stored. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex')
}

/** base64url SHA-256 of a UTF-8 string (e.g. DPoP `ath`, RFC 9449 §4.2). */
export function sha256Base64Url(value: string): string {
  return createHash('sha256').update(value).digest('base64url')
}

/** A random base64url string carrying `byteLength` bytes of entropy. */
export function randomToken(random: Random, byteLength = 32): string {
  return Buffer.from(random.bytes(byteLength)).toString('base64url')
}

/** Constant-time equality of two strings (false on different lengths, without early exit on content). */
export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a)
  const bb = Buffer.from(b)
  if (ab.length !== bb.length) return false
  return timingSafeEqual(ab, bb)
}
