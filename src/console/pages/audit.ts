/**
 * Audit:
 * - `GET  /console/audit`          browse and filter (event type, actor, person, client, grant,
 *                                  time range), newest first, paged by `before` (a seq); the chain's
 *                                  last verification and its newest signed checkpoint.
 * - `POST /console/audit/verify`   verifies the whole hash chain and the checkpoints now.
 * - `GET  /console/audit/export`   the filtered time range as JSON Lines (`exportLine`, the same
 *                                  lines as `devicegate audit export`), oldest first; audited.
 */
import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { EVENT_TYPES } from '../../core/events.js'
import { exportLine, type AuditVerification } from '../../governance/audit.js'
import { actionButton, field, html, page, pager, select, time } from '../html.js'
import type { ConsoleContext } from '../index.js'
import type { AuditSearch } from '../../storage/store.js'
import { auditList } from './grants.js'
import { parseFormTime } from './revoke.js'

const PAGE_SIZE = 100

export async function registerAuditPages(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx
  /** The last verification in this process, and when it ran. */
  let lastVerification: { at: number; by: string; result: AuditVerification } | undefined

  function filtersOf(q: Record<string, unknown>): { f: Record<string, string | undefined>; search: AuditSearch } {
    const f = {
      type: ctx.text(q, 'type', 60),
      actor: ctx.text(q, 'actor'),
      person: ctx.text(q, 'person'),
      client: ctx.text(q, 'client'),
      grant: ctx.text(q, 'grant', 100),
      since: ctx.text(q, 'since', 30),
      until: ctx.text(q, 'until', 30),
    }
    const search: AuditSearch = {
      ...(f.type !== undefined ? { type: f.type } : {}),
      ...(f.actor !== undefined ? { actor: f.actor } : {}),
      ...(f.person !== undefined ? { subject: f.person } : {}),
      ...(f.client !== undefined ? { clientId: f.client } : {}),
      ...(f.grant !== undefined ? { grantId: f.grant } : {}),
      ...(f.since !== undefined ? { since: parseFormTime(f.since, 'since') } : {}),
      ...(f.until !== undefined ? { until: parseFormTime(f.until, 'until') } : {}),
    }
    return { f, search }
  }

  async function render(request: FastifyRequest, reply: FastifyReply, notice?: { tone: 'ok' | 'error'; text: string }) {
    const session = ctx.session(request)
    const q = request.query as Record<string, unknown>
    let parsed: ReturnType<typeof filtersOf>
    try {
      parsed = filtersOf(q)
    } catch (err) {
      return ctx.error(reply, request, 400, 'Filter not understood', (err as Error).message)
    }
    const before = typeof q.before === 'string' && /^\d{1,15}$/.test(q.before) ? Number(q.before) : undefined
    const [rows, checkpoint, head] = await Promise.all([
      deps.store.searchAudit(parsed.search, { limit: PAGE_SIZE + 1, ...(before !== undefined ? { beforeSeq: before } : {}) }),
      deps.store.findLastCheckpoint(),
      deps.store.readAuditHead(),
    ])
    const shown = rows.slice(0, PAGE_SIZE)
    const v = lastVerification
    const exportQuery = new URLSearchParams(Object.entries(parsed.f).filter((e): e is [string, string] => e[1] !== undefined)).toString()
    const body = html`<section class="card" aria-labelledby="chain_h"><h2 id="chain_h">Hash chain</h2>
<dl>
<dt>Events</dt><dd>${head.seq}</dd>
<dt>Newest signed checkpoint</dt><dd>${checkpoint === undefined ? 'none yet' : html`seq ${checkpoint.seq} at ${time(checkpoint.time)}`}</dd>
<dt>Last verification</dt><dd>${
      v === undefined
        ? 'not run since the server started'
        : html`${v.result.ok ? html`<strong>intact</strong>: ${v.result.checked} events and ${v.result.checkpoints} checkpoints verified` : html`<strong>broken</strong>: ${v.result.problem?.message ?? ''}`} (${time(v.at)}, by ${v.by})${v.result.warnings.length > 0 ? html`<br><span class="muted">${v.result.warnings.join('; ')}</span>` : ''}`
    }</dd>
</dl>
${deps.audit === undefined ? html`<p class="muted">The audit log is disabled in the configuration.</p>` : actionButton('/console/audit/verify', 'Verify the chain now', session.viewer.csrfToken, {}, 'primary')}
</section>
<form class="filters card" method="get" action="/console/audit" role="search" aria-label="Filter audit events">
${select('type', 'Event type', parsed.f.type, [['', 'Any type'], ...EVENT_TYPES.map((t) => [t, t] as const)])}
${field('actor', 'Actor', parsed.f.actor)}
${field('person', 'Person', parsed.f.person)}
${field('client', 'Client id', parsed.f.client)}
${field('grant', 'Grant id', parsed.f.grant)}
${field('since', 'From (UTC)', parsed.f.since, { type: 'datetime-local' })}
${field('until', 'Until (UTC)', parsed.f.until, { type: 'datetime-local' })}
<div><button type="submit" class="primary">Filter</button> <a href="/console/audit">Clear</a></div>
</form>
<p><a href="/console/audit/export${exportQuery ? `?${exportQuery}` : ''}" download>Export these events as JSON Lines</a></p>
${shown.length === 0 ? html`<p class="muted">No events match.</p>` : auditList(shown)}
${pager('/console/audit', parsed.f, rows.length > PAGE_SIZE ? { before: String(shown[shown.length - 1]!.seq) } : undefined)}`
    return ctx.send(reply, 200, page({ title: 'Audit log', current: '/console/audit', viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  app.get('/audit', { config: { consolePermission: 'read' } }, (request, reply) => render(request, reply))

  app.post('/audit/verify', { config: { consolePermission: 'read' } }, async (request, reply) => {
    if (deps.audit === undefined) return ctx.error(reply, request, 409, 'Audit log disabled', 'There is no audit log to verify.')
    await deps.audit.flush()
    const result = await deps.audit.verify()
    lastVerification = { at: deps.clock.nowSeconds(), by: ctx.session(request).user.username, result }
    await ctx.audit(request, { type: 'admin.action', details: { action: 'audit.verified', ok: result.ok, checked: result.checked, problem: result.problem?.kind ?? null } })
    return render(request, reply, result.ok ? { tone: 'ok', text: `The chain is intact (${result.checked} events).` } : { tone: 'error', text: `The chain is broken: ${result.problem?.message ?? 'unknown problem'}` })
  })

  app.get('/audit/export', { config: { consolePermission: 'read' } }, async (request, reply) => {
    let search: AuditSearch
    try {
      search = filtersOf(request.query as Record<string, unknown>).search
    } catch (err) {
      return ctx.error(reply, request, 400, 'Filter not understood', (err as Error).message)
    }
    await ctx.audit(request, { type: 'admin.action', details: { action: 'audit.exported', filter: { ...search } } })
    // Oldest first, paged by seq, so an export of the whole log never sits in memory at once.
    async function* lines() {
      let afterSeq = 0
      for (;;) {
        const page = await deps.store.listAuditEvents({ afterSeq, ...(search.since !== undefined ? { sinceTime: search.since } : {}), limit: 2000 })
        if (page.length === 0) return
        for (const r of page) {
          if (search.until !== undefined && r.time >= search.until) return
          if (
            (search.type === undefined || r.type === search.type) &&
            (search.actor === undefined || r.actor === search.actor) &&
            (search.subject === undefined || r.subject === search.subject) &&
            (search.clientId === undefined || r.clientId === search.clientId) &&
            (search.grantId === undefined || r.grantId === search.grantId)
          )
            yield exportLine(r) + '\n'
        }
        afterSeq = page[page.length - 1]!.seq
      }
    }
    const name = `devicegate-audit-${new Date(deps.clock.nowSeconds() * 1000).toISOString().slice(0, 19).replace(/:/g, '')}.jsonl`
    return reply
      .header('cache-control', 'no-store')
      .header('content-disposition', `attachment; filename="${name}"`)
      .type('application/jsonl; charset=utf-8')
      .send(Readable.from(lines()))
  })
}
