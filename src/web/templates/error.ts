/** The error page of the verification pages (403, 429, bad input…). */
import { html, layout, type SignedIn } from './layout.js'

/**
 * An error page: no forms that change state except Sign out, one link back to the code-entry page,
 * and with `offerSignIn` a link to sign in (for a signed-out visitor an IP-wide limit has blocked).
 */
export function renderErrorPage(input: {
  title: string
  message: string
  detail?: string | undefined
  signedIn?: SignedIn | undefined
  offerSignIn?: boolean
}): string {
  return layout({
    title: input.title,
    tone: 'error',
    signedIn: input.signedIn,
    body: html`<h1>${input.title}</h1>
      <p role="alert">${input.message}</p>
      ${input.detail === undefined ? '' : html`<p class="muted">${input.detail}</p>`}
      ${input.offerSignIn === true
        ? html`<p id="sign_in_to_continue">
            You can <a href="/device/sign-in">sign in</a> to continue: once you are signed in,
            attempts are counted for your account, not for everyone on your network.
          </p>`
        : ''}
      <p><a href="/device">Enter a code</a></p>`,
  })
}
