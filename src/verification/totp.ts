/**
 * TOTP second factor for the built-in user store (RFC 6238, SHA-1, 6 digits, 30-second steps —
 * what authenticator apps implement), with otplib.
 *
 * Secrets come from the database (`devicegate users enroll-totp`, or self-service re-enrolment by
 * a session that already completed MFA) and otherwise from configuration (`users[].mfa`). A code
 * is accepted once: the time step is recorded atomically through a store counter, so a code seen
 * over someone's shoulder cannot be replayed within its window.
 */
import { generateSecret, generateURI, verify } from 'otplib'
import type { User } from '../core/model.js'
import type { Store } from '../storage/store.js'

/** Time step in seconds (RFC 6238 §4 default X = 30). */
export const TOTP_PERIOD_SECONDS = 30
/** Codes from one step before and after are accepted (clock drift, RFC 6238 §6). */
const TOLERANCE_SECONDS = 30
/** Failed codes allowed per user in one window before the factor is locked for the window. */
export const TOTP_MAX_FAILURES = 5
export const TOTP_FAILURE_WINDOW_SECONDS = 900

/** A new random secret (160 bits, base32), per RFC 4226 §4 R6. */
export function newTotpSecret(): string {
  return generateSecret({ length: 20 })
}

/** The `otpauth://totp/…` URI an authenticator app imports (Key Uri Format). */
export function totpUri(issuerLabel: string, username: string, secret: string): string {
  return generateURI({ issuer: issuerLabel, label: username, secret, period: TOTP_PERIOD_SECONDS, digits: 6, algorithm: 'sha1' })
}

/** The user's TOTP secret: the database enrolment, else the configured one, else undefined. */
export async function findUserTotpSecret(store: Store, user: User): Promise<string | undefined> {
  return (await store.findTotpSecret(user.username))?.secret ?? user.totpSecret
}

/** Outcome of {@link checkTotpCode}. */
export type TotpCheck = 'ok' | 'invalid' | 'replayed' | 'locked'

/**
 * Checks a 6-digit code at `now` (epoch seconds): rate-limited per user, accepted once per step.
 * @param secret Base32 secret.
 */
export async function checkTotpCode(store: Store, username: string, secret: string, code: string, now: number): Promise<TotpCheck> {
  const failuresKey = `totp_fail:${username}`
  if ((await store.readCounter(failuresKey, TOTP_FAILURE_WINDOW_SECONDS, now)) >= TOTP_MAX_FAILURES) return 'locked'
  const token = code.replace(/\s+/g, '')
  let timeStep: number | undefined
  if (/^\d{6}$/.test(token)) {
    try {
      const result = await verify({ secret, token, epoch: now, period: TOTP_PERIOD_SECONDS, epochTolerance: TOLERANCE_SECONDS })
      if (result.valid) timeStep = (result as { timeStep: number }).timeStep
    } catch {
      timeStep = undefined // a malformed stored secret never verifies
    }
  }
  if (timeStep === undefined) {
    await store.incrementCounter(failuresKey, TOTP_FAILURE_WINDOW_SECONDS, now)
    return 'invalid'
  }
  // One use per (user, step): the first caller sees 1, any replay more. The counter's window is
  // derived from the step alone (same row for every caller) and outlives the code's validity
  // (step start + 60 s with the tolerance): it ends between step start + 90 s and + 210 s.
  const uses = await store.incrementCounter(`totp_used:${username}:${timeStep}`, 120, timeStep * TOTP_PERIOD_SECONDS + 90)
  return uses === 1 ? 'ok' : 'replayed'
}
