/**
 * People, clients and trusted devices:
 * - `GET  /console/people`                          people (status, groups, risk, source, second
 *                                                   factor, console role): every person the store
 *                                                   holds — configured, signed in upstream, SCIM —
 *                                                   searched by `q`, `status`, `source`, keyset-
 *                                                   paged (`after`), 50 per page; and clients
 *                                                   (tier, type, status).
 *                                                   Per client also the share of approvals over the
 *                                                   last 90 days that were same-device (issue 18 §3,
 *                                                   `summarizeClientPractices`), with its advice.
 * - `POST /console/people/:username/(disable|enable)` (admin) through {@link PrincipalAdmin}:
 *                                                   disabling revokes the person's grants at once.
 * - `POST /console/clients/:id/(disable|enable)`    (admin) the same for a client.
 * - `GET  /console/devices`                         the trusted device registry (DPoP keys).
 * - `POST /console/devices`                         (admin) `jkt`, `label`: registers a device.
 * - `POST /console/devices/:jkt/retire`             (admin) retires it and revokes its key's grants.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { defaultPracticesPeriod, PRACTICES_PERIOD_DAYS, summarizeClientPractices } from '../../governance/client-practices.js'
import { DeviceRegistryError, listDevices, registerDevice, retireDevice } from '../../governance/devices.js'
import { effectiveGroups, type Person } from '../../identity/people.js'
import type { PersonSource, PersonStatus } from '../../storage/store.js'
import { actionButton, badge, csrf, field, html, page, pager, select, time } from '../html.js'
import type { ConsoleContext } from '../index.js'
import { roleOf } from '../roles.js'
import { decodeCursor, encodeCursor } from '../service.js'

/** Rows per page of the people list. */
export const PEOPLE_PAGE_SIZE = 50

const PERSON_STATUSES = ['active', 'disabled', 'deleted'] as const satisfies readonly PersonStatus[]
const SOURCE_LABELS: Record<PersonSource, string> = { config: 'configuration', provider: 'upstream sign-in', scim: 'SCIM' }

/** A search of the people list; every field optional. */
export interface PeopleSearch {
  /** Case-insensitive substring of the user name, display name, e-mail address or a group name. */
  q?: string | undefined
  status?: string | undefined
  source?: string | undefined
  /** Keyset position: people created after it (`createdAt`, then `id`). */
  after?: { time: number; id: string } | undefined
  limit: number
}

/**
 * What a search looks in, lower-cased, once per person object: the directory replaces a person's
 * object when it changes, so a cached text never outlives what it was made from.
 */
const searchTexts = new WeakMap<Person, string>()
function searchTextOf(p: Person): string {
  let text = searchTexts.get(p)
  if (text === undefined) searchTexts.set(p, (text = [p.userName, p.displayName ?? '', p.email ?? '', ...p.groups, ...p.memberOf].join('\n').toLowerCase()))
  return text
}

/**
 * One page of people, oldest first (`createdAt`, then `id`), from everyone the identity domain
 * holds in memory (configured, signed in upstream, provisioned by SCIM; any status). One pass
 * over the list and a sort of the matches only: well under 10 ms for 10,000 people.
 * @returns the page, whether more follow, and how many match in all.
 */
export function findPeople(all: readonly Person[], s: PeopleSearch): { page: Person[]; more: boolean; total: number } {
  const needle = s.q?.toLowerCase()
  let total = 0
  const rest: Person[] = []
  for (const p of all) {
    if (s.status !== undefined && p.status !== s.status) continue
    if (s.source !== undefined && p.source !== s.source) continue
    if (needle !== undefined && !searchTextOf(p).includes(needle)) continue
    total++
    if (s.after !== undefined && (p.createdAt < s.after.time || (p.createdAt === s.after.time && p.id <= s.after.id))) continue
    rest.push(p)
  }
  rest.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return { page: rest.slice(0, s.limit), more: rest.length > s.limit, total }
}


export async function registerPeoplePages(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx
  const registry = { store: deps.store, clock: deps.clock, events: deps.events }

  async function renderPeople(request: FastifyRequest, reply: FastifyReply, notice?: { tone: 'ok' | 'error'; text: string }, status = 200) {
    const session = ctx.session(request)
    const isAdmin = session.role === 'admin'
    const token = session.viewer.csrfToken
    const q = request.query as Record<string, unknown>
    const f = { q: ctx.text(q, 'q', 200), status: ctx.text(q, 'status', 20), source: ctx.text(q, 'source', 20) }
    if (f.status !== undefined && !(PERSON_STATUSES as readonly string[]).includes(f.status))
      return ctx.error(reply, request, 400, 'Filter not understood', `"status" must be one of ${PERSON_STATUSES.join(', ')}`)
    if (f.source !== undefined && !(f.source in SOURCE_LABELS)) return ctx.error(reply, request, 400, 'Filter not understood', `"source" must be one of ${Object.keys(SOURCE_LABELS).join(', ')}`)
    const after = decodeCursor(q.after)
    if (q.after !== undefined && after === undefined) return ctx.error(reply, request, 400, 'Filter not understood', '"after" is not a page position of this list')
    const found = findPeople(deps.people.all(), { ...f, after, limit: PEOPLE_PAGE_SIZE })
    const last = found.page[found.page.length - 1]
    const next = found.more && last ? { after: encodeCursor(last.createdAt, last.id) } : undefined
    const users = found.page.map((p) => deps.users.get(p.id))
    const totp = await Promise.all(found.page.map(async (p, i) => users[i]?.totpSecret !== undefined || (await deps.store.findTotpSecret(p.id)) !== undefined))
    // [since, until) ends after the current second, so an approval made this second counts.
    const until = deps.clock.nowSeconds() + 1
    const practices = new Map((await summarizeClientPractices(deps.store, defaultPracticesPeriod(until))).clients.map((p) => [p.clientId, p]))
    const advised = deps.configuredClients.flatMap((c) => {
      const p = practices.get(c.id)
      return p?.advice === undefined ? [] : [{ client: c, advice: p.advice }]
    })
    const state = (kind: 'user' | 'client', id: string, configuredDisabled: boolean) => deps.overrides.state(kind, id) ?? (configuredDisabled ? 'disabled' : 'enabled')
    const body = html`<h2 id="people_h">People</h2>
<form class="filters card" method="get" action="/console/people" role="search" aria-label="Find people">
${field('q', 'Name, user name, e-mail or group', f.q)}
${select('status', 'Status', f.status, [['', 'Any status'], ...PERSON_STATUSES.map((s) => [s, s] as const)])}
${select('source', 'Source', f.source, [['', 'Any source'], ...Object.entries(SOURCE_LABELS)])}
<div><button type="submit" class="primary">Search</button> <a href="/console/people">Clear</a></div>
</form>
${
  found.page.length === 0
    ? html`<p class="muted">No people match.</p>`
    : html`<table aria-labelledby="people_h"><caption>${String(found.total)} ${found.total === 1 ? 'person' : 'people'}, oldest first</caption><thead><tr><th scope="col">Person</th><th scope="col">Status</th><th scope="col">Groups</th><th scope="col" class="num">Risk</th><th scope="col">Source</th><th scope="col">Second factor</th><th scope="col">Console role</th><th scope="col">Grants</th>${isAdmin ? html`<th scope="col">Action</th>` : ''}</tr></thead>
<tbody>${found.page.map((p, i) => {
      const groups = effectiveGroups(p)
      const name = p.displayName !== null && p.displayName.trim() !== '' ? p.displayName : p.userName
      return html`<tr><td>${name} (<code>${p.userName}</code>)${p.email ? html`<br><small class="muted">${p.email}</small>` : ''}</td><td>${badge(p.status)}</td><td>${groups.join(', ') || '—'}</td><td class="num">${p.risk}</td><td>${SOURCE_LABELS[p.source]}</td><td>${totp[i] ? 'TOTP' : 'none'}</td><td>${roleOf(deps.config, p.id, groups) ?? '—'}</td><td><a href="/console/grants?person=${encodeURIComponent(p.id)}">grants</a></td>${
        isAdmin
          ? html`<td>${
              p.id === session.user.username
                ? html`<span class="muted">you</span>`
                : p.status === 'active'
                  ? actionButton(`/console/people/${encodeURIComponent(p.id)}/disable`, `Disable ${p.userName}`, token, {}, 'danger')
                  : p.status === 'disabled'
                    ? actionButton(`/console/people/${encodeURIComponent(p.id)}/enable`, `Enable ${p.userName}`, token)
                    : ''
            }</td>`
          : ''
      }</tr>`
    })}</tbody></table>`
}
${pager('/console/people', f, next)}
<h2 id="clients_h">Clients</h2>
<table aria-labelledby="clients_h"><thead><tr><th scope="col">Client</th><th scope="col">Status</th><th scope="col">Risk tier</th><th scope="col">Type</th><th scope="col">Grant types</th><th scope="col">Source</th><th scope="col">Same-device approvals (${String(PRACTICES_PERIOD_DAYS)} days)</th><th scope="col">Grants</th>${isAdmin ? html`<th scope="col">Action</th>` : ''}</tr></thead>
<tbody>${deps.configuredClients.map((c) => {
      const s = state('client', c.id, c.disabled)
      const p = practices.get(c.id)
      return html`<tr><td>${c.name} (<code>${c.id}</code>)</td><td>${badge(s)}</td><td>${c.riskTier ?? 'standard'}</td><td>${c.isConfidential ? 'confidential' : 'public'}</td><td>${c.grantTypes.map((g) => g.replace('urn:ietf:params:oauth:grant-type:', '')).join(', ')}</td><td>configuration</td><td class="num">${
        p === undefined || p.approvals === 0 ? html`<span class="muted">no approvals</span>` : `${p.sameDevice} of ${p.approvals} (${Math.round(p.sameDeviceShare * 100)} %)`
      }</td><td><a href="/console/grants?client=${encodeURIComponent(c.id)}">grants</a></td>${
        isAdmin
          ? html`<td>${
              s === 'enabled'
                ? actionButton(`/console/clients/${encodeURIComponent(c.id)}/disable`, `Disable ${c.id}`, token, {}, 'danger')
                : s === 'disabled' && !c.disabled
                  ? actionButton(`/console/clients/${encodeURIComponent(c.id)}/enable`, `Enable ${c.id}`, token)
                  : ''
            }</td>`
          : ''
      }</tr>`
    })}</tbody></table>
${
  advised.length === 0
    ? ''
    : html`<h3 id="same_device_h">Apps used on the same machine as the approving browser</h3><ul aria-labelledby="same_device_h">${advised.map((a) => html`<li><strong>${a.client.name}</strong> (<code>${a.client.id}</code>): ${a.advice}</li>`)}</ul>`
}
<p class="muted">Disabling revokes every live grant at once and denies open device authorizations. Clients configured as disabled are enabled by editing the configuration; a person provisioned by SCIM may be changed again by the provisioning client.</p>`
    return ctx.send(reply, status, page({ title: 'People & clients', current: '/console/people', viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  app.get('/people', { config: { consolePermission: 'read' } }, (request, reply) => renderPeople(request, reply))

  for (const [kind, path] of [
    ['user', 'people'],
    ['client', 'clients'],
  ] as const) {
    for (const verb of ['disable', 'enable'] as const) {
      app.post(`/${path}/:id/${verb}`, { config: { consolePermission: 'administer' } }, async (request, reply) => {
        const id = (request.params as { id: string }).id
        const session = ctx.session(request)
        if (kind === 'user' && verb === 'disable' && id === session.user.username) {
          return renderPeople(request, reply, { tone: 'error', text: 'You cannot disable yourself here.' }, 409)
        }
        const revoked = await deps.principals.change(kind, id, verb === 'disable' ? 'disabled' : 'enabled', session.user.username, request.clientIp)
        if (revoked === undefined) return renderPeople(request, reply, { tone: 'error', text: kind === 'user' ? `No person "${id}".` : `No client "${id}" is configured.` }, 404)
        return renderPeople(request, reply, { tone: 'ok', text: verb === 'disable' ? `Disabled ${id}; ${revoked} grant(s) revoked.` : `Enabled ${id}.` })
      })
    }
  }

  async function renderDevices(request: FastifyRequest, reply: FastifyReply, notice?: { tone: 'ok' | 'error'; text: string }, status = 200, typed: { jkt?: string; label?: string } = {}) {
    const session = ctx.session(request)
    const isAdmin = session.role === 'admin'
    const devices = await listDevices(registry, { includeRetired: true })
    const body = html`<p>Devices known by the thumbprint of their DPoP key (RFC 7638). Policies can require a registered device; retiring one revokes every grant bound to its key.</p>
${
  devices.length === 0
    ? html`<p class="muted">No devices registered.</p>`
    : html`<table><caption>Trusted devices, newest first</caption><thead><tr><th scope="col">Label</th><th scope="col">Key thumbprint</th><th scope="col">Registered</th><th scope="col">By</th><th scope="col">Status</th><th scope="col">Grants</th>${isAdmin ? html`<th scope="col">Action</th>` : ''}</tr></thead>
<tbody>${devices.map(
        (d) =>
          html`<tr><td>${d.label}</td><td><code>${d.jkt}</code></td><td>${time(d.registeredAt)}</td><td>${d.registeredBy ?? '—'}</td><td>${d.retiredAt === null ? badge('active') : html`${badge('revoked')} retired ${time(d.retiredAt)}`}</td><td><a href="/console/revoke?kind=jkt&amp;jkt=${d.jkt}">preview revoking</a></td>${
            isAdmin ? html`<td>${d.retiredAt === null ? actionButton(`/console/devices/${d.jkt}/retire`, `Retire ${d.label}`, session.viewer.csrfToken, {}, 'danger') : ''}</td>` : ''
          }</tr>`,
      )}</tbody></table>`
}
${
  isAdmin
    ? html`<h2>Register a device</h2><form method="post" action="/console/devices" class="card">${csrf(session.viewer.csrfToken)}
${field('jkt', 'Key thumbprint (jkt, 43 characters)', typed.jkt, { required: true })}
${field('label', 'Label', typed.label, { required: true })}
<div class="actions"><button type="submit" class="primary">Register</button></div></form>`
    : ''
}`
    return ctx.send(reply, status, page({ title: 'Trusted devices', current: '/console/devices', viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  app.get('/devices', { config: { consolePermission: 'read' } }, (request, reply) => renderDevices(request, reply))

  app.post('/devices', { config: { consolePermission: 'administer' } }, async (request, reply) => {
    const f = ctx.form(request)
    const jkt = ctx.text(f, 'jkt', 100) ?? ''
    const label = ctx.text(f, 'label', 300) ?? ''
    try {
      const d = await registerDevice(registry, { jkt, label, registeredBy: ctx.session(request).user.username })
      return renderDevices(request, reply, { tone: 'ok', text: `Registered ${d.label}.` })
    } catch (err) {
      if (err instanceof DeviceRegistryError) return renderDevices(request, reply, { tone: 'error', text: err.message }, err.code === 'ERR_DEVICE_EXISTS' ? 409 : 400, { jkt, label })
      throw err
    }
  })

  app.post('/devices/:jkt/retire', { config: { consolePermission: 'administer' } }, async (request, reply) => {
    try {
      const r = await retireDevice(registry, (request.params as { jkt: string }).jkt, ctx.session(request).user.username)
      return renderDevices(request, reply, { tone: 'ok', text: `Retired ${r.device.label}; ${r.grantsRevoked} grant(s) revoked.` })
    } catch (err) {
      if (err instanceof DeviceRegistryError) return renderDevices(request, reply, { tone: 'error', text: err.message }, err.code === 'ERR_DEVICE_NOT_FOUND' ? 404 : 400)
      throw err
    }
  })
}
