/** The sign-in page (`GET`/`POST /device/sign-in`). */
import { hidden, html, layout } from './layout.js'

/** An upstream identity provider offered on the pages: its id (for the route) and its name. */
export interface UpstreamProviderLink {
  id: string
  name: string
}

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
  /** Upstream OpenID Connect providers offered as "Sign in with <name>" (links to their start route). Default: none. */
  providers?: readonly UpstreamProviderLink[]
  /** Whether the username/password form is shown. Default: true. */
  localPasswords?: boolean
}): string {
  const providers = input.providers ?? []
  const startQuery = input.userCode === undefined ? '' : `?user_code=${encodeURIComponent(input.userCode)}`
  return layout({
    title: 'Sign in',
    tone: input.message === undefined ? undefined : 'error',
    body: html`<h1>Sign in</h1>
      ${input.message === undefined ? '' : html`<p class="warning" role="alert">${input.message}</p>`}
      ${input.userCodeDisplay === undefined ? html`<p>Sign in to connect a device.</p>` : html`<p>Sign in to review the request with code <span class="code-display">${input.userCodeDisplay}</span>.</p>`}
      ${providers.length === 0
        ? ''
        : html`<ul class="providers">
            ${providers.map((p) => html`<li><a class="button primary" href="/device/upstream/${encodeURIComponent(p.id)}/start${startQuery}">Sign in with ${p.name}</a></li>`)}
          </ul>`}
      ${input.localPasswords === false
        ? ''
        : html`${providers.length === 0 ? '' : html`<p class="muted">Or sign in with a local account:</p>`}
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
      </form>`}`,
  })
}
