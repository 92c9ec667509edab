/** `GET /console` — live counts and the 7-day hourly charts (viewer and up). */
import type { FastifyInstance } from 'fastify'
import { renderHourlyChart, renderSeriesTables } from '../charts.js'
import { html, page } from '../html.js'
import type { ConsoleContext } from '../index.js'
import { loadOverview, TIERS } from '../service.js'

export async function registerOverviewPage(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx
  app.get('/', { config: { consolePermission: 'read' } }, async (request, reply) => {
    const o = await loadOverview(deps.store, deps.clients, deps.clock.nowSeconds())
    const stat = (n: number, label: string, href?: string) =>
      href === undefined ? html`<li><span class="n">${n}</span>${label}</li>` : html`<li><a href="${href}"><span class="n">${n}</span>${label}</a></li>`
    const body = html`<h2>Now</h2>
<ul class="stats">
  ${stat(o.pendingCodes, 'pending device codes (waiting for a person to approve)')}
  ${stat(o.activeTotal, 'active grants', '/console/grants?status=active')}
  ${stat(o.openAnomalies, 'open anomalies', '/console/anomalies?state=open')}
</ul>
<table>
<caption>Active grants by risk tier of the client</caption>
<thead><tr>${TIERS.map((t) => html`<th scope="col" class="num">${t}</th>`)}${o.activeByTier.unknown > 0 ? html`<th scope="col" class="num">unknown client</th>` : ''}</tr></thead>
<tbody><tr>${TIERS.map((t) => html`<td class="num"><a href="/console/grants?status=active&amp;tier=${t}">${o.activeByTier[t]}</a></td>`)}${o.activeByTier.unknown > 0 ? html`<td class="num">${o.activeByTier.unknown}</td>` : ''}</tr></tbody>
</table>
<h2>Last 7 days, per hour</h2>
<div class="charts">${o.series.map((s) => renderHourlyChart(s, o.firstHour))}</div>
<h2>The same numbers as a table</h2>
${renderSeriesTables(o.series, o.firstHour)}`
    return ctx.send(reply, 200, page({ title: 'Overview', current: '/console', viewer: ctx.session(request).viewer, nav: ctx.nav, body }))
  })
}
