/**
 * The second factor (RFC 6238 TOTP): `POST /device/mfa` (step-up during an approval, back to the
 * review page, or before re-enrolment) and `GET`/`POST /device/mfa/enroll` (self-service
 * re-enrolment by a session that completed the second factor in this sign-in). Users with no
 * authenticator at all are enrolled by an administrator (`devicegate users enroll-totp`).
 */
import type { FastifyInstance } from 'fastify'
import type { EnrolmentOutcome, WebSession } from '../../verification/service.js'
import { renderErrorPage } from '../templates/error.js'
import { renderSignInPage } from '../templates/sign-in.js'
import { renderTotpEnrolPage } from '../templates/totp-enrol.js'
import { sendCodeLookupFailure } from './code-outcome.js'
import {
  ensureSession,
  formString,
  isTrustedPost,
  loadSession,
  readForm,
  redirect,
  sendForbidden,
  sendPage,
  signedInOf,
  type PageContext,
  signInOptions,
} from './kit.js'
import { shownName } from '../../core/model.js'
import { renderReview } from './review.js'

const NEEDS_MFA = 'Setting up a new authenticator needs a sign-in that completed the second factor.'

function enrolPage(session: WebSession, ready: Extract<EnrolmentOutcome, { kind: 'ready' }>): string {
  return renderTotpEnrolPage({
    csrfToken: session.record.csrfToken,
    signedInAs: session.user === undefined ? '' : shownName(session.user),
    secret: ready.secret,
    uri: ready.uri,
    message: ready.mismatch ? 'That code does not match. Enter the code the new authenticator shows.' : undefined,
  })
}

/** Registers `POST /device/mfa`, `GET /device/mfa/enroll` and `POST /device/mfa/enroll`. */
export function registerStepUpPages(app: FastifyInstance, ctx: PageContext): void {
  /** `totp`, `csrf_token`, and either `user_code` (step-up during an approval) or `next=enroll`. */
  app.post('/device/mfa', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(ctx, request, now)
    if (!isTrustedPost(ctx, request, session, form)) return sendForbidden(ctx, request, reply, 'csrf')
    const rawCode = formString(form, 'user_code')
    const result = await ctx.service.stepUp({ session, rawCode, totp: formString(form, 'totp') ?? '', ip: request.clientIp }, now)
    const user = session.user
    switch (result.kind) {
      case 'sign_in_required':
        return sendPage(reply, 401, renderSignInPage({ ...signInOptions(ctx), csrfToken: session.record.csrfToken, userCode: result.userCode, message: 'Sign in first.' }))
      case 'not_enrolled':
        // Never offer enrolment here: a password alone must not be enough to add an authenticator.
        return sendPage(
          reply,
          403,
          renderErrorPage({
            title: 'Second factor not set up',
            message: 'This request needs a code from an authenticator app, and none is set up for your account.',
            detail: 'Ask an administrator to set one up for you (devicegate users enroll-totp). It cannot be set up during an approval.',
            signedIn: signedInOf(session),
          }),
        )
      case 'failed': {
        const status = result.result === 'locked' ? 429 : 400
        const message =
          result.result === 'locked'
            ? 'Too many wrong codes. Try again later.'
            : 'That code is not right (or was already used). Enter the current code from your authenticator app.'
        if (result.review === undefined || user === undefined) {
          return sendPage(reply, status, renderErrorPage({ title: 'Second factor failed', message, signedIn: signedInOf(session) }))
        }
        return sendPage(reply, status, renderReview(ctx, { ...session, user }, result.review, now, message))
      }
      case 'completed':
        if (result.review === undefined || user === undefined) return redirect(reply, '/device/mfa/enroll')
        return sendPage(reply, 200, renderReview(ctx, { ...session, user }, result.review, now))
      default:
        return sendCodeLookupFailure(reply, session, result, 'typed', rawCode)
    }
  })

  app.get('/device/mfa/enroll', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const session = await ensureSession(ctx, request, reply, now)
    const result = ctx.service.startTotpEnrolment(session)
    switch (result.kind) {
      case 'sign_in_required':
        return sendPage(reply, 401, renderSignInPage({ ...signInOptions(ctx), csrfToken: session.record.csrfToken, message: 'Sign in first.' }))
      case 'ready':
        return sendPage(reply, 200, enrolPage(session, result))
      default:
        return sendPage(
          reply,
          403,
          renderErrorPage({
            title: 'Confirm your current authenticator',
            message: NEEDS_MFA,
            detail: 'Sign in again and complete the second factor, or ask an administrator.',
            signedIn: signedInOf(session),
          }),
        )
    }
  })

  /** `secret`, `totp`: saves the new authenticator once its code verifies. */
  app.post('/device/mfa/enroll', async (request, reply) => {
    const now = ctx.clock.nowSeconds()
    const form = readForm(request)
    const session = await loadSession(ctx, request, now)
    if (!isTrustedPost(ctx, request, session, form)) return sendForbidden(ctx, request, reply, 'csrf')
    const result = await ctx.service.enrolTotp({ session, secret: formString(form, 'secret'), totp: formString(form, 'totp') ?? '', ip: request.clientIp }, now)
    switch (result.kind) {
      case 'ready':
        return sendPage(reply, 400, enrolPage(session, result))
      case 'saved':
        return sendPage(
          reply,
          200,
          renderErrorPage({ title: 'Authenticator saved', message: 'Your new authenticator is set up. Use it from now on.', signedIn: signedInOf(session) }),
        )
      default:
        return sendPage(reply, 403, renderErrorPage({ title: 'Not allowed', message: NEEDS_MFA }))
    }
  })
}
