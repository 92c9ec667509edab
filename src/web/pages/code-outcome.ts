/**
 * The pages for a submitted code that cannot be reviewed, shared by code entry, the decision and
 * step-up: 429 while the source is blocked (RFC 8628 §5.1), code entry again for an invalid,
 * expired or used code, the earlier result for a code this person already decided, and the
 * "application unavailable" page.
 */
import type { FastifyReply } from 'fastify'
import type { CodeLookupFailure, CodeProblem, CodeSource, WebSession } from '../../verification/service.js'
import { renderCodeEntryPage } from '../templates/code-entry.js'
import { renderErrorPage } from '../templates/error.js'
import { renderResultPage } from '../templates/result.js'
import { formatDuration } from '../templates/layout.js'
import { sendPage, sendTooManyRequests, signedInOf } from './kit.js'

/** Longest typed code kept in the field after a failed entry. */
const MAX_KEPT_CODE_LENGTH = 64

const PROBLEM_MESSAGES: Record<CodeProblem, string> = {
  invalid: 'That code is not valid. Check the code shown on your device and try again.',
  expired: 'That code has expired. Start again on your device to get a new code.',
  used: 'That code has already been used. Start again on your device if you still need to sign in.',
}

/**
 * Code entry again (400), with what was typed kept (escaped by the template) when given, and the
 * attempts left in the window when known.
 */
export function sendCodeProblem(reply: FastifyReply, session: WebSession, problem: CodeProblem, typed?: string, attemptsLeft?: number): FastifyReply {
  return sendPage(
    reply,
    400,
    renderCodeEntryPage({
      csrfToken: session.record.csrfToken,
      signedIn: signedInOf(session),
      message: PROBLEM_MESSAGES[problem],
      value: typed?.slice(0, MAX_KEPT_CODE_LENGTH),
      attemptsLeft,
    }),
  )
}

/**
 * Renders a {@link CodeLookupFailure}.
 * @param typed The code as submitted: kept in the field when typed, and on the 429 page's sign-in link.
 */
export function sendCodeLookupFailure(
  reply: FastifyReply,
  session: WebSession,
  failure: CodeLookupFailure,
  source: CodeSource,
  typed: string | undefined,
): FastifyReply {
  switch (failure.kind) {
    case 'blocked':
      return sendTooManyRequests(reply, failure.retryAfterSeconds, { session, source, rawCode: typed, signInRequired: failure.signInRequired })
    case 'problem':
      return sendCodeProblem(reply, session, failure.problem, source === 'typed' ? typed : undefined, failure.attemptsLeft)
    case 'already_decided': {
      // A double click on Approve, Back after deciding, or a re-submitted form: 200 when nothing
      // contradicts the recorded decision; 409 when the submission asked for the other one.
      const signedIn = signedInOf(session)
      if (signedIn === undefined) throw new TypeError('already_decided needs a signed-in session')
      return sendPage(
        reply,
        failure.conflicts ? 409 : 200,
        renderResultPage({ decision: failure.outcome, clientName: failure.clientName, signedIn, alreadyDecided: true }),
      )
    }
    case 'claimed_elsewhere':
      // 409: the code is valid, but another browser session has its review open; nothing changed.
      return sendPage(
        reply,
        409,
        renderErrorPage({
          title: 'Being reviewed elsewhere',
          message: 'This request is open for review in another browser session, so it cannot be approved or denied here.',
          detail: `If that was you, finish in that browser. If you did not start this request, do nothing. If that review is left unfinished, the request can be reviewed here again after ${formatDuration(failure.claimSeconds)}.`,
          signedIn: signedInOf(session),
        }),
      )
    case 'client_unavailable':
      return sendPage(
        reply,
        400,
        renderErrorPage({
          title: 'Application unavailable',
          message: 'The application that asked for access is no longer allowed to sign in.',
          signedIn: signedInOf(session),
        }),
      )
  }
}
