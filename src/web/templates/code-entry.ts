/** The code-entry page (`GET /device`, RFC 8628 §3.3). */
import { hidden, html, layout, type SignedIn } from './layout.js'

/**
 * `GET /device`: the code-entry form (RFC 8628 §3.3). A signed-out visitor is also offered
 * "Sign in" first: signed-in code entry is rate-limited per account rather than per IP address,
 * so a user behind a shared address that someone else's guessing has blocked can still continue.
 */
export function renderCodeEntryPage(input: {
  csrfToken: string
  signedIn?: SignedIn | undefined
  /** Shown above the form, e.g. after an invalid code. */
  message?: string | undefined
  /** What the user typed, kept in the field after a failed entry. */
  value?: string | undefined
  /** Failed entries this person may still make in the window (RFC 8628 §5.1), shown after a failed one. */
  attemptsLeft?: number | undefined
}): string {
  return layout({
    title: 'Connect a device',
    signedIn: input.signedIn,
    body: html`<h1>Connect a device</h1>
      <p>Enter the code shown on your device.</p>
      ${input.message === undefined ? '' : html`<p class="warning" role="alert">${input.message}</p>`}
      ${input.attemptsLeft === undefined
        ? ''
        : html`<p class="muted" id="attempts_left">
            ${input.attemptsLeft === 0
              ? 'No attempts left for now: the next code you enter will have to wait.'
              : `${input.attemptsLeft} ${input.attemptsLeft === 1 ? 'attempt' : 'attempts'} left before a pause.`}
          </p>`}
      <form method="post" action="/device">
        ${hidden('csrf_token', input.csrfToken)}
        <label for="user_code">Code</label>
        <input
          type="text"
          id="user_code"
          name="user_code"
          class="code"
          value="${input.value ?? ''}"
          placeholder="XXXX-XXXX"
          autocomplete="off"
          autocapitalize="characters"
          autocorrect="off"
          spellcheck="false"
          required
          aria-describedby="user_code_hint"
        />
        <p class="muted" id="user_code_hint">
          8 letters, for example BDFG-HJKL. Case and dashes do not matter.
        </p>
        <div class="actions"><button type="submit" class="primary">Continue</button></div>
      </form>
      ${input.signedIn === undefined
        ? html`<p class="muted" id="sign_in_first">
            Have an account here? <a href="/device/sign-in">Sign in</a> first, then enter the code.
          </p>`
        : ''}`,
  })
}
