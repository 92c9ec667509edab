/**
 * The second factor (RFC 6238 TOTP) of the verification pages: step-up during an approval when
 * the policy asks for it, and self-service re-enrolment of the authenticator by a session that
 * completed the second factor in this sign-in. A password alone never adds an authenticator.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6238
 */
import { normalizeUserCode } from '../core/user-code.js'
import type { Store } from '../storage/store.js'
import type { Approval, Review } from './approval.js'
import type { CodeEntry, CodeLookupFailure } from './code-entry.js'
import type { VerificationLogger } from './logger.js'
import { isMfaDone, type Sessions, type WebSession } from './sessions.js'
import { checkTotpCode, findUserTotpSecret, newTotpSecret, totpUri, type TotpCheck } from './totp.js'

/** Outcome of {@link StepUp.stepUp}. */
export type StepUpOutcome =
  | { kind: 'sign_in_required'; userCode: string | undefined }
  | CodeLookupFailure
  /** No authenticator for this person; one is never offered here (403). */
  | { kind: 'not_enrolled' }
  /** Wrong, replayed or locked-out code; with the code's review (policy re-evaluated) when there was one. */
  | { kind: 'failed'; result: Exclude<TotpCheck, 'ok'>; review: Review | undefined }
  /** `mfa_at` recorded; the review again (now after MFA), or none when stepping up for re-enrolment. */
  | { kind: 'completed'; review: Review | undefined }

/** Outcome of {@link StepUp.startEnrolment} and {@link StepUp.enrol}. */
export type EnrolmentOutcome =
  | { kind: 'sign_in_required' }
  /** This sign-in has not completed the second factor. */
  | { kind: 'mfa_required' }
  /** A secret to add to the authenticator app (new, or the one being confirmed after a wrong code). */
  | { kind: 'ready'; secret: string; uri: string; mismatch: boolean }
  | { kind: 'saved' }

export interface StepUpDeps {
  store: Store
  sessions: Sessions
  codeEntry: CodeEntry
  approval: Approval
  /** Issuer name shown in authenticator apps. Default: devicegate. */
  totpIssuerLabel?: string | undefined
  logger: VerificationLogger
}

export function createStepUp(deps: StepUpDeps) {
  const { store, logger } = deps
  const issuerLabel = deps.totpIssuerLabel ?? 'devicegate'

  return {
    /**
     * Checks a TOTP code for the signed-in person and records `mfa_at` on the session. With a user
     * code, the code goes through the code-entry limiter and lookup first, and the review is
     * returned again with the policy evaluated for the new state.
     */
    async stepUp(input: { session: WebSession; rawCode: string | undefined; totp: string; ip: string }, now: number): Promise<StepUpOutcome> {
      const { session, rawCode, ip } = input
      if (session.user === undefined) return { kind: 'sign_in_required', userCode: rawCode === undefined ? undefined : normalizeUserCode(rawCode) }
      const signedIn = { ...session, user: session.user }
      const user = session.user
      const found = rawCode === undefined ? undefined : await deps.codeEntry.lookUp({ session, ip, source: 'typed' }, rawCode, now)
      if (found !== undefined && found.kind !== 'found') return found
      // Another session's open review: refused before the TOTP code is used up.
      if (found !== undefined && !(await deps.approval.claim(signedIn, found.grant, ip, now))) return deps.approval.claimedElsewhere
      const secret = await findUserTotpSecret(store, user)
      if (secret === undefined) return { kind: 'not_enrolled' }
      const result = await checkTotpCode(store, user.username, secret, input.totp, now)
      if (result !== 'ok') {
        logger.info({ event: 'verification.mfa_failed', subject: user.username, result, ip }, 'second factor failed')
        const review = found === undefined ? undefined : await deps.approval.review(signedIn, found.grant, found.client, ip, now)
        if (review !== undefined && 'kind' in review) return review
        return { kind: 'failed', result, review }
      }
      const updated = await deps.sessions.markMfaDone(signedIn, now)
      logger.info({ event: 'verification.mfa_completed', subject: user.username, ip }, 'second factor completed')
      const review = found === undefined ? undefined : await deps.approval.review(updated, found.grant, found.client, ip, now)
      if (review !== undefined && 'kind' in review) return review
      return { kind: 'completed', review }
    },

    /** A new secret to enrol, only for a session that completed the second factor in this sign-in. */
    startEnrolment(session: WebSession): EnrolmentOutcome {
      if (session.user === undefined) return { kind: 'sign_in_required' }
      if (!isMfaDone(session.record)) return { kind: 'mfa_required' }
      const secret = newTotpSecret()
      return { kind: 'ready', secret, uri: totpUri(issuerLabel, session.user.username, secret), mismatch: false }
    },

    /**
     * Saves a new authenticator once a code from it verifies.
     * @param input.secret Base32 secret from the enrolment form; malformed = a new one is offered.
     */
    async enrol(input: { session: WebSession; secret: string | undefined; totp: string; ip: string }, now: number): Promise<EnrolmentOutcome> {
      const { session } = input
      if (session.user === undefined || !isMfaDone(session.record)) return { kind: 'mfa_required' }
      const user = session.user
      const secret = input.secret !== undefined && /^[A-Z2-7]{16,128}$/.test(input.secret) ? input.secret : undefined
      if (secret === undefined || (await checkTotpCode(store, user.username, secret, input.totp, now)) !== 'ok') {
        const fresh = secret ?? newTotpSecret()
        return { kind: 'ready', secret: fresh, uri: totpUri(issuerLabel, user.username, fresh), mismatch: true }
      }
      await store.saveTotpSecret(user.username, secret, now)
      logger.info({ event: 'verification.totp_enrolled', subject: user.username, ip: input.ip }, 'authenticator enrolled')
      return { kind: 'saved' }
    },
  }
}

export type StepUp = ReturnType<typeof createStepUp>
