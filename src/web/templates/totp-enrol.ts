/** The TOTP (RFC 6238) re-enrolment page (`GET /device/mfa/enroll`). */
import { hidden, html, layout } from './layout.js'

/** Self-service TOTP enrolment, only for sessions that already completed MFA. */
export function renderTotpEnrolPage(input: { csrfToken: string; signedInAs: string; secret: string; uri: string; message?: string | undefined }): string {
  return layout({
    title: 'Set up a new authenticator',
    signedIn: { name: input.signedInAs, csrfToken: input.csrfToken },
    body: html`<h1>Set up a new authenticator</h1>
      <p>Add this account to your authenticator app with the key below (or the link), then enter the code it shows.</p>
      ${input.message === undefined ? '' : html`<p class="warning" role="alert">${input.message}</p>`}
      <dl>
        <dt>Key</dt>
        <dd><code>${input.secret}</code></dd>
        <dt>Link</dt>
        <dd><a href="${input.uri}">${input.uri}</a></dd>
      </dl>
      <form method="post" action="/device/mfa/enroll">
        ${hidden('csrf_token', input.csrfToken)} ${hidden('secret', input.secret)}
        <label for="totp">Code from the new authenticator</label>
        <input type="text" id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" maxlength="7" required />
        <div class="actions"><button type="submit" class="primary">Save authenticator</button></div>
      </form>`,
  })
}
