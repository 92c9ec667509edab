/**
 * Server-rendered HTML of the verification pages (RFC 8628 §3.3).
 *
 * Every interpolated value is HTML-escaped by the {@link html} tag unless it is already
 * {@link SafeHtml} produced by this module. The pages carry no JavaScript; the only inline
 * content is one `<style>` element whose SHA-256 hash is published in {@link STYLE_HASH_SOURCE}
 * so the Content-Security-Policy can allow exactly that stylesheet and nothing else.
 */
import { createHash } from 'node:crypto'

/** A fragment of HTML that is already escaped (or is trusted markup written in this module). */
export class SafeHtml {
  readonly #value: string
  constructor(value: string) {
    this.#value = value
  }
  toString(): string {
    return this.#value
  }
}

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;')
}

type Interpolation =
  SafeHtml | string | number | null | undefined | false | readonly Interpolation[]

function renderValue(value: Interpolation): string {
  if (value === null || value === undefined || value === false) return ''
  if (value instanceof SafeHtml) return value.toString()
  if (Array.isArray(value)) return value.map((v: Interpolation) => renderValue(v)).join('')
  return escapeHtml(String(value))
}

/** Tagged template: the literal parts are markup, every `${value}` is escaped. */
export function html(strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0] ?? ''
  for (let i = 0; i < values.length; i++) out += renderValue(values[i]) + (strings[i + 1] ?? '')
  return new SafeHtml(out)
}

/**
 * The one stylesheet of the verification pages: readable on phones (fluid width, 16 px inputs so
 * iOS does not zoom, large touch targets), visible focus rings, dark mode via prefers-color-scheme.
 */
export const PAGE_CSS = `
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#f6f8fa;--card:#fff;--line:#d0d7de;--accent:#0b5cad;--accent-fg:#fff;--danger:#b42318;--ok:#1a7f37;--warn-bg:#fff8c5}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9da7b3;--bg:#0d1117;--card:#161b22;--line:#30363d;--accent:#4493f8;--accent-fg:#0d1117;--danger:#f85149;--ok:#3fb950;--warn-bg:#3b2e00}}
*{box-sizing:border-box}
html{font-size:100%;-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:34rem;margin:0 auto;padding:1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.75rem;padding:1.25rem;margin-top:1rem}
h1{font-size:1.4rem;line-height:1.25;margin:0 0 .75rem}
p{margin:.5rem 0}
.muted{color:var(--muted);font-size:.925rem}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password]{width:100%;font-size:1rem;padding:.65rem .75rem;border:1px solid var(--line);border-radius:.5rem;background:var(--card);color:var(--fg)}
input.code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:1.25rem;letter-spacing:.15em;text-transform:uppercase}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.25rem}
button{flex:1 1 10rem;min-height:2.75rem;font:inherit;font-weight:600;padding:.6rem 1rem;border-radius:.5rem;border:1px solid var(--line);background:var(--card);color:var(--fg);cursor:pointer}
button.primary,button[value=approve]{background:var(--accent);border-color:var(--accent);color:var(--accent-fg)}
button[value=deny]{color:var(--danger);border-color:var(--danger)}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.code-display{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:1.5rem;letter-spacing:.15em;font-weight:700}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:.75rem 0}
dt{font-weight:600;color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
ul.scopes{margin:.25rem 0 .5rem;padding-left:1.25rem}
.warning{background:var(--warn-bg);border-radius:.5rem;padding:.65rem .8rem;margin:1rem 0 0;font-weight:600}
.danger{border:2px solid var(--danger);color:var(--danger)}
.tier-high,.tier-admin{color:var(--danger);font-weight:700}
.error h1{color:var(--danger)}
.success h1{color:var(--ok)}
.signed-in{display:flex;flex-wrap:wrap;justify-content:flex-end;align-items:center;gap:.5rem}
.signed-in p{margin:0}
.signed-in form{margin:0}
.signed-in button{flex:0 0 auto;min-height:2.75rem}
@media (max-width:30rem){main{padding:.5rem}.card{padding:1rem}dl{grid-template-columns:1fr}dt{margin-top:.35rem}}
`

/** CSP source expression (`'sha256-…'`) that allows exactly {@link PAGE_CSS} as an inline style. */
export const STYLE_HASH_SOURCE = `'sha256-${createHash('sha256').update(PAGE_CSS).digest('base64')}'`

/**
 * Content-Security-Policy directives the verification pages need, in @fastify/helmet's
 * `contentSecurityPolicy.directives` shape. No scripts, no images, no fonts, no connections;
 * styles only from the hashed inline `<style>`; forms post only to this origin; never framed
 * (RFC 9700 §4.16).
 */
export const VERIFICATION_PAGE_CSP_DIRECTIVES = {
  'default-src': ["'none'"],
  'style-src': [STYLE_HASH_SOURCE],
  'form-action': ["'self'"],
  'base-uri': ["'none'"],
  'frame-ancestors': ["'none'"],
} as const satisfies Record<string, readonly string[]>

/** The same policy as one header value. */
export const VERIFICATION_PAGE_CSP = Object.entries(VERIFICATION_PAGE_CSP_DIRECTIVES)
  .map(([name, sources]) => `${name} ${sources.join(' ')}`)
  .join('; ')

const STYLE_ELEMENT = new SafeHtml(`<style>${PAGE_CSS}</style>`)

/** Who is signed in, and the session's CSRF token for the Sign out form shown on every page. */
export interface SignedIn {
  username: string
  csrfToken: string
}

interface LayoutOptions {
  title: string
  body: SafeHtml
  /** Extra class on the card, e.g. `error` or `success`. */
  tone?: 'error' | 'success'
  signedIn?: SignedIn | undefined
}

/** "Signed in as …" and a named Sign out button (`POST /device/sign-out`, CSRF-protected). */
function signedInBar(signedIn: SignedIn): SafeHtml {
  return html`<div class="muted signed-in">
    <p>Signed in as <strong>${signedIn.username}</strong></p>
    <form method="post" action="/device/sign-out">
      ${hidden('csrf_token', signedIn.csrfToken)}
      <button type="submit" id="sign_out">Sign out</button>
    </form>
  </div>`
}

function layout({ title, body, tone, signedIn }: LayoutOptions): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="same-origin" />
        <title>${title} · Device sign-in</title>
        ${STYLE_ELEMENT}
      </head>
      <body>
        <main>
          ${signedIn === undefined ? '' : signedInBar(signedIn)}
          <div class="card${tone === undefined ? '' : ` ${tone}`}">${body}</div>
        </main>
      </body>
    </html> `.toString()
}

function hidden(name: string, value: string): SafeHtml {
  return html`<input type="hidden" name="${name}" value="${value}" />`
}

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
}): string {
  return layout({
    title: 'Connect a device',
    signedIn: input.signedIn,
    body: html`<h1>Connect a device</h1>
      <p>Enter the code shown on your device.</p>
      ${input.message === undefined ? '' : html`<p class="warning" role="alert">${input.message}</p>`}
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

/** The sign-in form, posting to `POST /device/sign-in`, carrying the code when there is one. */
export function renderSignInPage(input: {
  csrfToken: string
  /** Canonical user code to come back to after sign-in. */
  userCode?: string | undefined
  /** Display form of the code, shown to the user. */
  userCodeDisplay?: string | undefined
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

/** What the review (consent) page shows about one pending device authorization. */
export interface ReviewView {
  csrfToken: string
  signedInAs: string
  clientName: string
  /** Canonical code, sent back in the hidden field. */
  userCode: string
  /** `XXXX-XXXX`. */
  userCodeDisplay: string
  scopes: readonly { name: string; description: string }[]
  /** Epoch seconds. */
  requestedAt: number
  expiresAt: number
  now: number
  requestIp: string
  requestUserAgent: string | null
  /** Conditional approval (issue 3): locations, risk tier and the policy's decision. */
  policy?: ReviewPolicyView
}

/** Where one side of the flow is, for the review page. */
export interface LocationView {
  ip: string
  country: string | null
  asn: number | null
  asOrg: string | null
}

/** What the policy adds to the review page (draft-ietf-oauth-cross-device-security mitigations). */
export interface ReviewPolicyView {
  riskTier: 'low' | 'standard' | 'high' | 'admin'
  request: LocationView
  approver: LocationView
  /** Country or network (ASN) of the two sides are known and differ: show the strong warning. */
  locationMismatch: boolean
  decision: 'allow' | 'deny' | 'step_up'
  /** Reason codes of the decision (deny and step_up ones), shown small for support. */
  reasonCodes: string[]
  /** Shown for deny and step_up. */
  message?: string | undefined
  /** Other warnings from `warn` rules. */
  warnings: string[]
  /** Approval needs the code's last N characters typed (high-risk apps); the page hides them. */
  confirmSuffixLength?: number | undefined
  /** A problem with the last submission (wrong confirmation, wrong MFA code). */
  error?: string | undefined
}

const TIER_LABEL = { low: 'Low', standard: 'Standard', high: 'High', admin: 'Administrative' } as const

/** `203.0.113.9 · US · AS7922 Comcast`, with "unknown" where the IP database knows nothing. */
export function describeLocation(l: LocationView): string {
  const country = l.country ?? 'country unknown'
  const network = l.asn === null ? 'network unknown' : `AS${l.asn}${l.asOrg ? ` ${l.asOrg}` : ''}`
  return `${l.ip} · ${country} · ${network}`
}

/**
 * The review page (RFC 8628 §3.3, §5.4): what is asked, by which app, from where and when, so
 * the user can spot a remote phishing attempt. One form, two named buttons.
 */
export function renderReviewPage(view: ReviewView): string {
  const ago = formatDuration(Math.max(0, view.now - view.requestedAt))
  const left = formatDuration(Math.max(0, view.expiresAt - view.now))
  const p = view.policy
  const suffix = p?.confirmSuffixLength
  // For a high-risk app the code's last characters are not shown: the approver reads them from
  // the device they hold, which a phished approver (holding no device) cannot do.
  const codeShown = suffix === undefined ? view.userCodeDisplay : view.userCodeDisplay.slice(0, view.userCodeDisplay.length - suffix) + '•'.repeat(suffix)
  return layout({
    title: `Allow ${view.clientName}?`,
    signedIn: { username: view.signedInAs, csrfToken: view.csrfToken },
    body: html`<h1>Allow <strong>${view.clientName}</strong> to access your account?</h1>
      <p>Code: <span class="code-display">${codeShown}</span></p>
      <p>Check that this is the code shown on your device.</p>
      <h2 class="muted">It will be able to</h2>
      <ul class="scopes">
        ${view.scopes.length === 0 ? html`<li>Use its default access</li>` : view.scopes.map((s) => html`<li>${s.description}${s.description === s.name ? '' : html` <span class="muted">(${s.name})</span>`}</li>`)}
      </ul>
      <dl>
        <dt>Requested</dt>
        <dd>
          ${ago} ago (<time datetime="${toIso(view.requestedAt)}"
            >${formatUtc(view.requestedAt)}</time
          >)
        </dd>
        ${p === undefined
          ? html`<dt>From IP address</dt>
              <dd>${view.requestIp}</dd>`
          : html`<dt>App risk tier</dt>
              <dd><span class="tier-${p.riskTier}">${TIER_LABEL[p.riskTier]}</span></dd>
              <dt>Requested from</dt>
              <dd>${describeLocation(p.request)}</dd>
              <dt>You are approving from</dt>
              <dd>${describeLocation(p.approver)}</dd>`}
        <dt>Device software</dt>
        <dd>${view.requestUserAgent?.trim() ? view.requestUserAgent : 'Not reported'}</dd>
        <dt>Expires in</dt>
        <dd>
          ${left} (<time datetime="${toIso(view.expiresAt)}">${formatUtc(view.expiresAt)}</time>)
        </dd>
      </dl>
      ${p?.locationMismatch
        ? html`<p class="warning danger" role="alert" id="location_warning">
            Warning: this request was started from a different location
            (${p.request.country ?? 'unknown country'}, ${p.request.asn === null ? 'unknown network' : `AS${p.request.asn}`}) than
            the one you are using now (${p.approver.country ?? 'unknown country'},
            ${p.approver.asn === null ? 'unknown network' : `AS${p.approver.asn}`}). Someone may be trying to trick you into
            signing them in. Deny unless you are holding that device.
          </p>`
        : ''}
      ${(p?.warnings ?? []).map((w) => html`<p class="warning">${w}</p>`)}
      <p class="warning">Only approve if you started this on a device you are holding.</p>
      ${p?.error === undefined ? '' : html`<p class="warning danger" role="alert" id="form_error">${p.error}</p>`}
      ${p?.decision === 'deny'
        ? html`<div class="warning danger" role="alert" id="policy_denied">
            <p>This request cannot be approved. ${p.message ?? ''}</p>
            <p class="muted">Reason: <code>${p.reasonCodes.join(', ')}</code></p>
          </div>
          <form method="post" action="/device">
            ${hidden('csrf_token', view.csrfToken)} ${hidden('user_code', view.userCode)}
            <div class="actions"><button name="decision" value="deny">Deny</button></div>
          </form>`
        : p?.decision === 'step_up'
          ? html`<div class="warning" id="step_up">
                <p>${p.message ?? 'This app requires a second factor.'}</p>
                <p class="muted">Reason: <code>${p.reasonCodes.join(', ')}</code></p>
              </div>
              <form method="post" action="/device/mfa">
                ${hidden('csrf_token', view.csrfToken)} ${hidden('user_code', view.userCode)}
                <label for="totp">Code from your authenticator app</label>
                <input type="text" id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required />
                <div class="actions"><button type="submit" class="primary" name="action" value="verify">Verify</button></div>
              </form>
              <form method="post" action="/device">
                ${hidden('csrf_token', view.csrfToken)} ${hidden('user_code', view.userCode)}
                <div class="actions"><button name="decision" value="deny">Deny</button></div>
              </form>`
          : html`<form method="post" action="/device">
              ${hidden('csrf_token', view.csrfToken)} ${hidden('user_code', view.userCode)}
              ${suffix === undefined
                ? ''
                : html`<label for="confirm_code">Type the last ${suffix} characters of the code shown on your device</label>
                    <input type="text" id="confirm_code" name="confirm_code" class="code" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="${suffix + 2}" required />`}
              <div class="actions">
                <button name="decision" value="approve">Approve</button>
                <button name="decision" value="deny">Deny</button>
              </div>
            </form>`}`,
  })
}

/** After an approval the policy refused (the request is recorded as denied). */
export function renderPolicyDeniedPage(input: { clientName: string; signedIn: SignedIn; message: string | undefined; reasonCodes: string[] }): string {
  return layout({
    title: 'Request not allowed',
    tone: 'error',
    signedIn: input.signedIn,
    body: html`<h1>Request not allowed</h1>
      <p role="alert" id="policy_denied">
        <strong>${input.clientName}</strong> was not given access. ${input.message ?? 'Your organisation’s policy does not allow this request.'}
      </p>
      <p class="muted">Reason: <code>${input.reasonCodes.join(', ')}</code></p>
      <p><a href="/device">Enter a code</a></p>`,
  })
}

/** Self-service TOTP enrolment, only for sessions that already completed MFA. */
export function renderTotpEnrolPage(input: { csrfToken: string; signedInAs: string; secret: string; uri: string; message?: string | undefined }): string {
  return layout({
    title: 'Set up a new authenticator',
    signedIn: { username: input.signedInAs, csrfToken: input.csrfToken },
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

/** "3 minutes", "1 hour 5 minutes", "40 seconds". */
export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds)
  if (s < 60) return plural(s, 'second')
  const minutes = Math.floor(s / 60)
  if (minutes < 60) return plural(minutes, 'minute')
  const hours = Math.floor(minutes / 60)
  const rest = minutes % 60
  if (hours < 48)
    return rest === 0 ? plural(hours, 'hour') : `${plural(hours, 'hour')} ${plural(rest, 'minute')}`
  return plural(Math.floor(hours / 24), 'day')
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? '' : 's'}`
}

function toIso(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString()
}

/** `2025-01-31 14:05:09 UTC`. */
function formatUtc(epochSeconds: number): string {
  return `${toIso(epochSeconds).slice(0, 19).replace('T', ' ')} UTC`
}
