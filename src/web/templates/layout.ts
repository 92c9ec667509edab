/**
 * What every server-rendered page of devicegate shares: HTML escaping ({@link html},
 * {@link escapeHtml}), the one stylesheet and its Content-Security-Policy, the page layout with
 * the "Signed in as … / Sign out" bar, hidden fields, and date and duration formatting. One module
 * per page (`code-entry.ts`, `review.ts`…) renders its own body with these.
 *
 * Every interpolated value is HTML-escaped by the {@link html} tag unless it is already
 * {@link SafeHtml} produced by these modules. The pages carry no JavaScript; the only inline
 * content is one `<style>` element whose SHA-256 hash is published in {@link STYLE_HASH_SOURCE}
 * so the Content-Security-Policy can allow exactly that stylesheet and nothing else.
 */
import { createHash } from 'node:crypto'

/** A fragment of HTML that is already escaped (or is trusted markup written in the templates). */
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
button[value=deny]{color:var(--danger);border-color:var(--danger)}
button.primary,.primary-approve button[value=approve]{background:var(--accent);border-color:var(--accent);color:var(--accent-fg)}
.primary-deny button[value=deny]{background:var(--danger);border-color:var(--danger);color:var(--accent-fg)}
a.button{display:inline-block;min-height:2.75rem;font-weight:600;padding:.6rem 1rem;border-radius:.5rem;border:1px solid var(--accent);background:var(--accent);color:var(--accent-fg);text-decoration:none}
ul.providers{list-style:none;padding:0;margin:.75rem 0}
ul.providers li{margin:.5rem 0}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.code-display{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:1.5rem;letter-spacing:.15em;font-weight:700;white-space:nowrap}
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
  /** The person's name as shown (`shownName`: display name, else id); escaped when rendered. */
  name: string
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
    <p>Signed in as <strong>${signedIn.name}</strong></p>
    <form method="post" action="/device/sign-out">
      ${hidden('csrf_token', signedIn.csrfToken)}
      <button type="submit" id="sign_out">Sign out</button>
    </form>
  </div>`
}

/** The whole page: head, stylesheet, the signed-in bar when signed in, and one card with `body`. */
export function layout({ title, body, tone, signedIn }: LayoutOptions): string {
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

/** A hidden form field. */
export function hidden(name: string, value: string): SafeHtml {
  return html`<input type="hidden" name="${name}" value="${value}" />`
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

/** ISO 8601 UTC timestamp of an epoch-seconds time (for `<time datetime>`). */
export function toIso(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString()
}

/** `2025-01-31 14:05:09 UTC`. */
export function formatUtc(epochSeconds: number): string {
  return `${toIso(epochSeconds).slice(0, 19).replace('T', ' ')} UTC`
}

/**
 * A clock time for people: `14:05 UTC (UTC+00:00)`, `15:05 CET (UTC+01:00)`. The pages carry no
 * JavaScript and browsers send no time zone, so the server cannot know the approver's zone: it
 * shows the configured zone (`verification.time_zone`, default UTC) and always states its offset,
 * so the reader can convert.
 *
 * @param epochSeconds The time (epoch seconds).
 * @param timeZone An IANA time zone name (validated by the configuration).
 */
export function formatClock(epochSeconds: number, timeZone = 'UTC'): string {
  const date = new Date(epochSeconds * 1000)
  const part = (options: Intl.DateTimeFormatOptions, type: Intl.DateTimeFormatPartTypes) =>
    new Intl.DateTimeFormat('en-GB', { timeZone, ...options }).formatToParts(date).find((p) => p.type === type)?.value ?? ''
  const clock = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(date)
  const name = part({ timeZoneName: 'short' }, 'timeZoneName')
  const offset = part({ timeZoneName: 'longOffset' }, 'timeZoneName').replace(/^GMT$/, 'GMT+00:00').replace(/^GMT/, 'UTC')
  return `${clock} ${name} (${offset})`
}
