/**
 * My devices — for everyone who can sign in, with or without a console role:
 * - `GET  /console/my-devices`             the device-flow grants this person approved: app, when,
 *                                          requested from where, last use and from where.
 * - `POST /console/my-devices/:id/revoke`  `csrf_token`: revokes one of them (only one's own).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { actionButton, ago, badge, html, page, pager, time } from '../html.js'
import type { ConsoleContext } from '../index.js'
import { decodeCursor, encodeCursor } from '../service.js'
import { grantStatus } from './grants.js'

const PAGE_SIZE = 50

export async function registerMyDevicesPage(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx

  async function show(request: FastifyRequest, reply: FastifyReply, notice?: { tone: 'ok' | 'error'; text: string }, status = 200) {
    const session = ctx.session(request)
    const now = deps.clock.nowSeconds()
    const q = request.query as Record<string, unknown>
    const after = decodeCursor(q.after)
    const rows = (await deps.store.searchGrants({ now, subject: session.user.username }, { limit: PAGE_SIZE + 1, ...(after ? { after } : {}) })).filter((g) => g.deviceGrantId !== null)
    const shown = rows.slice(0, PAGE_SIZE)
    const last = shown[shown.length - 1]
    const body = html`<p>The apps and devices you approved with a device code. Revoke any you do not recognise or no longer use: the app is signed out at once.</p>
${
  shown.length === 0
    ? html`<p class="muted">You have not approved any device.</p>`
    : html`<table><caption>Devices you approved, newest first</caption>
<thead><tr><th scope="col">App</th><th scope="col">Approved</th><th scope="col">Requested from</th><th scope="col">Last use</th><th scope="col">Status</th><th scope="col">Action</th></tr></thead>
<tbody>${shown.map((g) => {
        const state = grantStatus(g, now)
        const app = deps.clients.get(g.clientId)?.name ?? g.clientId
        return html`<tr><td>${app}<br><span class="muted">${g.requestUserAgent ?? ''}</span></td><td>${time(g.approvedAt ?? g.createdAt)}</td><td>${g.requestIp ?? '—'}</td><td>${g.lastUsedAt === null ? 'never' : html`${ago(now - g.lastUsedAt)} ago from ${g.lastUsedIp ?? 'unknown'}`}</td><td>${badge(state)}</td><td>${
          state === 'active' ? actionButton(`/console/my-devices/${g.id}/revoke`, `Revoke ${app}`, session.viewer.csrfToken, {}, 'danger') : ''
        }</td></tr>`
      })}</tbody></table>`
}
${pager('/console/my-devices', {}, rows.length > PAGE_SIZE && last ? { after: encodeCursor(last.createdAt, last.id) } : undefined)}`
    return ctx.send(reply, status, page({ title: 'My devices', current: '/console/my-devices', viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  app.get('/my-devices', { config: { consolePermission: 'self' } }, (request, reply) => show(request, reply))

  app.post('/my-devices/:id/revoke', { config: { consolePermission: 'self' } }, async (request, reply) => {
    const session = ctx.session(request)
    const id = (request.params as { id: string }).id
    const grant = id.length <= 100 ? await deps.store.findGrant(id) : undefined
    // Only one's own grants; another person's looks exactly like an unknown one.
    if (grant === undefined || grant.subject !== session.user.username) return show(request, reply, { tone: 'error', text: 'No such device among yours.' }, 404)
    const result = await deps.revocation.revoke({ kind: 'grant', grantId: id }, { actor: session.user.username, ip: request.clientIp, reason: 'revoked by the approver (My devices)' })
    return show(request, reply, result.grants > 0 ? { tone: 'ok', text: 'Revoked. The app is signed out.' } : { tone: 'error', text: 'It was already revoked or expired.' })
  })
}
