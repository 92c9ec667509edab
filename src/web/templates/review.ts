/**
 * The review (consent) page (RFC 8628 §3.3, §5.4) with conditional approval's view, and the page
 * after an approval the policy refused.
 */
import { formatClock, formatDuration, hidden, html, layout, toIso, type SignedIn } from './layout.js'

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
  /**
   * Where the tool says it keeps its sign-in, in plain words (`describeStorageClass`); a claim
   * the tool made (`storage_class`), shown as such.
   */
  storageDescription: string
  /** IANA zone the clock times are shown in (with their offset). Default: UTC. */
  timeZone?: string | undefined
  /** Conditional approval: locations, risk tier and the policy's decision. */
  policy?: ReviewPolicyView
  /**
   * How a second factor can be given when the policy asks for one: back at the person's upstream
   * provider (a link), and/or a local authenticator code (only for people who may have one).
   * Default: the authenticator code form only.
   */
  stepUp?: { provider?: { id: string; name: string } | undefined; totp: boolean }
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
    signedIn: { name: view.signedInAs, csrfToken: view.csrfToken },
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
          ${ago} ago, at
          <time datetime="${toIso(view.requestedAt)}">${formatClock(view.requestedAt, view.timeZone)}</time>
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
        <dt>Where it keeps your sign-in</dt>
        <dd id="storage_class">${view.storageDescription} <span class="muted">(as the tool reports it)</span></dd>
        <dt>Expires</dt>
        <dd>
          at <time id="expires_at" datetime="${toIso(view.expiresAt)}">${formatClock(view.expiresAt, view.timeZone)}</time>, in ${left}
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
            <p>It has been denied: the device has been told, and nothing more is needed from you.</p>
            <p class="muted">Reason: <code>${p.reasonCodes.join(', ')}</code></p>
          </div>`
        : p?.decision === 'step_up'
          ? html`<div class="warning" id="step_up">
                <p>${p.message ?? 'This app requires a second factor.'}</p>
                <p class="muted">Reason: <code>${p.reasonCodes.join(', ')}</code></p>
              </div>
              ${view.stepUp?.provider === undefined
                ? ''
                : html`<p class="actions">
                    <a class="button primary" href="/device/upstream/${encodeURIComponent(view.stepUp.provider.id)}/start?step_up=1&amp;user_code=${encodeURIComponent(view.userCode)}"
                      >Verify with ${view.stepUp.provider.name}</a
                    >
                  </p>`}
              ${view.stepUp?.totp === false
                ? ''
                : html`<form method="post" action="/device/mfa">
                ${hidden('csrf_token', view.csrfToken)} ${hidden('user_code', view.userCode)}
                <label for="totp">Code from your authenticator app</label>
                <input type="text" id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required />
                <div class="actions"><button type="submit" class="primary" name="action" value="verify">Verify</button></div>
              </form>`}
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
              ${p?.locationMismatch
                ? // Under the location warning, Deny is the primary button: first and filled.
                  html`<div class="actions primary-deny" id="decision_buttons">
                    <button name="decision" value="deny">Deny</button>
                    <button name="decision" value="approve">Approve</button>
                  </div>`
                : html`<div class="actions primary-approve" id="decision_buttons">
                    <button name="decision" value="approve">Approve</button>
                    <button name="decision" value="deny">Deny</button>
                  </div>`}
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
