/**
 * The overview's charts: hourly counts over the last 7 days as inline SVG bar charts, rendered on
 * the server (no script, no external asset, allowed by the console CSP as part of the document).
 *
 * Readable without colour: each series is its own labelled chart (small multiples) whose bars
 * carry a distinct fill pattern as well, every chart has a text title and summary (`role="img"`
 * with `aria-labelledby`), and the same numbers are in tables (per day, and per hour inside a
 * `<details>`). Pure: data in, markup out.
 */
import { escapeHtml } from '../web/templates/layout.js'
import { html, SafeHtml } from './html.js'

/** One series: a name and 168 hourly counts, oldest first. */
export interface HourlySeries {
  key: 'approvals' | 'denials' | 'refusals' | 'anomalies'
  label: string
  counts: number[]
}

/** Hours shown: 7 days. */
export const CHART_HOURS = 7 * 24

/**
 * The charts' window: the last 7 UTC days, today included (its later hours are still empty), so
 * every bar group and table row is one calendar day. Returns the first hour index (epoch seconds /
 * 3600) and the window `[from, to)` in epoch seconds.
 */
export function chartWindow(now: number): { firstHour: number; from: number; to: number } {
  const todayStart = Math.floor(now / 86_400) * 86_400
  const from = todayStart - 6 * 86_400
  return { firstHour: from / 3600, from, to: todayStart + 86_400 }
}

/** Lays sparse hour → count maps onto the window, zero-filled. */
export function toSeries(firstHour: number, counts: Map<number, number>): number[] {
  return Array.from({ length: CHART_HOURS }, (_, i) => counts.get(firstHour + i) ?? 0)
}

const PATTERNS: Record<HourlySeries['key'], string> = {
  approvals: '<rect width="6" height="6" fill="#0b5cad"/>',
  denials: '<rect width="6" height="6" fill="#fff"/><path d="M0 6L6 0M-1 1L1 -1M5 7L7 5" stroke="#a11c12" stroke-width="2"/>',
  refusals: '<rect width="6" height="6" fill="#fff"/><path d="M0 3H6M3 0V6" stroke="#6f42c1" stroke-width="2"/>',
  anomalies: '<rect width="6" height="6" fill="#fff"/><circle cx="3" cy="3" r="1.8" fill="#9a4b00"/>',
}

const PATTERN_NAMES: Record<HourlySeries['key'], string> = {
  approvals: 'solid bars',
  denials: 'diagonally hatched bars',
  refusals: 'cross-hatched bars',
  anomalies: 'dotted bars',
}

/** A round upper bound for the y axis. */
function niceMax(max: number): number {
  if (max <= 4) return 4
  const pow = 10 ** Math.floor(Math.log10(max))
  for (const step of [1, 2, 2.5, 5, 10]) if (step * pow >= max) return step * pow
  return 10 * pow
}

/** One chart as `<figure>` with an inline SVG. `firstHour` names the first bar's hour. */
export function renderHourlyChart(series: HourlySeries, firstHour: number): SafeHtml {
  const W = 720
  const H = 190
  const left = 40
  const right = 10
  const top = 12
  const bottom = 34
  const plotW = W - left - right
  const plotH = H - top - bottom
  const total = series.counts.reduce((a, b) => a + b, 0)
  const peak = Math.max(0, ...series.counts)
  const yMax = niceMax(peak)
  const barW = plotW / series.counts.length
  const id = `c_${series.key}`
  const y = (v: number) => top + plotH - (v / yMax) * plotH
  const bars = series.counts
    .map((v, i) => (v === 0 ? '' : `<rect class="bar" x="${(left + i * barW).toFixed(2)}" y="${y(v).toFixed(2)}" width="${Math.max(1, barW - 0.6).toFixed(2)}" height="${(top + plotH - y(v)).toFixed(2)}" fill="url(#${id}_p)"/>`))
    .join('')
  const days = Array.from({ length: 7 }, (_, d) => {
    const hour = firstHour + d * 24
    const x = left + d * 24 * barW
    const label = new Date(hour * 3600 * 1000).toISOString().slice(5, 10)
    return `<line class="grid" x1="${x.toFixed(2)}" y1="${top}" x2="${x.toFixed(2)}" y2="${top + plotH}"/><text x="${(x + 2).toFixed(2)}" y="${H - bottom + 14}">${label}</text>`
  }).join('')
  const yTicks = [0, yMax / 2, yMax]
    .map((v) => `<text x="${left - 4}" y="${(y(v) + 4).toFixed(2)}" text-anchor="end">${Number.isInteger(v) ? v : v.toFixed(1)}</text><line class="grid" x1="${left}" y1="${y(v).toFixed(2)}" x2="${W - right}" y2="${y(v).toFixed(2)}"/>`)
    .join('')
  const summary = `${series.label} per hour over the last 7 UTC days, today included, shown as ${PATTERN_NAMES[series.key]}: ${total} in total, at most ${peak} in one hour.`
  const svg = new SafeHtml(
    `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${id}_t ${id}_d" xmlns="http://www.w3.org/2000/svg">` +
      `<title id="${id}_t">${escapeHtml(series.label)} per hour, last 7 days</title><desc id="${id}_d">${escapeHtml(summary)}</desc>` +
      `<defs><pattern id="${id}_p" width="6" height="6" patternUnits="userSpaceOnUse">${PATTERNS[series.key]}</pattern></defs>` +
      yTicks +
      days +
      `<line class="axis" x1="${left}" y1="${top + plotH}" x2="${W - right}" y2="${top + plotH}"/>` +
      bars +
      `<text x="${W - right}" y="${H - 4}" text-anchor="end">hour (UTC) →</text>` +
      `</svg>`,
  )
  return html`<figure><figcaption>${series.label} <span class="muted">(${total} in 7 days)</span></figcaption>${svg}</figure>`
}

/** The same numbers as tables: one row per day, and every hour inside `<details>`. */
export function renderSeriesTables(series: readonly HourlySeries[], firstHour: number): SafeHtml {
  const days = Array.from({ length: 7 }, (_, d) => d)
  const dayLabel = (d: number) => new Date((firstHour + d * 24) * 3600 * 1000).toISOString().slice(0, 10)
  const sum = (s: HourlySeries, d: number) => s.counts.slice(d * 24, d * 24 + 24).reduce((a, b) => a + b, 0)
  const header = html`<tr><th scope="col">Day (UTC)</th>${series.map((s) => html`<th scope="col" class="num">${s.label}</th>`)}</tr>`
  const hourRows = series[0]?.counts
    .map((_, i) => i)
    .filter((i) => series.some((s) => (s.counts[i] ?? 0) > 0))
    .map(
      (i) =>
        html`<tr><th scope="row">${new Date((firstHour + i) * 3600 * 1000).toISOString().slice(0, 13).replace('T', ' ')}:00</th>${series.map((s) => html`<td class="num">${s.counts[i] ?? 0}</td>`)}</tr>`,
    )
  return html`<table>
<caption>Per day</caption>
<thead>${header}</thead>
<tbody>${days.map((d) => html`<tr><th scope="row">${dayLabel(d)}</th>${series.map((s) => html`<td class="num">${sum(s, d)}</td>`)}</tr>`)}</tbody>
</table>
<details><summary>Per hour (hours with any event)</summary>
<table><caption>Per hour</caption><thead><tr><th scope="col">Hour (UTC)</th>${series.map((s) => html`<th scope="col" class="num">${s.label}</th>`)}</tr></thead>
<tbody>${hourRows === undefined || hourRows.length === 0 ? html`<tr><td colspan="${series.length + 1}">No events in the last 7 days.</td></tr>` : hourRows}</tbody></table>
</details>`
}
