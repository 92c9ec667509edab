/**
 * Anomalies:
 * - `GET  /console/anomalies`                   list and filter (kind, open/acknowledged, person,
 *                                               client, last N days); keyset-paged.
 * - `GET  /console/anomalies/:id`               one anomaly, with what it is about and the actions.
 * - `POST /console/anomalies/:id/acknowledge`   `note` (operator): acknowledged with a note, audited
 *                                               as `anomaly.acknowledged`.
 * Revoking from an anomaly goes through the grant page (its grant) or the Revoke page, pre-filled
 * with the person or the pattern (request address and client), which previews before it acts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ANOMALY_KINDS } from '../../governance/anomalies.js'
import { badge, csrf, field, html, page, pager, select, time } from '../html.js'
import type { ConsoleContext } from '../index.js'
import { decodeCursor, encodeCursor } from '../service.js'
import type { AnomalyRow } from '../../storage/store.js'
import { describeDetails, FilterError, parseDays } from './grants.js'

const PAGE_SIZE = 50

export async function registerAnomalyPages(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx

  app.get('/anomalies', { config: { consolePermission: 'read' } }, async (request, reply) => {
    const q = request.query as Record<string, unknown>
    const f = { kind: ctx.text(q, 'kind'), state: ctx.text(q, 'state'), person: ctx.text(q, 'person'), client: ctx.text(q, 'client'), days: ctx.text(q, 'days', 20) }
    let since: number | undefined
    try {
      if (f.kind !== undefined && !(ANOMALY_KINDS as readonly string[]).includes(f.kind)) throw new FilterError(`"kind" must be one of ${ANOMALY_KINDS.join(', ')}`)
      if (f.state !== undefined && f.state !== 'open' && f.state !== 'acknowledged') throw new FilterError('"state" must be open or acknowledged')
      const days = parseDays(f.days, 'days')
      if (days !== undefined) since = deps.clock.nowSeconds() - days * 86_400
      if (q.after !== undefined && decodeCursor(q.after) === undefined) throw new FilterError('"after" is not a page position of this list')
    } catch (err) {
      if (err instanceof FilterError) return ctx.error(reply, request, 400, 'Filter not understood', err.message)
      throw err
    }
    const after = decodeCursor(q.after)
    const rows = await deps.store.searchAnomalies(
      {
        ...(f.kind !== undefined ? { kind: f.kind } : {}),
        ...(f.state !== undefined ? { state: f.state as 'open' | 'acknowledged' } : {}),
        ...(f.person !== undefined ? { subject: f.person } : {}),
        ...(f.client !== undefined ? { clientId: f.client } : {}),
        ...(since !== undefined ? { since } : {}),
      },
      { limit: PAGE_SIZE + 1, ...(after ? { after } : {}) },
    )
    const shown = rows.slice(0, PAGE_SIZE)
    const last = shown[shown.length - 1]
    const body = html`<form class="filters card" method="get" action="/console/anomalies" role="search" aria-label="Filter anomalies">
${select('kind', 'Kind', f.kind, [['', 'Any kind'], ...ANOMALY_KINDS.map((k) => [k, k] as const)])}
${select('state', 'State', f.state, [['', 'Open and acknowledged'], ['open', 'open'], ['acknowledged', 'acknowledged']])}
${field('person', 'Person', f.person)}
${field('client', 'Client id', f.client)}
${field('days', 'In the last (days)', f.days, { type: 'number' })}
<div><button type="submit" class="primary">Filter</button> <a href="/console/anomalies">Clear</a></div>
</form>
${
  shown.length === 0
    ? html`<p class="muted">No anomalies match.</p>`
    : html`<table><caption>Anomalies, newest first</caption>
<thead><tr><th scope="col">When</th><th scope="col">Kind</th><th scope="col">State</th><th scope="col">Action taken</th><th scope="col">Person</th><th scope="col">Client</th><th scope="col">Address</th></tr></thead>
<tbody>${shown.map(
        (a) => html`<tr><td><a href="/console/anomalies/${a.id}">${time(a.time)}</a></td><td>${a.kind}</td><td>${badge(a.acknowledgedAt === null ? 'open' : 'acknowledged')}</td><td>${a.action}</td><td>${a.subject ?? '—'}</td><td>${a.clientId ?? '—'}</td><td>${a.ip ?? '—'}</td></tr>`,
      )}</tbody></table>`
}
${pager('/console/anomalies', f, rows.length > PAGE_SIZE && last ? { after: encodeCursor(last.time, last.id) } : undefined)}`
    return ctx.send(reply, 200, page({ title: 'Anomalies', current: '/console/anomalies', viewer: ctx.session(request).viewer, nav: ctx.nav, body }))
  })

  async function show(request: FastifyRequest, reply: FastifyReply, a: AnomalyRow, notice?: { tone: 'ok' | 'error'; text: string }, status = 200) {
    const session = ctx.session(request)
    const canAct = session.role === 'operator' || session.role === 'admin'
    const token = session.viewer.csrfToken
    const pattern = new URLSearchParams({ kind: 'pattern', ...(a.ip ? { request_ip: a.ip } : {}), ...(a.clientId ? { client_id: a.clientId } : {}) })
    const body = html`<dl>
<dt>Kind</dt><dd>${a.kind}</dd><dt>When</dt><dd>${time(a.time)}</dd><dt>Action taken</dt><dd>${a.action}</dd>
<dt>Person</dt><dd>${a.subject ?? '—'}</dd><dt>Client</dt><dd>${a.clientId ?? '—'}</dd><dt>Address</dt><dd>${a.ip ?? '—'}</dd>
<dt>Grant</dt><dd>${a.grantId ? html`<a href="/console/grants/${a.grantId}">${a.grantId}</a>` : '—'}</dd>
<dt>Details</dt><dd>${describeDetails(a.details) || '—'}</dd>
<dt>State</dt><dd>${a.acknowledgedAt === null ? badge('open') : html`${badge('acknowledged')} by ${a.acknowledgedBy} ${time(a.acknowledgedAt)}: “${a.note}”`}</dd>
</dl>
${
  canAct
    ? html`${
        a.acknowledgedAt === null
          ? html`<h2>Acknowledge</h2><form method="post" action="/console/anomalies/${a.id}/acknowledge" class="card">${csrf(token)}<label for="f_note">Note (kept in the audit log)</label><textarea id="f_note" name="note" required maxlength="1000"></textarea><div class="actions"><button type="submit" class="primary">Acknowledge</button></div></form>`
          : ''
      }
<h2>Revoke</h2>
<ul>
${a.grantId ? html`<li><form method="post" action="/console/grants/${a.grantId}/revoke" class="inline">${csrf(token)}<input type="hidden" name="reason" value="anomaly ${a.kind} ${a.id}"><button type="submit" class="danger">Revoke this grant</button></form></li>` : ''}
${a.subject ? html`<li><a href="/console/revoke?kind=user&amp;username=${encodeURIComponent(a.subject)}&amp;reason=${encodeURIComponent(`anomaly ${a.kind} ${a.id}`)}">Preview revoking every grant of ${a.subject}</a></li>` : ''}
${a.ip || a.clientId ? html`<li><a href="/console/revoke?${pattern.toString()}">Preview revoking the pattern (requests from ${a.ip ?? 'any address'}${a.clientId ? ` for ${a.clientId}` : ''})</a></li>` : ''}
</ul>`
    : ''
}`
    return ctx.send(reply, status, page({ title: `Anomaly: ${a.kind}`, current: '/console/anomalies', viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  app.get('/anomalies/:id', { config: { consolePermission: 'read' } }, async (request, reply) => {
    const id = (request.params as { id: string }).id
    const a = id.length <= 100 ? await deps.store.findAnomaly(id) : undefined
    if (a === undefined) return ctx.error(reply, request, 404, 'Anomaly not found', 'There is no anomaly with this id.')
    return show(request, reply, a)
  })

  app.post('/anomalies/:id/acknowledge', { config: { consolePermission: 'act' } }, async (request, reply) => {
    const id = (request.params as { id: string }).id
    const a = id.length <= 100 ? await deps.store.findAnomaly(id) : undefined
    if (a === undefined) return ctx.error(reply, request, 404, 'Anomaly not found', 'There is no anomaly with this id.')
    const note = ctx.text(ctx.form(request), 'note', 1000)
    if (note === undefined) return show(request, reply, a, { tone: 'error', text: 'Write a note: what was checked, what was decided.' }, 400)
    const session = ctx.session(request)
    const first = await deps.store.acknowledgeAnomaly(a.id, session.user.username, note, deps.clock.nowSeconds())
    if (first) {
      await ctx.audit(request, { type: 'anomaly.acknowledged', subject: a.subject, clientId: a.clientId, grantId: a.grantId, details: { anomalyId: a.id, kind: a.kind, note } })
    }
    const updated = (await deps.store.findAnomaly(a.id))!
    return show(request, reply, updated, first ? { tone: 'ok', text: 'Acknowledged.' } : { tone: 'error', text: 'It was already acknowledged; the first acknowledgement stands.' }, first ? 200 : 409)
  })
}
