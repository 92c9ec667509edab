/**
 * Server-rendered HTML of the governance console: one layout, one stylesheet, small components.
 *
 * Like the verification pages (`web/templates/layout.ts`, whose escaping {@link html} tag this reuses),
 * the console carries no JavaScript and loads nothing from elsewhere: the only inline content is
 * one `<style>` element allowed by its SHA-256 hash in {@link CONSOLE_CSP_DIRECTIVES}; charts are
 * inline SVG. Every action is a `<form method="post">` with the session's CSRF token.
 */
import { createHash } from 'node:crypto'
import { html, SafeHtml } from '../web/templates/layout.js'
import type { ConsoleRole } from './roles.js'

export { html, SafeHtml }

/** The console's stylesheet: wide tables, visible focus, AA contrast, no colour-only meaning. */
export const CONSOLE_CSS = `
:root{color-scheme:light;--fg:#1b1f24;--muted:#4d5661;--bg:#f6f8fa;--card:#fff;--line:#c4ccd5;--accent:#0b5cad;--accent-fg:#fff;--danger:#a11c12;--ok:#17692d;--warn-bg:#fff3b0}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:var(--accent)}
.skip{position:absolute;left:-999px;top:0;background:var(--card);padding:.5rem}
.skip:focus{left:.5rem;z-index:2}
header.top{background:#14213d;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center}
header.top a{color:#fff}
header.top .brand{font-weight:700;text-decoration:none;font-size:1.1rem}
nav.main ul{list-style:none;display:flex;flex-wrap:wrap;gap:.25rem .9rem;margin:0;padding:0}
nav.main a{text-decoration:none;padding:.2rem .1rem;border-bottom:3px solid transparent}
nav.main a[aria-current=page]{border-bottom-color:#fff;font-weight:700}
.who{margin-left:auto;display:flex;gap:.75rem;align-items:center}
.who form{margin:0}
.who button{background:transparent;color:#fff;border-color:#fff}
main{max-width:80rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:1rem;margin:0 0 1rem}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%;background:var(--card);font-size:.95rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border-bottom:1px solid var(--line);padding:.4rem .5rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
td{overflow-wrap:anywhere}
thead th{white-space:nowrap}
th{background:#eef1f4}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:.75rem;margin:0 0 1rem;padding:0;list-style:none}
.stats li{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.75rem}
.stats .n{display:block;font-size:1.6rem;font-weight:700}
.filters{display:grid;grid-template-columns:repeat(auto-fit,minmax(12rem,1fr));gap:.5rem .75rem;align-items:start}
.filters>div:last-child{align-self:end}
.filters small{display:block}
label{display:block;font-weight:600;margin:.5rem 0 .2rem}
input[type=text],input[type=password],input[type=number],input[type=datetime-local],select,textarea{width:100%;font:inherit;padding:.45rem .55rem;border:1px solid #6e7781;border-radius:.35rem;background:#fff;color:var(--fg)}
textarea{min-height:4rem}
button{font:inherit;font-weight:600;padding:.45rem .9rem;min-height:2.5rem;border-radius:.35rem;border:1px solid #6e7781;background:var(--card);color:var(--fg);cursor:pointer}
button.primary{background:var(--accent);border-color:var(--accent);color:var(--accent-fg)}
button.danger{background:var(--danger);border-color:var(--danger);color:#fff}
:focus-visible{outline:3px solid #e36209;outline-offset:2px}
.inline{display:inline}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:.75rem}
.notice{border-left:4px solid var(--accent);background:var(--card);padding:.6rem .8rem;margin:0 0 1rem}
.notice.error{border-left-color:var(--danger)}
.notice.ok{border-left-color:var(--ok)}
.badge{display:inline-block;border:1px solid currentColor;border-radius:1rem;padding:0 .5rem;font-size:.85rem;font-weight:600}
.badge.revoked,.badge.disabled,.badge.deny,.badge.open{color:var(--danger)}
.badge.active,.badge.allow,.badge.acknowledged,.badge.enabled{color:var(--ok)}
ol.lineage{list-style:none;padding:0;margin:0;border-left:3px solid var(--line)}
ol.lineage>li{position:relative;padding:.25rem 0 .75rem 1.25rem}
ol.lineage>li::before{content:"";position:absolute;left:-.55rem;top:.55rem;width:.8rem;height:.8rem;border-radius:50%;background:var(--card);border:3px solid var(--accent)}
ol.lineage h3{font-size:1rem;margin:0 0 .25rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.25rem 0}
dt{font-weight:600;color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(26rem,1fr));gap:1rem}
figure{margin:0}
figcaption{font-weight:600;margin-bottom:.25rem}
svg.chart{width:100%;height:auto;background:var(--card);border:1px solid var(--line);border-radius:.35rem}
svg.chart text{font-size:11px;fill:var(--fg)}
svg.chart .axis{stroke:var(--muted);stroke-width:1}
svg.chart .grid{stroke:var(--line);stroke-width:1;stroke-dasharray:2 3}
svg.chart .bar{stroke:var(--fg);stroke-width:.4}
details{margin:.5rem 0}
summary{cursor:pointer;font-weight:600}
.pager{display:flex;gap:1rem;margin:.75rem 0}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#eef1f4;padding:.5rem;border-radius:.35rem}
@media (max-width:40rem){.charts{grid-template-columns:1fr}dl{grid-template-columns:1fr}}
`

/** CSP source expression allowing exactly {@link CONSOLE_CSS}. */
export const CONSOLE_STYLE_HASH = `'sha256-${createHash('sha256').update(CONSOLE_CSS).digest('base64')}'`

/**
 * Content-Security-Policy of every console page (@fastify/helmet directive shape): nothing from
 * anywhere — no scripts at all, no images or fonts (charts are inline SVG elements, which need no
 * source) — styles only from the hashed `<style>`, forms only to this origin, never framed.
 */
export const CONSOLE_CSP_DIRECTIVES = {
  'default-src': ["'none'"],
  'style-src': [CONSOLE_STYLE_HASH],
  'form-action': ["'self'"],
  'base-uri': ["'none'"],
  'frame-ancestors': ["'none'"],
} as const satisfies Record<string, readonly string[]>

/** One entry of the navigation. */
export interface NavItem {
  href: string
  label: string
  /** The permission needed to see the entry (checked again by the page itself). */
  needs: 'self' | 'read'
}

/**
 * The console's navigation. `Access reviews` is the slot for the reviewer inbox (src/reviews/),
 * shown when the reviews module registers its page (a `ConsoleExtension`, `createServer` option
 * `consoleExtensions`; entries go before My devices).
 */
export const NAV: readonly NavItem[] = [
  { href: '/console', label: 'Overview', needs: 'read' },
  { href: '/console/grants', label: 'Grants', needs: 'read' },
  { href: '/console/anomalies', label: 'Anomalies', needs: 'read' },
  { href: '/console/revoke', label: 'Revoke', needs: 'read' },
  { href: '/console/policy', label: 'Policy', needs: 'read' },
  { href: '/console/audit', label: 'Audit', needs: 'read' },
  { href: '/console/people', label: 'People & clients', needs: 'read' },
  { href: '/console/devices', label: 'Trusted devices', needs: 'read' },
  { href: '/console/my-devices', label: 'My devices', needs: 'self' },
]

/** Who is signed in, as the layout shows it. */
export interface Viewer {
  username: string
  /** Shown as "Signed in as …" (`shownName`: display name, else id). */
  name: string
  role: ConsoleRole | null
  csrfToken: string
}

export interface LayoutOptions {
  title: string
  /** The nav entry to mark as the current page. */
  current?: string
  viewer?: Viewer
  nav?: readonly NavItem[]
  body: SafeHtml
  /** A message above the page (after an action). */
  notice?: { tone: 'ok' | 'error' | 'info'; text: string } | undefined
}

const STYLE = new SafeHtml(`<style>${CONSOLE_CSS}</style>`)

/** A complete console page. */
export function page(o: LayoutOptions): string {
  const v = o.viewer
  const items = (o.nav ?? NAV).filter((n) => v !== undefined && (n.needs === 'self' || v.role !== null))
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${o.title} · devicegate console</title>
${STYLE}
</head>
<body>
<a class="skip" href="#content">Skip to content</a>
<header class="top">
  <a class="brand" href="${v?.role === null ? '/console/my-devices' : '/console'}">devicegate console</a>
  ${
    v === undefined
      ? ''
      : html`<nav class="main" aria-label="Console">
    <ul>${items.map((n) => html`<li><a href="${n.href}"${o.current === n.href ? new SafeHtml(' aria-current="page"') : ''}>${n.label}</a></li>`)}</ul>
  </nav>
  <div class="who">
    <span>Signed in as <strong>${v.name}</strong> (${v.role ?? 'no console role'})</span>
    <form method="post" action="/console/sign-out">${csrf(v.csrfToken)}<button type="submit">Sign out</button></form>
  </div>`
  }
</header>
<main id="content">
<h1>${o.title}</h1>
${o.notice === undefined ? '' : html`<p class="notice ${o.notice.tone}" role="${o.notice.tone === 'error' ? 'alert' : 'status'}">${o.notice.text}</p>`}
${o.body}
</main>
</body>
</html>`.toString()
}

/** The hidden CSRF field of every form. */
export function csrf(token: string): SafeHtml {
  return html`<input type="hidden" name="csrf_token" value="${token}">`
}

/** Epoch seconds as `2026-12-06 22:30 UTC` in a `<time>` element; `—` for null. */
export function time(t: number | null | undefined): SafeHtml {
  if (t === null || t === undefined) return html`<span class="muted">—</span>`
  const iso = new Date(t * 1000).toISOString()
  return html`<time datetime="${iso}">${iso.slice(0, 16).replace('T', ' ')} UTC</time>`
}

/** A duration in seconds as `3 d`, `5 h`, `12 min`. */
export function ago(seconds: number): string {
  if (seconds < 3600) return `${Math.max(0, Math.floor(seconds / 60))} min`
  if (seconds < 86_400 * 2) return `${Math.floor(seconds / 3600)} h`
  return `${Math.floor(seconds / 86_400)} d`
}

/** A status word shown as text (colour is only a second cue). */
export function badge(word: string): SafeHtml {
  return html`<span class="badge ${word}">${word}</span>`
}

/** A labelled text input. */
export function field(name: string, label: string, value: string | undefined, extra: { type?: string; hint?: string; required?: boolean; autocomplete?: string } = {}): SafeHtml {
  const id = `f_${name}`
  return html`<div><label for="${id}">${label}</label><input type="${extra.type ?? 'text'}" id="${id}" name="${name}" value="${value ?? ''}"${extra.required ? new SafeHtml(' required') : ''}${
    extra.autocomplete ? html` autocomplete="${extra.autocomplete}"` : ''
  }${extra.hint ? html` aria-describedby="${id}_hint"` : ''}>${extra.hint ? html`<small id="${id}_hint" class="muted">${extra.hint}</small>` : ''}</div>`
}

/** A labelled select; `options` are `[value, label]`, the first usually `['', 'Any']`. */
export function select(name: string, label: string, value: string | undefined, options: readonly (readonly [string, string])[]): SafeHtml {
  const id = `f_${name}`
  return html`<div><label for="${id}">${label}</label><select id="${id}" name="${name}">${options.map(
    ([v, l]) => html`<option value="${v}"${v === (value ?? '') ? new SafeHtml(' selected') : ''}>${l}</option>`,
  )}</select></div>`
}

/** A one-button POST form (CSRF token included); `fields` become hidden inputs. */
export function actionButton(action: string, label: string, token: string, fields: Record<string, string> = {}, tone: 'primary' | 'danger' | '' = ''): SafeHtml {
  return html`<form method="post" action="${action}" class="inline">${csrf(token)}${Object.entries(fields).map(
    ([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`,
  )}<button type="submit"${tone ? html` class="${tone}"` : ''}>${label}</button></form>`
}

/** "Next page" link keeping the current filters. */
export function pager(path: string, query: Record<string, string | undefined>, next: Record<string, string> | undefined): SafeHtml {
  if (next === undefined) return html`<p class="muted">End of list.</p>`
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries({ ...query, ...next })) if (v !== undefined && v !== '') params.set(k, v)
  return html`<nav class="pager" aria-label="Pages"><a href="${path}?${params.toString()}" rel="next">Next page</a></nav>`
}
