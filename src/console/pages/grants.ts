/**
 * Grants (token families):
 * - `GET  /console/grants`             search: person, client, risk tier, status, network, country,
 *                                      age, dormant; keyset-paged (`after`), 50 per page.
 * - `GET  /console/grants/:id`         the whole lineage: device authorization → review and policy
 *                                      decision → tokens → refreshes → last use → revocation.
 * - `POST /console/grants/:id/revoke`  `reason`, `csrf_token` (operator): central revocation.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { describeStorageClass } from '../../core/storage-class.js'
import { parseStoredDecision } from '../../policy/service.js'
import type { AuditEventRecord, StorageClassRecord } from '../../storage/store.js'
import { ago, badge, csrf, field, html, page, pager, select, time, type SafeHtml } from '../html.js'
import type { ConsoleContext } from '../index.js'
import { clientIdsOfTier, decodeCursor, encodeCursor, STORAGE_LABELS, TIERS } from '../service.js'
import type { GrantRow, GrantSearch } from '../../storage/store.js'

/** Rows per page of the grant list. */
export const GRANTS_PAGE_SIZE = 50

const DAY = 86_400

/** A grant's status at `now`. */
export function grantStatus(g: { revokedAt: number | null; expiresAt: number | null }, now: number): 'active' | 'revoked' | 'expired' {
  return g.revokedAt !== null ? 'revoked' : g.expiresAt !== null && g.expiresAt <= now ? 'expired' : 'active'
}

/** Thrown for a filter value the page cannot use; shown as a 400 page. */
export class FilterError extends Error {
  override readonly name = 'FilterError'
}

/** Parses a whole number of days, 1–3650. */
export function parseDays(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d{1,4}$/.test(value) || Number(value) < 1 || Number(value) > 3650) throw new FilterError(`"${name}" must be a whole number of days between 1 and 3650`)
  return Number(value)
}

export async function registerGrantPages(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx
  const clientOptions = [['', 'Any client'] as const, ...deps.configuredClients.map((c) => [c.id, `${c.name} (${c.id})`] as const)]

  app.get('/grants', { config: { consolePermission: 'read' } }, async (request, reply) => {
    const q = request.query as Record<string, unknown>
    const now = deps.clock.nowSeconds()
    const f = {
      person: ctx.text(q, 'person'),
      client: ctx.text(q, 'client'),
      tier: ctx.text(q, 'tier'),
      status: ctx.text(q, 'status'),
      network: ctx.text(q, 'network', 64),
      country: ctx.text(q, 'country', 20),
      older_than_days: ctx.text(q, 'older_than_days', 20),
      dormant_days: ctx.text(q, 'dormant_days', 20),
    }
    let search: GrantSearch
    try {
      if (f.status !== undefined && !['active', 'revoked', 'expired'].includes(f.status)) throw new FilterError('"status" must be active, revoked or expired')
      if (f.tier !== undefined && !(TIERS as readonly string[]).includes(f.tier)) throw new FilterError(`"tier" must be one of ${TIERS.join(', ')}`)
      if (f.country !== undefined && !/^[A-Za-z]{2}$/.test(f.country)) throw new FilterError('"country" must be a two-letter ISO 3166 code, e.g. DE')
      if (f.network !== undefined && !/^[0-9A-Fa-f:.]+$/.test(f.network)) throw new FilterError('"network" must be an address or its beginning, e.g. 203.0.113.')
      const older = parseDays(f.older_than_days, 'older_than_days')
      const dormant = parseDays(f.dormant_days, 'dormant_days')
      let clientIds: string[] | undefined = f.client === undefined ? undefined : [f.client]
      if (f.tier !== undefined) {
        const ofTier = clientIdsOfTier(deps.configuredClients, f.tier)
        clientIds = clientIds === undefined ? ofTier : clientIds.filter((c) => ofTier.includes(c))
      }
      search = {
        now,
        ...(f.person !== undefined ? { subject: f.person } : {}),
        ...(clientIds !== undefined ? { clientIds } : {}),
        ...(f.status !== undefined ? { status: f.status as GrantSearch['status'] & string } : {}),
        ...(f.network !== undefined ? { network: f.network } : {}),
        ...(f.country !== undefined ? { country: f.country.toUpperCase() } : {}),
        ...(older !== undefined ? { createdBefore: now - older * DAY } : {}),
        ...(dormant !== undefined ? { unusedSince: now - dormant * DAY } : {}),
      }
      if (q.after !== undefined && decodeCursor(q.after) === undefined) throw new FilterError('"after" is not a page position of this list')
    } catch (err) {
      if (err instanceof FilterError) return ctx.error(reply, request, 400, 'Filter not understood', err.message)
      throw err
    }
    const after = decodeCursor(q.after)
    const rows = await deps.store.searchGrants(search, { limit: GRANTS_PAGE_SIZE + 1, ...(after ? { after } : {}) })
    const shown = rows.slice(0, GRANTS_PAGE_SIZE)
    const last = shown[shown.length - 1]
    const next = rows.length > GRANTS_PAGE_SIZE && last ? { after: encodeCursor(last.createdAt, last.id) } : undefined
    const storage = await deps.store.findStorageClasses(shown.flatMap((g) => (g.deviceGrantId === null ? [] : [g.deviceGrantId])))
    const body = html`<form class="filters card" method="get" action="/console/grants" role="search" aria-label="Filter grants">
${field('person', 'Person', f.person)}
${select('client', 'Client', f.client, clientOptions)}
${select('tier', 'Risk tier', f.tier, [['', 'Any tier'], ...TIERS.map((t) => [t, t] as const)])}
${select('status', 'Status', f.status, [['', 'Any status'], ['active', 'active'], ['revoked', 'revoked'], ['expired', 'expired']])}
${field('network', 'Network', f.network, { hint: 'Request or approval address, or its beginning, e.g. 203.0.113.' })}
${field('country', 'Country', f.country, { hint: 'Two letters, either side' })}
${field('older_than_days', 'Older than (days)', f.older_than_days, { type: 'number' })}
${field('dormant_days', 'Unused for (days)', f.dormant_days, { type: 'number' })}
<div><button type="submit" class="primary">Search</button> <a href="/console/grants">Clear</a></div>
</form>
${grantTable(shown, now, 'Grants, newest first', storage)}
${pager('/console/grants', f, next)}`
    return ctx.send(reply, 200, page({ title: 'Grants', current: '/console/grants', viewer: ctx.session(request).viewer, nav: ctx.nav, body }))
  })

  app.get('/grants/:id', { config: { consolePermission: 'read' } }, async (request, reply) => {
    const id = (request.params as { id: string }).id
    return showGrant(request, reply, id)
  })

  async function showGrant(request: FastifyRequest, reply: FastifyReply, id: string, notice?: { tone: 'ok' | 'error'; text: string }, status = 200) {
    const session = ctx.session(request)
    const lineage = id.length <= 100 ? await deps.store.findGrantLineage(id) : undefined
    if (lineage === undefined) return ctx.error(reply, request, 404, 'Grant not found', 'There is no grant with this id.')
    const now = deps.clock.nowSeconds()
    const g = lineage.grant
    const d = lineage.deviceGrant
    const [policyRecord, events, anomalies, storage] = await Promise.all([
      d === undefined ? undefined : deps.store.findDeviceGrantPolicy(d.id),
      deps.store.listAuditOfGrant(g.id),
      deps.store.listAnomaliesOfGrant(g.id),
      d === undefined ? undefined : deps.store.findStorageClass(d.id),
    ])
    const decision = parseStoredDecision(policyRecord?.explanationJson)
    const approval = d?.subject && d.decidedAt !== null ? await deps.store.findDecisionEvent(d.subject, d.decidedAt, 'device_code.approved') : undefined
    const approverIp = decision?.facts.approver?.ip ?? approval?.ip ?? null
    const revocations = g.revokedAt === null ? [] : await revocationEvents(g, events)
    const client = deps.clients.get(g.clientId)
    const state = grantStatus(g, now)
    const loc = (n: { ip: string; country: string | null; asOrg: string | null } | null | undefined) =>
      n == null ? '' : [n.country, n.asOrg].filter((x) => x !== null).join(', ')
    const canAct = session.role === 'operator' || session.role === 'admin'
    const body = html`<p>${badge(state)} <strong>${client?.name ?? g.clientId}</strong> (<code>${g.clientId}</code>, risk tier ${client?.riskTier ?? 'unknown'}) for <strong>${g.subject ?? '(the client itself)'}</strong>, scope <code>${g.scope || '(none)'}</code>.</p>
<h2>Lineage</h2>
<ol class="lineage">
<li><h3>Device authorization</h3>${
      d === undefined
        ? html`<p>None: issued by client credentials.</p>`
        : html`<dl><dt>Requested</dt><dd>${time(d.createdAt)}</dd><dt>From</dt><dd><code>${d.requestIp}</code> ${loc(decision?.facts.request)}</dd><dt>User agent</dt><dd>${d.requestUserAgent ?? '—'}</dd><dt>Key binding (DPoP jkt)</dt><dd>${d.dpopJkt ? html`<code>${d.dpopJkt}</code>` : 'none (bearer)'}</dd><dt>Token storage (declared)</dt><dd>${describeStorageClass(storage?.storageClass ?? 'unknown')} <span class="muted">(<code>${storage?.storageClass ?? 'unknown'}</code>; the client’s claim, not verified${storage?.redeclaredAt ? html`; declared again at a refresh ${time(storage.redeclaredAt)}` : ''})</span></dd><dt>Status</dt><dd>${d.status}</dd></dl>`
    }</li>
<li><h3>Review</h3>${
      d === undefined || d.decidedAt === null
        ? html`<p>No review recorded.</p>`
        : html`<dl><dt>By</dt><dd>${d.subject}</dd><dt>When</dt><dd>${time(d.decidedAt)}</dd><dt>From</dt><dd>${approverIp ? html`<code>${approverIp}</code> ${loc(decision?.facts.approver)}` : 'not recorded'}</dd>
<dt>Policy decision</dt><dd>${decision ? html`${badge(decision.decision)} by <code>${decision.policyId}</code>${decision.facts.mfaDone ? ', second factor done' : ''}` : 'not recorded'}</dd>
${decision && decision.reasons.length > 0 ? html`<dt>Reason codes</dt><dd><ul>${decision.reasons.map((r) => html`<li><code>${r.code}</code> (${r.effect}, rule ${r.rule})</li>`)}</ul></dd>` : ''}
${decision && decision.proximityMismatch.length > 0 ? html`<dt>Approver and device differ in</dt><dd>${decision.proximityMismatch.join(', ')}</dd>` : ''}</dl>`
    }</li>
<li><h3>Access tokens (${lineage.accessTokens.length})</h3>${tokenTable(
      ['Issued', 'Expires', 'Revoked', 'Bound to key'],
      lineage.accessTokens.map((a) => [time(a.issuedAt), time(a.expiresAt), time(a.revokedAt), a.dpopJkt ? 'yes' : 'no']),
    )}</li>
<li><h3>Refresh tokens (${lineage.refreshTokens.length}; each refresh rotates one)</h3>${tokenTable(
      ['Issued', 'Rotated (refreshed)', 'Expires', 'Revoked'],
      lineage.refreshTokens.map((r) => [time(r.issuedAt), time(r.rotatedAt), time(r.expiresAt), time(r.revokedAt)]),
    )}</li>
<li><h3>Last use</h3><p>${g.lastUsedAt === null ? 'Never used since issue (or not reported).' : html`${time(g.lastUsedAt)} (${ago(now - g.lastUsedAt)} ago) from <code>${g.lastUsedIp ?? 'unknown'}</code>`}</p></li>
<li><h3>Revocation</h3>${
      g.revokedAt === null
        ? html`<p>Not revoked.${g.expiresAt !== null ? html` Ends ${time(g.expiresAt)}.` : ''}</p>`
        : html`<p>Revoked ${time(g.revokedAt)}.</p>${
            revocations.length === 0
              ? html`<p class="muted">No audit record names the reason.</p>`
              : html`<ul>${revocations.map((e) => html`<li>${time(e.time)} <code>${e.type}</code> by ${e.actor ?? 'unknown'}: ${describeDetails(e.details)}</li>`)}</ul>`
          }`
    }</li>
</ol>
${anomalies.length === 0 ? '' : html`<h2>Anomalies</h2><ul>${anomalies.map((a) => html`<li>${time(a.time)} <a href="/console/anomalies/${a.id}">${a.kind}</a> (${a.action})</li>`)}</ul>`}
<h2>Audit trail</h2>
${events.length === 0 ? html`<p class="muted">No audit events name this grant.</p>` : auditList(events)}
${
  state === 'active' && canAct
    ? html`<h2>Revoke</h2><form method="post" action="/console/grants/${g.id}/revoke" class="card">${csrf(session.viewer.csrfToken)}${field('reason', 'Reason (kept in the audit log)', undefined, { required: true })}<div class="actions"><button type="submit" class="danger">Revoke this grant</button></div></form>`
    : ''
}`
    return ctx.send(reply, status, page({ title: `Grant ${g.id}`, current: '/console/grants', viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  /** Audit events that explain a revocation: the grant's own, else those at its revocation time about its owner. */
  async function revocationEvents(g: { id: string; revokedAt: number | null; subject: string | null; clientId: string }, own: AuditEventRecord[]): Promise<AuditEventRecord[]> {
    const why = (e: AuditEventRecord) => e.type === 'token.revoked' || e.type === 'anomaly.raised' || e.type === 'admin.action' || e.type === 'refresh_token.reuse_detected'
    const direct = own.filter(why)
    if (direct.length > 0 || g.revokedAt === null) return direct
    const around = await deps.store.searchAudit({ since: g.revokedAt - 2, until: g.revokedAt + 3 }, { limit: 50 })
    return around.filter((e) => why(e) && (e.subject === g.subject || e.clientId === g.clientId || (e.subject === null && e.clientId === null)))
  }

  app.post('/grants/:id/revoke', { config: { consolePermission: 'act' } }, async (request, reply) => {
    const id = (request.params as { id: string }).id
    const reason = ctx.text(ctx.form(request), 'reason', 500)
    if (reason === undefined) return showGrant(request, reply, id, { tone: 'error', text: 'Give a reason for the revocation.' }, 400)
    const session = ctx.session(request)
    const result = await deps.revocation.revoke({ kind: 'grant', grantId: id }, { actor: session.user.username, ip: request.clientIp, reason })
    return showGrant(request, reply, id, result.grants > 0 ? { tone: 'ok', text: 'The grant is revoked.' } : { tone: 'error', text: 'Nothing was revoked: the grant was not live.' })
  })
}

/**
 * The grant list table (also used by the revocation preview). With `storage` (declarations by
 * device grant id) it adds the declared token storage in plain words.
 */
export function grantTable(rows: readonly GrantRow[], now: number, caption: string, storage?: ReadonlyMap<string, StorageClassRecord>): SafeHtml {
  if (rows.length === 0) return html`<p class="muted">No grants match.</p>`
  return html`<table><caption>${caption}</caption>
<thead><tr><th scope="col">Grant</th><th scope="col">Person</th><th scope="col">Client</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Requested from</th><th scope="col">Last use</th>${storage ? html`<th scope="col">Keeps its sign-in in</th>` : ''}</tr></thead>
<tbody>${rows.map(
    (g) => html`<tr><td><a href="/console/grants/${g.id}">${g.id.slice(-10)}</a></td><td>${g.subject ?? '—'}</td><td>${g.clientId}</td><td>${badge(grantStatus(g, now))}</td><td>${time(g.createdAt)}</td><td>${g.requestIp ?? '—'}</td><td>${g.lastUsedAt === null ? 'never' : html`${ago(now - g.lastUsedAt)} ago`}</td>${
      storage ? html`<td>${g.deviceGrantId === null ? '—' : STORAGE_LABELS[storage.get(g.deviceGrantId)?.storageClass ?? 'unknown']}</td>` : ''
    }</tr>`,
  )}</tbody></table>`
}

function tokenTable(headers: readonly string[], rows: readonly (readonly (SafeHtml | string)[])[]): SafeHtml {
  if (rows.length === 0) return html`<p class="muted">None.</p>`
  return html`<table><thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody></table>`
}

/** A short, readable form of an audit record's details. */
export function describeDetails(details: string): string {
  try {
    const d = JSON.parse(details) as Record<string, unknown>
    return Object.entries(d)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join('; ')
      .slice(0, 400)
  } catch {
    return ''
  }
}

/** Audit events as a table. */
export function auditList(events: readonly AuditEventRecord[]): SafeHtml {
  return html`<table><thead><tr><th scope="col">Seq</th><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Actor</th><th scope="col">Person</th><th scope="col">Client</th><th scope="col">Address</th><th scope="col">Details</th></tr></thead>
<tbody>${events.map(
    (e) => html`<tr><td class="num">${e.seq}</td><td>${time(e.time)}</td><td><code>${e.type}</code></td><td>${e.actor ?? '—'}</td><td>${e.subject ?? '—'}</td><td>${e.clientId ?? '—'}</td><td>${e.ip ?? '—'}</td><td>${describeDetails(e.details)}${e.grantId ? html` <a href="/console/grants/${e.grantId}">grant</a>` : ''}</td></tr>`,
  )}</tbody></table>`
}

