/** The result page after a decision (approved or denied). */
import { html, layout, type SignedIn } from './layout.js'

/**
 * After a decision was recorded; again (with `alreadyDecided`) when the same user comes back to a
 * code they decided: a double click, Back, or a re-submitted form.
 */
export function renderResultPage(input: {
  decision: 'approved' | 'denied'
  clientName: string
  signedIn: SignedIn
  /** The decision was recorded earlier by this user, not by this request. */
  alreadyDecided?: boolean
}): string {
  const already = input.alreadyDecided === true
  if (input.decision === 'approved') {
    return layout({
      title: 'Device approved',
      tone: 'success',
      signedIn: input.signedIn,
      body: html`<h1>Device approved</h1>
        ${already ? html`<p role="status" id="already_decided">You already approved this request.</p>` : ''}
        <p>
          You approved <strong>${input.clientName}</strong>. Return to your device; it will continue
          on its own.
        </p>
        <p class="muted">You can close this page.</p>`,
    })
  }
  return layout({
    title: 'Request denied',
    signedIn: input.signedIn,
    body: html`<h1>Denied</h1>
      ${already ? html`<p role="status" id="already_decided">You already denied this request.</p>` : ''}
      <p>
        <strong>${input.clientName}</strong> was not given access. The device will be told the
        request was denied.
      </p>
      <p class="muted">
        If you did not start this request, someone may have tried to trick you into approving it.
      </p>`,
  })
}
