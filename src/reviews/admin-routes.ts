/**
 * The reviews domain's admin API routes (under `/admin/api`, same bearer check as the rest):
 *
 * - `GET  /reports/compliance?since=&until=&format=json|html` — the compliance report.
 * - `GET  /clients/practices?since=&until=` — per client: same-device share (RFC 10027) and
 *   declared token storage.
 * - `GET  /reviews/campaigns`, `POST /reviews/campaigns` — list (with rounds) and create.
 * - `POST /reviews/tick` — run the scheduler now (deadlines, reminders, next rounds).
 * - `GET  /reviews/rounds/:id?format=json|csv` — a round's evidence export.
 * - `GET  /reviews/inbox?reviewer=` — undecided items a reviewer may decide.
 * - `POST /reviews/items/:id/decision` — `{ decision: keep|revoke, justification, reviewer? }`;
 *   the reviewer is the token's user, or `reviewer` for a client acting for one (the console).
 *
 * Times are ISO 8601 or epoch seconds. Errors use the OAuth error body (`invalid_request`) with
 * 400, 403 (not a reviewer, own grant), 404 or 409 (already decided).
 */
import type { FastifyReply } from 'fastify'
import type { AdminApiExtension } from '../governance/admin-api.js'
import { TIME_MESSAGE, toEpochSeconds } from '../governance/admin-schemas.js'
import { defaultPracticesPeriod, summarizeClientPractices } from '../governance/client-practices.js'
import { OAuthError } from '../protocol/errors.js'
import type { Clock } from '../core/ports.js'
import type { Store } from '../storage/store.js'
import { REVIEW_ERROR_STATUS, ReviewError, type ReviewService } from './campaigns.js'
import type { EvidenceDeps } from './evidence.js'
import { createComplianceReport, renderComplianceHtml } from './report.js'

/** Query parameters as the router reads them: a parameter given more than once is a list. */
type Query = Record<string, string | string[] | undefined>

const bad = (d: string) => new OAuthError('invalid_request', d)

/**
 * The one value of query parameter `name`, or undefined when absent.
 * @throws {OAuthError} 400 `invalid_request` when it is given more than once (`since=1&since=2`
 *   would otherwise reach `Date.parse` as "1,2", a date in 2001).
 */
function one(q: Query, name: string): string | undefined {
  const value = q[name]
  if (Array.isArray(value)) throw bad(`'${name}' must be given once`)
  return value
}

function time(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined
  const seconds = toEpochSeconds(value)
  if (seconds === undefined) throw bad(`"${name}" ${TIME_MESSAGE}`)
  return seconds
}

function format<T extends string>(value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback
  if (!(allowed as readonly string[]).includes(value)) throw bad(`"format" must be one of ${allowed.join(', ')}`)
  return value as T
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof ReviewError) throw new OAuthError('invalid_request', err.message, { status: REVIEW_ERROR_STATUS[err.code], detail: err.code })
    if (err instanceof RangeError) throw bad(err.message)
    throw err
  }
}

/** The routes, for {@link AdminApiExtension}. */
export function reviewsAdminRoutes(deps: { reviews: ReviewService; evidence: () => EvidenceDeps; store: Store; clock: Clock }): AdminApiExtension {
  const routes: AdminApiExtension = (api, authenticate) => {
    api.get('/reports/compliance', async (request, reply: FastifyReply) => {
      await authenticate(request)
      const q = request.query as Query
      const fmt = format(one(q, 'format'), ['json', 'html'] as const, 'json')
      const report = await call(() => createComplianceReport(deps.evidence(), { since: time(one(q, 'since'), 'since'), until: time(one(q, 'until'), 'until') }))
      if (fmt === 'json') return report
      return reply.header('cache-control', 'no-store').type('text/html; charset=utf-8').send(renderComplianceHtml(report))
    })
    api.get('/clients/practices', async (request) => {
      await authenticate(request)
      const q = request.query as Query
      const until = time(one(q, 'until'), 'until') ?? deps.clock.nowSeconds()
      const since = time(one(q, 'since'), 'since') ?? defaultPracticesPeriod(until).since
      if (since >= until) throw bad('"since" must be before "until"')
      return summarizeClientPractices(deps.store, { since, until })
    })
    api.get('/reviews/campaigns', async (request) => {
      await authenticate(request)
      const campaigns = await deps.reviews.campaigns()
      return { items: await Promise.all(campaigns.map(async (c) => ({ ...c, rounds: await deps.reviews.rounds(c.id) }))) }
    })
    api.post('/reviews/campaigns', async (request, reply) => {
      const admin = await authenticate(request)
      const created = await call(() => deps.reviews.createCampaign(request.body, admin.actor))
      return reply.code(201).send(created)
    })
    api.post('/reviews/tick', async (request) => {
      await authenticate(request)
      return deps.reviews.tick()
    })
    api.get('/reviews/rounds/:id', async (request, reply: FastifyReply) => {
      await authenticate(request)
      const id = (request.params as { id: string }).id
      const fmt = format(one(request.query as Query, 'format'), ['json', 'csv'] as const, 'json')
      if (fmt === 'json') return call(() => deps.reviews.roundEvidence(id))
      const csv = await call(() => deps.reviews.roundEvidenceCsv(id))
      return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="review-${id.replace(/[^A-Za-z0-9._-]/g, '_')}.csv"`).send(csv)
    })
    api.get('/reviews/inbox', async (request) => {
      const admin = await authenticate(request)
      const reviewer = one(request.query as Query, 'reviewer') ?? admin.subject
      if (!reviewer) throw bad('"reviewer" is required with a token that is not a person’s')
      return { reviewer, items: await deps.reviews.inbox(reviewer) }
    })
    api.post('/reviews/items/:id/decision', async (request) => {
      const admin = await authenticate(request)
      const body = (request.body ?? {}) as Record<string, unknown>
      if (body.reviewer !== undefined && typeof body.reviewer !== 'string') throw bad('"reviewer" must be a username')
      const named = body.reviewer as string | undefined
      // A person's token decides as that person; a client's token (the console) names the reviewer.
      if (admin.subject !== null && named !== undefined && named !== admin.subject) throw bad('"reviewer" must be the token’s own user')
      const reviewer = admin.subject ?? named
      if (!reviewer) throw bad('"reviewer" is required with a token that is not a person’s')
      return call(() =>
        deps.reviews.decide((request.params as { id: string }).id, { reviewer, decision: body.decision, justification: body.justification }, { actor: admin.actor, ip: request.clientIp }),
      )
    })
  }
  routes.openApiPaths = OPENAPI_PATHS
  return routes
}

const ok = { '200': { description: 'OK' }, '400': { $ref: '#/components/responses/Error' }, '401': { $ref: '#/components/responses/Error' }, '403': { $ref: '#/components/responses/Error' } }
const timeParam = (name: string) => ({ name, in: 'query', required: false, description: 'ISO 8601 or epoch seconds', schema: { type: 'string' } })
const id = { name: 'id', in: 'path', required: true, schema: { type: 'string' } }

/** The routes above in OpenAPI 3.1. */
const OPENAPI_PATHS: Record<string, unknown> = {
  '/reports/compliance': { get: { summary: 'compliance report (NIST CSF 2.0, OWASP NHI 2025, SP 800-63B-4) with live evidence', parameters: [timeParam('since'), timeParam('until'), { name: 'format', in: 'query', schema: { type: 'string', enum: ['json', 'html'] } }], responses: ok } },
  '/clients/practices': { get: { summary: 'per client: same-device share (RFC 10027) and declared token storage', parameters: [timeParam('since'), timeParam('until')], responses: ok } },
  '/reviews/campaigns': { get: { summary: 'access-review campaigns with their rounds', responses: ok }, post: { summary: 'create a campaign (reviews.campaigns[] shape)', responses: { ...ok, '201': { description: 'Created' }, '409': { $ref: '#/components/responses/Error' } } } },
  '/reviews/tick': { post: { summary: 'run the review scheduler now (deadlines, reminders, next rounds)', responses: ok } },
  '/reviews/rounds/{id}': { get: { summary: 'a round’s evidence (JSON or CSV)', parameters: [id, { name: 'format', in: 'query', schema: { type: 'string', enum: ['json', 'csv'] } }], responses: { ...ok, '404': { $ref: '#/components/responses/Error' } } } },
  '/reviews/inbox': { get: { summary: 'undecided items a reviewer may decide', parameters: [{ name: 'reviewer', in: 'query', schema: { type: 'string' } }], responses: ok } },
  '/reviews/items/{id}/decision': { post: { summary: 'keep or revoke one item with a justification', parameters: [id], responses: { ...ok, '404': { $ref: '#/components/responses/Error' }, '409': { $ref: '#/components/responses/Error' } } } },
}
