/** The sign-in page (`GET`/`POST /device/sign-in`). */
import { hidden, html, layout } from './layout.js'

/** The sign-in form, posting to `POST /device/sign-in`, carrying the code when there is one. */
export function renderSignInPage(input: {
  csrfToken: string
  /** Canonical user code to come back to after sign-in. */
  userCode?: string | undefined
  /** Display form of the code, shown to the user. */
  userCodeDisplay?: string | undefined
  /** The code came in a link (not typed here): sent back as `code_source=link`, so no typed-code proof follows. */
  codeFromLink?: boolean | undefined
  message?: string
  username?: string
}): string {
  return layout({
    title: 'Sign in',
    tone: input.message === undefined ? undefined : 'error',
    body: html`<h1>Sign in</h1>
      ${input.message === undefined ? '' : html`<p class="warning" role="alert">${input.message}</p>`}
      ${input.userCodeDisplay === undefined ? html`<p>Sign in to connect a device.</p>` : html`<p>Sign in to review the request with code <span class="code-display">${input.userCodeDisplay}</span>.</p>`}
      <form method="post" action="/device/sign-in">
        ${hidden('csrf_token', input.csrfToken)}
        ${input.userCode === undefined ? '' : hidden('user_code', input.userCode)}
        ${input.userCode !== undefined && input.codeFromLink === true ? hidden('code_source', 'link') : ''}
        <label for="username">Username</label>
        <input
          type="text"
          id="username"
          name="username"
          value="${input.username ?? ''}"
          autocomplete="username"
          autocapitalize="none"
          autocorrect="off"
          spellcheck="false"
          required
        />
        <label for="password">Password</label>
        <input
          type="password"
          id="password"
          name="password"
          autocomplete="current-password"
          required
        />
        <div class="actions"><button type="submit" class="primary">Sign in</button></div>
      </form>`,
  })
}
