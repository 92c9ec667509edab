/**
 * Policy:
 * - `GET  /console/policy`          the policy in force (file, `sha256:` id, when loaded, the last
 *                                   reload and its error) and the explain simulator as a form; with
 *                                   `client` etc. in the query it shows the decision and why
 *                                   (as `devicegate policy explain` does; nothing is issued).
 * - `POST /console/policy/reload`   (admin) re-reads the file; an invalid file keeps the old policy.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { PolicyDecision } from '../../policy/model.js'
import { actionButton, badge, field, html, page, select, time, type SafeHtml } from '../html.js'
import type { ConsoleContext } from '../index.js'
import { parseFormTime } from './revoke.js'

const IP = /^[0-9A-Fa-f:.]{2,45}$/

export async function registerPolicyPage(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx

  function decisionView(d: PolicyDecision): SafeHtml {
    const c = d.constraints
    return html`<section class="card" aria-labelledby="decision_h"><h2 id="decision_h">Decision: ${badge(d.decision)}</h2>
<p>By policy <code>${d.policyId}</code>${d.profile ? html`, profile ${d.profile}` : ''}. Matched rules: ${d.matchedRules.join(', ') || 'none'}.</p>
<table><caption>Reasons, in rule order</caption><thead><tr><th scope="col">Effect</th><th scope="col">Reason code</th><th scope="col">Rule</th><th scope="col">Message</th></tr></thead>
<tbody>${d.reasons.length === 0 ? html`<tr><td colspan="4">No reasons.</td></tr>` : d.reasons.map((r) => html`<tr><td>${r.effect}</td><td><code>${r.code}</code></td><td>${r.rule}</td><td>${r.message ?? ''}</td></tr>`)}</tbody></table>
<dl>
<dt>Request</dt><dd>${d.facts.request.ip} ${[d.facts.request.country, d.facts.request.asOrg].filter((x) => x !== null).join(', ')}</dd>
<dt>Approver</dt><dd>${d.facts.approver ? html`${d.facts.approver.ip} ${[d.facts.approver.country, d.facts.approver.asOrg].filter((x) => x !== null).join(', ')}` : '—'}</dd>
<dt>Differ in</dt><dd>${d.proximityMismatch.join(', ') || 'nothing (same network)'}</dd>
${d.decision === 'allow' ? html`<dt>Constraints</dt><dd>access token ${c.accessTokenTtlSeconds === null ? "client's lifetime" : `≤ ${c.accessTokenTtlSeconds} s`}; ${c.refreshAllowed ? 'refresh allowed' : 'no refresh token'}${c.dpopRequired ? '; DPoP required' : ''}${c.singleSession ? '; one session per person' : ''}</dd>` : ''}
</dl></section>`
  }

  async function render(request: FastifyRequest, reply: FastifyReply, notice?: { tone: 'ok' | 'error'; text: string }, status = 200) {
    const session = ctx.session(request)
    const s = deps.policyHolder.status()
    const q = request.query as Record<string, unknown>
    const f = { client: ctx.text(q, 'client'), user: ctx.text(q, 'user'), request_ip: ctx.text(q, 'request_ip', 45), approve_ip: ctx.text(q, 'approve_ip', 45), mfa: ctx.text(q, 'mfa', 3), at: ctx.text(q, 'at', 30) }
    let result: SafeHtml = html``
    if (f.client !== undefined) {
      const client = deps.clients.get(f.client)
      const problem =
        client === undefined
          ? `"client": no client "${f.client}"`
          : f.user === undefined
            ? '"user" is needed'
            : f.request_ip === undefined || !IP.test(f.request_ip)
              ? '"request_ip" must be an IP address'
              : f.approve_ip === undefined || !IP.test(f.approve_ip)
                ? '"approve_ip" must be an IP address'
                : undefined
      let at = deps.clock.nowSeconds()
      let timeProblem: string | undefined
      try {
        if (f.at !== undefined) at = parseFormTime(f.at, 'at')
      } catch (err) {
        timeProblem = (err as Error).message
      }
      if (problem !== undefined || timeProblem !== undefined || client === undefined) {
        notice = { tone: 'error', text: problem ?? timeProblem ?? '' }
        status = 400
      } else {
        const d = await deps.policy.decide({ phase: 'explain', now: at, client, username: f.user!, mfaDone: f.mfa === 'on', requestIp: f.request_ip!, approverIp: f.approve_ip!, posture: { status: 'absent' }, dpopJkt: null })
        result = decisionView(d)
      }
    }
    const body = html`<h2>In force</h2>
<dl class="card">
<dt>File</dt><dd>${s.path ?? 'none: the built-in baseline'}</dd>
<dt>Policy id (hash)</dt><dd><code>${s.policyId}</code></dd>
<dt>Loaded</dt><dd>${time(s.loadedAt)}</dd>
<dt>Last reload</dt><dd>${s.lastReloadAt === null ? 'none since start' : html`${time(s.lastReloadAt)} — ${s.lastError === null ? 'succeeded' : 'failed, previous policy kept'}`}</dd>
${s.lastError !== null ? html`<dt>Reload error</dt><dd><pre>${s.lastError}</pre></dd>` : ''}
<dt>Rules</dt><dd>${deps.policyHolder.current().rules.length} (including the baseline)</dd>
</dl>
${session.role === 'admin' && s.path !== undefined ? actionButton('/console/policy/reload', 'Reload the policy file', session.viewer.csrfToken, {}, 'primary') : ''}
<h2>Explain a request</h2>
<form method="get" action="/console/policy" class="card filters" aria-label="Explain simulator">
${select('client', 'Client', f.client, deps.configuredClients.map((c) => [c.id, `${c.name} (${c.id})`] as const))}
${field('user', 'Approver (username)', f.user, { required: true })}
${field('request_ip', 'Device address', f.request_ip, { required: true })}
${field('approve_ip', 'Approver address', f.approve_ip, { required: true })}
${field('at', 'At (UTC; empty: now)', f.at, { type: 'datetime-local' })}
${select('mfa', 'Second factor done', f.mfa, [['', 'no'], ['on', 'yes']])}
<div><button type="submit" class="primary">Explain</button></div>
</form>
${result}`
    return ctx.send(reply, status, page({ title: 'Policy', current: '/console/policy', viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  app.get('/policy', { config: { consolePermission: 'read' } }, (request, reply) => render(request, reply))

  app.post('/policy/reload', { config: { consolePermission: 'administer' } }, async (request, reply) => {
    const ok = await deps.policyHolder.reload()
    const s = deps.policyHolder.status()
    await ctx.audit(request, { type: 'policy.reloaded', details: { ok, policyId: s.policyId, source: s.path ?? 'built-in', error: s.lastError } })
    return render(request, reply, ok ? { tone: 'ok', text: `Policy reloaded: ${s.policyId}.` } : { tone: 'error', text: 'The file is invalid; the previous policy stays in force.' }, ok ? 200 : 422)
  })
}
