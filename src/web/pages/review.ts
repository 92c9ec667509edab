/**
 * The review page and the decision (RFC 8628 §3.3, §5.4): what is asked, by which app, from where
 * and when, with conditional approval's view (risk tier, locations, step-up, typed confirmation);
 * and `POST /device` with `decision=approve|deny`, which the verification service re-checks.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-5.4
 */
import { describeStorageClass } from '../../core/storage-class.js'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { parseScope, shownName } from '../../core/model.js'
import { formatUserCode, normalizeUserCode } from '../../core/user-code.js'
import type { PolicyDecision } from '../../policy/model.js'
import type { Review, SignedInSession, WebSession } from '../../verification/service.js'
import { renderErrorPage } from '../templates/error.js'
import { renderResultPage } from '../templates/result.js'
import { renderPolicyDeniedPage, renderReviewPage, type ReviewPolicyView } from '../templates/review.js'
import { renderSignInPage } from '../templates/sign-in.js'
import { sendCodeLookupFailure, sendCodeProblem } from './code-outcome.js'
import { formString, sendPage, type Form, signInOptions, type PageContext } from './kit.js'

/** The policy's decision as the review page shows it. */
function policyView(d: PolicyDecision, confirmSuffixLength: number | undefined, error?: string): ReviewPolicyView {
  const locationMismatch = d.proximityMismatch.includes('country') || d.proximityMismatch.includes('asn')
  const decisive = d.reasons.filter((r) => r.effect === d.decision || (d.decision === 'step_up' && r.effect === 'step_up'))
  return {
    riskTier: d.facts.client.tier,
    request: d.facts.request,
    approver: d.facts.approver ?? { ip: 'unknown', country: null, asn: null, asOrg: null },
    locationMismatch,
    decision: d.decision,
    reasonCodes: (d.decision === 'allow' ? [] : decisive).map((r) => r.code),
    message: decisive.find((r) => r.message !== undefined)?.message,
    // The proximity warning has its own, stronger box.
    warnings: d.reasons
      .filter((r) => r.effect === 'warn' && r.message !== undefined && !(locationMismatch && r.code === 'proximity_mismatch'))
      .map((r) => r.message!),
    confirmSuffixLength,
    error,
  }
}

/**
 * The review page's HTML for a signed-in person.
 * @param error A problem with the last submission, shown only with a policy (wrong confirmation, MFA code).
 */
export function renderReview(ctx: PageContext, session: SignedInSession, review: Review, now: number, error?: string): string {
  const { grant, client, policy } = review
  return renderReviewPage({
    csrfToken: session.record.csrfToken,
    signedInAs: shownName(session.user),
    clientName: client.name,
    userCode: grant.userCode,
    userCodeDisplay: formatUserCode(grant.userCode),
    scopes: parseScope(grant.scope).map((name) => ({
      name,
      description: Object.hasOwn(ctx.scopeDescriptions, name) ? (ctx.scopeDescriptions[name] ?? name) : name,
    })),
    requestedAt: grant.createdAt,
    expiresAt: grant.expiresAt,
    now,
    requestIp: grant.requestIp,
    requestUserAgent: grant.requestUserAgent,
    storageDescription: describeStorageClass(review.storageClass),
    timeZone: ctx.timeZone,
    ...(policy ? { policy: policyView(policy.decision, policy.confirmSuffixLength, error) } : {}),
    ...(ctx.identity
      ? { stepUp: { provider: ctx.identity.stepUpProvider(session.user.username), totp: ctx.identity.offersTotp(session.user.username) } }
      : {}),
  })
}

/**
 * `POST /device` with a `decision`, after the CSRF check: parses, asks the service to decide, and
 * renders the result. The review page may be stale and the POST hand-made, so everything is
 * re-validated by the service.
 */
export async function handleDecision(
  ctx: PageContext,
  request: FastifyRequest,
  reply: FastifyReply,
  session: WebSession,
  form: Form,
  rawCode: string,
  decision: string,
  now: number,
): Promise<FastifyReply> {
  if (decision !== 'approve' && decision !== 'deny') {
    return sendPage(reply, 400, renderErrorPage({ title: 'Invalid request', message: 'Choose Approve or Deny.' }))
  }
  if (session.user === undefined) {
    return sendPage(
      reply,
      401,
      renderSignInPage({
        ...signInOptions(ctx),
        csrfToken: session.record.csrfToken,
        userCode: normalizeUserCode(rawCode),
        message: 'Sign in before approving or denying a request.',
      }),
    )
  }
  const signedIn = { ...session, user: session.user }
  const bar = { name: shownName(signedIn.user), csrfToken: session.record.csrfToken }
  const result = await ctx.service.decide(
    {
      session: signedIn,
      rawCode,
      outcome: decision === 'approve' ? 'approved' : 'denied',
      confirmCode: formString(form, 'confirm_code'),
      ip: request.clientIp,
      userAgent: request.headers['user-agent'],
    },
    now,
  )
  switch (result.kind) {
    case 'step_up_required':
      return sendPage(reply, 403, renderReview(ctx, signedIn, result.review, now, 'Complete the second factor before approving.'))
    case 'confirm_mismatch':
      return sendPage(reply, 400, renderReview(ctx, signedIn, result.review, now, 'The characters you typed do not match the code on your device.'))
    case 'denied_by_policy':
      return sendPage(
        reply,
        403,
        renderPolicyDeniedPage({ clientName: result.client.name, signedIn: bar, message: result.message, reasonCodes: result.reasonCodes }),
      )
    case 'race_lost':
      return sendCodeProblem(reply, session, 'used')
    case 'decided':
      return sendPage(reply, 200, renderResultPage({ decision: result.outcome, clientName: result.client.name, signedIn: bar }))
    default:
      return sendCodeLookupFailure(reply, session, result, 'typed', rawCode)
  }
}
