/**
 * Storage of the verification pages' browser sessions (`web_sessions`). Kysely implementation:
 * `kysely/web-sessions.ts`.
 */

/** Browser session of the verification pages. */
export interface WebSessionRecord {
  /** SHA-256 (hex) of the session cookie value. */
  idHash: string
  /** Anti-CSRF synchronizer token bound to this session. */
  csrfToken: string
  /** Signed-in user, or null. */
  subject: string | null
  /** When the user signed in (epoch seconds). */
  authTime: number | null
  /** When the user completed MFA in this sign-in (epoch seconds); absent or null: not done. */
  mfaAt?: number | null
  createdAt: number
  expiresAt: number
}

/** Verification-page sessions; expired ones are deleted by `purgeExpired`. */
export interface WebSessionStore {
  createWebSession(session: WebSessionRecord): Promise<void>
  findWebSession(idHash: string, now: number): Promise<WebSessionRecord | undefined>
  deleteWebSession(idHash: string): Promise<void>
  /** Records that the session's user completed MFA at `now` (RFC 6238 TOTP). @returns false when the session is gone. */
  markWebSessionMfa(idHash: string, now: number): Promise<boolean>
  /**
   * Moves a live session's expiry to `expiresAt` (epoch seconds): the sliding inactivity deadline
   * of the console (NIST SP 800-63B-4 §2.2.3). One conditional update: a session already expired
   * at `now` stays expired.
   *
   * @returns false when the session is gone or expired.
   */
  extendWebSession(idHash: string, expiresAt: number, now: number): Promise<boolean>
  /**
   * Deletes a session that has expired at `now` (`expiresAt <= now`) and returns it, so its end
   * can be recorded exactly once: one atomic delete, so of several concurrent callers at most one
   * gets the record. A live or unknown session: undefined, nothing changed.
   */
  takeExpiredWebSession(idHash: string, now: number): Promise<WebSessionRecord | undefined>
}
