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
}
