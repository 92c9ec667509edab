/**
 * Access reviews — the reviewer's inbox (issue 15 §1 "Deciding"), for everyone who can sign in,
 * with or without a console role:
 * - `GET  /console/reviews`                       the undecided items of open rounds this person
 *                                                 reviews: person, app, scopes, age, last use and
 *                                                 from where, the approval's policy decision, the
 *                                                 deadline and what happens then.
 * - `POST /console/reviews/items/:id/decision`    `csrf_token`, `decision` (`keep`|`revoke`),
 *                                                 `justification` (required, 1–1000 characters).
 *
 * The page parses and renders; {@link ReviewService.decide} decides: it refuses a reviewer's own
 * grant (`ERR_OWN_GRANT`, 403), someone who is not a reviewer of the item (`ERR_NOT_REVIEWER`,
 * 403; audited as `console.access_denied`), an unknown item (404), a decided item or closed round
 * (409) and a missing justification (400) — each shown as an HTML page at that status. A `revoke`
 * revokes the grant at once and is audited (`review.item_decided`, `grant.revoked`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { MAX_JUSTIFICATION, REVIEW_ERROR_STATUS, ReviewError, type ReviewService } from '../../reviews/campaigns.js'
import { ago, badge, csrf, html, page, time } from '../html.js'
import type { ConsoleContext, ConsoleExtension } from '../index.js'

const PATH = '/console/reviews'

/**
 * The inbox as a console extension (navigation entry "Access reviews", permission `self`):
 * `createServer` adds it for its own review service.
 */
export function reviewInboxExtension(reviews: Pick<ReviewService, 'inbox' | 'decide'>): ConsoleExtension {
  return {
    nav: [{ href: PATH, label: 'Access reviews', needs: 'self' }],
    pages: [(app, ctx) => registerReviewInbox(app, ctx, reviews)],
  }
}

async function registerReviewInbox(app: FastifyInstance, ctx: ConsoleContext, reviews: Pick<ReviewService, 'inbox' | 'decide'>): Promise<void> {
  const { deps } = ctx

  async function show(request: FastifyRequest, reply: FastifyReply, notice?: { tone: 'ok' | 'error'; text: string }, status = 200) {
    const session = ctx.session(request)
    const now = deps.clock.nowSeconds()
    const items = await reviews.inbox(session.user.username)
    const token = session.viewer.csrfToken
    const body = html`<p>Grants you are asked to review. Keep the ones that are still needed; revoke the others (the app is signed out at once). Every decision needs a justification: it is kept as evidence of the review.</p>
${
  items.length === 0
    ? html`<p class="muted">Nothing to review.</p>`
    : items.map((i) => {
        const f = i.facts
        const app = deps.clients.get(i.clientId)?.name ?? f.app.name
        const label = `${f.person ?? 'unknown person'} on ${app}`
        return html`<section class="card" aria-labelledby="h_${i.id}">
<h2 id="h_${i.id}">${label}</h2>
<dl>
<dt>Person</dt><dd>${f.person ?? '—'}</dd>
<dt>App</dt><dd>${app} <span class="muted">(${i.clientId}, ${f.app.tier} risk)</span></dd>
<dt>Scopes</dt><dd><code>${f.scope}</code></dd>
<dt>Age</dt><dd>${ago(now - f.issuedAt)} (approved ${time(f.approvedAt ?? f.issuedAt)}${f.requestIp ? html`, requested from <code>${f.requestIp}</code>` : ''})</dd>
<dt>Last use</dt><dd>${f.lastUsedAt === null ? 'never' : html`${ago(now - f.lastUsedAt)} ago from <code>${f.lastUsedIp ?? 'unknown'}</code>`}</dd>
<dt>Policy decision</dt><dd>${f.policyDecision === null ? html`<span class="muted">none recorded</span>` : html`${badge(f.policyDecision.decision)} ${f.policyDecision.reasons.join(', ')}`}</dd>
<dt>Deadline</dt><dd>${time(i.deadlineAt)}; undecided, it is then <strong>${i.defaultAction === 'revoke' ? 'revoked' : 'kept'}</strong></dd>
</dl>
<form method="post" action="${PATH}/items/${i.id}/decision">${csrf(token)}
<fieldset><legend>Decision on ${label}</legend>
<div><input type="radio" id="keep_${i.id}" name="decision" value="keep" required><label for="keep_${i.id}">Keep</label></div>
<div><input type="radio" id="revoke_${i.id}" name="decision" value="revoke"><label for="revoke_${i.id}">Revoke</label></div>
</fieldset>
<label for="j_${i.id}">Justification (kept as evidence)</label><textarea id="j_${i.id}" name="justification" required maxlength="${String(MAX_JUSTIFICATION)}"></textarea>
<div class="actions"><button type="submit" class="primary">Record decision</button></div>
</form>
</section>`
      })
}`
    return ctx.send(reply, status, page({ title: 'Access reviews', current: PATH, viewer: session.viewer, nav: ctx.nav, body, notice }))
  }

  app.get('/reviews', { config: { consolePermission: 'self' } }, (request, reply) => show(request, reply))

  app.post('/reviews/items/:id/decision', { config: { consolePermission: 'self' } }, async (request, reply) => {
    const session = ctx.session(request)
    const form = ctx.form(request)
    const id = (request.params as { id: string }).id
    const justification = typeof form.justification === 'string' ? form.justification : undefined
    try {
      const item = await reviews.decide(id.slice(0, 200), { reviewer: session.user.username, decision: form.decision, justification }, { actor: session.user.username, ip: request.clientIp })
      return show(request, reply, { tone: 'ok', text: item.decision === 'revoke' ? 'Revoked: the app is signed out. Your decision is recorded.' : 'Kept. Your decision is recorded.' })
    } catch (err) {
      if (!(err instanceof ReviewError)) throw err
      if (err.code === 'ERR_NOT_REVIEWER' || err.code === 'ERR_OWN_GRANT')
        await ctx.audit(request, { type: 'console.access_denied', subject: session.user.username, details: { method: 'POST', path: request.url.split('?')[0], reason: err.code } })
      const text =
        err.code === 'ERR_OWN_GRANT'
          ? 'You cannot review your own grant; another reviewer decides it. Nothing was changed.'
          : err.code === 'ERR_NOT_REVIEWER'
            ? 'You are not a reviewer of this item. Nothing was changed.'
            : err.code === 'ERR_NOT_FOUND'
              ? 'There is no such review item. Nothing was changed.'
              : err.code === 'ERR_ALREADY_DECIDED'
                ? 'This item is already decided or its review has closed. Nothing was changed.'
                : `Not recorded: ${err.message}. Nothing was changed.`
      return show(request, reply, { tone: 'error', text }, REVIEW_ERROR_STATUS[err.code])
    }
  })
}
