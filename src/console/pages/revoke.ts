/**
 * Bulk revocation by person, client, device key, time (the kill switch) or phishing pattern:
 * - `GET  /console/revoke`            the form; with `kind` (and its fields) it also shows the dry
 *                                     run: how many grants and open device authorizations would be
 *                                     revoked, and the newest of them (viewer and up may preview).
 * - `POST /console/revoke`            the same fields, `reason`, `confirm_count` (operator): revokes
 *                                     only when `confirm_count` equals the count a fresh dry run
 *                                     gives now; otherwise 400 with the new preview.
 * Both call the central {@link RevocationService} that the admin API and the CLI use.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { RevocationTargetError, type RevocationTarget } from '../../governance/revocation.js'
import { csrf, field, html, page, select, type SafeHtml } from '../html.js'
import type { ConsoleContext } from '../index.js'
import { grantTable } from './grants.js'

const KINDS = [
  ['user', 'Every grant of a person'],
  ['client', 'Every grant of a client'],
  ['jkt', 'Every grant bound to a device key (DPoP jkt)'],
  ['before', 'Everything issued before a time (kill switch)'],
  ['pattern', 'Phishing pattern (request address, client, approver, time window)'],
] as const

type Fields = Record<string, string | undefined>

const FIELD_NAMES = ['kind', 'username', 'client_id', 'jkt', 'time', 'request_ip', 'approved_by', 'from', 'to'] as const

/** Thrown for form input that names no usable target. */
class TargetError extends Error {}

/**
 * A time from the form: `datetime-local` (`2026-12-06T22:30`, taken as UTC) or ISO 8601 with zone.
 * @returns epoch seconds.
 */
export function parseFormTime(value: string, name: string): number {
  const v = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value) ? `${value}Z` : value
  const ms = /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : Number.NaN
  if (Number.isNaN(ms)) throw new TargetError(`"${name}" must be a date and time, e.g. 2026-12-06T22:30 (UTC)`)
  return Math.floor(ms / 1000)
}

/** Builds the revocation target from the form fields. @throws {TargetError} */
export function targetOf(f: Fields): RevocationTarget {
  const need = (name: string) => {
    const v = f[name]
    if (v === undefined) throw new TargetError(`"${name}" is needed for this kind of revocation`)
    return v
  }
  switch (f.kind) {
    case 'user':
      return { kind: 'user', subject: need('username') }
    case 'client':
      return { kind: 'client', clientId: need('client_id') }
    case 'jkt':
      return { kind: 'jkt', jkt: need('jkt') }
    case 'before':
      return { kind: 'before', time: parseFormTime(need('time'), 'time') }
    case 'pattern':
      return {
        kind: 'pattern',
        pattern: {
          ...(f.request_ip !== undefined ? { requestIp: f.request_ip } : {}),
          ...(f.client_id !== undefined ? { clientId: f.client_id } : {}),
          ...(f.approved_by !== undefined ? { approvedBy: f.approved_by } : {}),
          ...(f.from !== undefined ? { from: parseFormTime(f.from, 'from') } : {}),
          ...(f.to !== undefined ? { to: parseFormTime(f.to, 'to') } : {}),
        },
      }
    default:
      throw new TargetError(`"kind" must be one of ${KINDS.map(([k]) => k).join(', ')}`)
  }
}

export async function registerRevokePage(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx

  function form(f: Fields): SafeHtml {
    return html`<form method="get" action="/console/revoke" class="card" aria-label="What to revoke">
${select('kind', 'Revoke', f.kind, [['', 'Choose…'], ...KINDS])}
<p class="muted">Fill in the fields of the chosen kind; a pattern needs at least one of its fields, and all given ones must match.</p>
<div class="filters">
${field('username', 'Person (kind: person)', f.username)}
${field('client_id', 'Client id (kind: client or pattern)', f.client_id)}
${field('jkt', 'Device key thumbprint (kind: device key)', f.jkt)}
${field('time', 'Issued before (kind: time), UTC', f.time, { type: 'datetime-local' })}
${field('request_ip', 'Requested from address or CIDR (pattern)', f.request_ip)}
${field('approved_by', 'Approved by (pattern)', f.approved_by)}
${field('from', 'Requested at or after (pattern), UTC', f.from, { type: 'datetime-local' })}
${field('to', 'Requested before (pattern), UTC', f.to, { type: 'datetime-local' })}
${field('reason', 'Reason', f.reason)}
</div>
<div class="actions"><button type="submit" class="primary">Preview (dry run)</button></div>
</form>`
  }

  async function render(request: FastifyRequest, reply: FastifyReply, f: Fields, notice?: { tone: 'ok' | 'error'; text: string }, status = 200) {
    const session = ctx.session(request)
    let preview: SafeHtml = html``
    if (f.kind !== undefined) {
      try {
        const target = targetOf(f)
        const result = await deps.revocation.revoke(target, { dryRun: true, actor: session.user.username, ip: request.clientIp, listLimit: 20 })
        const total = result.grants + result.deviceAuthorizations
        const canAct = session.role === 'operator' || session.role === 'admin'
        preview = html`<section aria-labelledby="preview_h" class="card"><h2 id="preview_h">Preview</h2>
<p><strong>${result.grants}</strong> grant(s) would be revoked and <strong>${result.deviceAuthorizations}</strong> open device authorization(s) denied: <strong>${total}</strong> in all.</p>
${grantTable(
  result.listed.map((g) => ({ ...g, policyDecision: null, approvedAt: g.approvedAt })),
  deps.clock.nowSeconds(),
  result.grants > result.listed.length ? `The newest ${result.listed.length} of ${result.grants}` : 'Grants that would be revoked',
)}
${
  total > 0 && canAct
    ? html`<form method="post" action="/console/revoke">${csrf(session.viewer.csrfToken)}${FIELD_NAMES.map((n) => (f[n] === undefined ? '' : html`<input type="hidden" name="${n}" value="${f[n]}">`))}
<input type="hidden" name="reason" value="${f.reason ?? ''}">
${field('confirm_count', `Type ${total} to confirm`, undefined, { required: true, autocomplete: 'off' })}
<div class="actions"><button type="submit" class="danger">Revoke ${total}</button></div></form>`
    : total > 0
      ? html`<p class="muted">Your role can preview but not revoke.</p>`
      : ''
}</section>`
      } catch (err) {
        if (!(err instanceof TargetError || err instanceof RevocationTargetError)) throw err
        notice = { tone: 'error', text: err.message }
        status = 400
      }
    }
    return ctx.send(reply, status, page({ title: 'Revoke', current: '/console/revoke', viewer: session.viewer, nav: ctx.nav, body: html`${form(f)}${preview}`, notice }))
  }

  const fieldsOf = (source: Record<string, unknown>): Fields => Object.fromEntries([...FIELD_NAMES, 'reason'].map((n) => [n, ctx.text(source, n, n === 'reason' ? 500 : 200)]))

  app.get('/revoke', { config: { consolePermission: 'read' } }, (request, reply) => render(request, reply, fieldsOf(request.query as Record<string, unknown>)))

  app.post('/revoke', { config: { consolePermission: 'act' } }, async (request, reply) => {
    const body = ctx.form(request)
    const f = fieldsOf(body)
    const session = ctx.session(request)
    let target: RevocationTarget
    try {
      target = targetOf(f)
      const dry = await deps.revocation.revoke(target, { dryRun: true, actor: session.user.username, listLimit: 0 })
      const total = dry.grants + dry.deviceAuthorizations
      if (ctx.text(body, 'confirm_count', 20) !== String(total)) {
        return render(request, reply, f, { tone: 'error', text: `Nothing was revoked: the confirmation must be the current count, ${total}.` }, 400)
      }
    } catch (err) {
      if (err instanceof TargetError || err instanceof RevocationTargetError) return render(request, reply, f, { tone: 'error', text: err.message }, 400)
      throw err
    }
    const result = await deps.revocation.revoke(target, { actor: session.user.username, ip: request.clientIp, reason: f.reason ?? 'console bulk revocation', listLimit: 0 })
    return render(request, reply, {}, { tone: 'ok', text: `Revoked ${result.grants} grant(s) and denied ${result.deviceAuthorizations} open device authorization(s).` })
  })
}
