/** The error page of the verification pages (403, 429, bad input…). */
import { html, layout, type SignedIn } from './layout.js'

/**
 * An error page: no forms that change state except Sign out, one link back to the code-entry page,
 * and with `offerSignIn` a link to sign in, keeping the code (for a signed-out visitor a signed-out
 * limit has blocked).
 */
export function renderErrorPage(input: {
  title: string
  message: string
  detail?: string | undefined
  signedIn?: SignedIn | undefined
  /** Offer sign-in; `userCode` (canonical) is kept on the link so the person comes back to it. */
  offerSignIn?: { userCode?: string | undefined } | undefined
}): string {
  return layout({
    title: input.title,
    tone: 'error',
    signedIn: input.signedIn,
    body: html`<h1>${input.title}</h1>
      <p role="alert">${input.message}</p>
      ${input.detail === undefined ? '' : html`<p class="muted">${input.detail}</p>`}
      ${input.offerSignIn === undefined
        ? ''
        : html`<p id="sign_in_to_continue">
            You can <a href="${signInHref(input.offerSignIn.userCode)}">sign in</a> to continue${input.offerSignIn.userCode === undefined ? '' : ' with the same code'}:
            once you are signed in, attempts are counted for your account, not for everyone on your network.
          </p>`}
      <p><a href="/device">Enter a code</a></p>`,
  })
}

/** The sign-in link, carrying a canonical code (letters only, so no escaping beyond the template's). */
function signInHref(userCode: string | undefined): string {
  return userCode === undefined ? '/device/sign-in' : `/device/sign-in?user_code=${userCode}`
}
