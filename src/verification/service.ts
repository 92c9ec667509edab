/**
 * The verification service: the rules of the user-interaction step of the Device Authorization
 * Grant (RFC 8628 §3.3) — web sessions, code entry and its limits (§5.1), sign-in and its limits,
 * the review with conditional approval, the decision with its server-side policy re-check, and
 * the second factor. Plain inputs and outputs (no HTTP types): pages in `web/pages/` parse a
 * request, call one method, and render the outcome; tests call it directly.
 *
 * Times are epoch seconds (`now`), passed in by the caller from its clock. Every outcome is a
 * tagged union (`kind`) the page renders; nothing here throws for bad input.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.3
 */
import type { ClientDirectory, UserDirectory } from '../core/model.js'
import type { EventSink } from '../core/events.js'
import type { Random } from '../core/ports.js'
import type { PolicyService } from '../policy/service.js'
import type { Store } from '../storage/store.js'
import { constantTimeEqual } from '../system.js'
import { createApproval, type Review } from './approval.js'
import { createCodeEntry, type CodeLookupFailure } from './code-entry.js'
import { createCodeEntryLimiter, type CodeEntryLimiter, type CodeEntryLimits, type CodeSource } from './code-entry-limiter.js'
import type { VerificationLogger } from './logger.js'
import { createSessions, typedCodeProof, type WebSession } from './sessions.js'
import { createSignIn } from './sign-in.js'
import { createStepUp } from './step-up.js'

export type { Review, DecisionOutcome } from './approval.js'
export type { CodeLookupFailure, CodeProblem } from './code-entry.js'
export type { CodeSource, CodeEntryLimiter, CodeEntryLimits } from './code-entry-limiter.js'
export type { EstablishedSession, SignedInSession, WebSession } from './sessions.js'
export type { SignInOutcome } from './sign-in.js'
export type { EnrolmentOutcome, StepUpOutcome } from './step-up.js'
export type { VerificationLogger } from './logger.js'

/** Defaults of the code-entry limits not given in {@link VerificationServiceDeps}. */
export const CODE_ENTRY_DEFAULTS = { signedInSourceMaxFailures: 10, serverMaxFailures: 500, ipv6PrefixLength: 64 } as const

/** What the verification service needs; built by the composition root. */
export interface VerificationServiceDeps {
  /** Receives domain events (audit log, anomaly detectors, metrics); absent = dropped. */
  events?: EventSink | undefined
  store: Store
  random: Random
  clients: ClientDirectory
  users: UserDirectory
  /** Failed code entries allowed per session, signed-out source and account in any window (RFC 8628 §5.1). Default: 5. */
  codeEntryMaxFailures: number
  /** Length of the sliding code-entry window in seconds. Default: 600. */
  codeEntryWindowSeconds: number
  /**
   * The other code-entry limits (see {@link CodeEntryLimits}); defaults: signed-in source 10,
   * server 500, IPv6 prefix /64.
   */
  codeEntryLimits?: Partial<Omit<CodeEntryLimits, 'maxFailures' | 'windowSeconds'>> | undefined
  /** Replaces the sliding-window code-entry limiter built from the settings above. */
  codeEntryLimiter?: CodeEntryLimiter | undefined
  /** Sign-in sessions last this long, in seconds. Default: 3600. */
  sessionTtlSeconds: number
  /** Conditional approval; absent: every signed-in person may approve. */
  policy?: PolicyService | undefined
  /**
   * How long showing a code's review claims it for that browser session, in seconds (renewed by
   * each review, step-up and decision of the session). Default: 120.
   */
  reviewClaimSeconds?: number | undefined
  /** Issuer name shown in authenticator apps for TOTP enrolment. Default: devicegate. */
  totpIssuerLabel?: string | undefined
  logger: VerificationLogger
}

/** Outcome of {@link VerificationService.showCode}. */
export type ShowCodeOutcome =
  | CodeLookupFailure
  /** The client's policy refuses codes arriving in links (verification_uri_complete). */
  | { kind: 'link_refused' }
  /** Signed out: sign in to review this code (canonical form). */
  | { kind: 'sign_in'; userCode: string }
  | { kind: 'review'; review: Review }

/** Builds the verification service over its dependencies. */
export function createVerificationService(deps: VerificationServiceDeps) {
  const { logger } = deps
  const sessions = createSessions(deps)
  const limiter =
    deps.codeEntryLimiter ??
    createCodeEntryLimiter(
      deps.store,
      {
        maxFailures: deps.codeEntryMaxFailures,
        windowSeconds: deps.codeEntryWindowSeconds,
        ...CODE_ENTRY_DEFAULTS,
        ...deps.codeEntryLimits,
      },
      deps.events,
    )
  const codeEntry = createCodeEntry({ ...deps, limiter })
  const approval = createApproval({ ...deps, codeEntry })
  const signIn = createSignIn({ ...deps, sessions })
  const stepUp = createStepUp({ ...deps, sessions, codeEntry, approval })

  return {
    sessions,
    /** See {@link createSessions}: the seam for any other sign-in method. */
    establishSession: sessions.establishSession,
    signIn: signIn.signIn,
    decide: approval.decide,
    stepUp: stepUp.stepUp,
    startTotpEnrolment: stepUp.startEnrolment,
    enrolTotp: stepUp.enrol,

    /**
     * What to show for a submitted code: the review for a signed-in person, the sign-in form for
     * a signed-out one. Never decides anything. A code in a link (`source: 'link'`,
     * verification_uri_complete, RFC 8628 §3.3.1) counts against the session and IP only, and is
     * refused for clients whose policy requires a typed code unless `typedProof` shows it was
     * typed before sign-in.
     *
     * @param input.rawCode The code as submitted (any case, dashes, spaces).
     */
    async showCode(
      input: { session: WebSession; rawCode: string; source: CodeSource; typedProof?: string | undefined; ip: string; userAgent?: string | undefined },
      now: number,
    ): Promise<ShowCodeOutcome> {
      const { session, source, typedProof, ip } = input
      const found = await codeEntry.lookUp({ session, ip, source }, input.rawCode, now)
      if (found.kind !== 'found') return found
      // Kiosk / disallow_verification_uri_complete: a code arriving in a link (a QR code, a phishing
      // message) is not shown; the approver types the code from the device they hold.
      if (
        source === 'link' &&
        deps.policy?.settings(found.client.id).requireTypedCode &&
        !(typedProof !== undefined && constantTimeEqual(typedProof, typedCodeProof(session.record, found.grant.userCode)))
      ) {
        logger.info(
          { event: 'verification.link_refused', grantId: found.grant.id, clientId: found.client.id, ip },
          'verification_uri_complete refused by policy',
        )
        return { kind: 'link_refused' }
      }
      if (session.user === undefined) return { kind: 'sign_in', userCode: found.grant.userCode }
      const reviewed = await approval.review({ ...session, user: session.user }, found.grant, found.client, ip, now, input.userAgent)
      return 'kind' in reviewed ? reviewed : { kind: 'review', review: reviewed }
    },
  }
}

/** The verification service; see {@link createVerificationService}. */
export type VerificationService = ReturnType<typeof createVerificationService>
