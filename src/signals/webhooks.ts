/**
 * Signed webhooks (Standard Webhooks 1.0): anomalies, grant revocations, administrator actions
 * and access-review events (round opened, reminder due, item decided, round closed; see
 * {@link reviewWebhookData}) POSTed as JSON to configured endpoints, through the outbox (at least
 * once, in order per endpoint, retried with backoff).
 *
 * Signing: headers `webhook-id` (the message id, the same on every attempt), `webhook-timestamp`
 * (epoch seconds of the attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
 * `${id}.${timestamp}.${body}`, keyed with the base64 part of the endpoint's `whsec_…` secret.
 * Receivers verify with any Standard Webhooks library and refuse stale timestamps.
 *
 * Secrets come from environment variables, are kept in memory only and never logged or stored.
 * URLs are checked at every delivery like SSF push endpoints (`endpoint-guard.ts`: no loopback,
 * private, link-local or metadata address, also after DNS changes) unless the operator sets
 * `allow_private_network: true` on the endpoint (an internal SIEM) or
 * `signals.allow_private_endpoints`; the configuration refuses a private IP literal up front.
 * An endpoint that has failed for longer than its `pause_after_seconds` is paused (status
 * `paused`, audit event `webhook.paused`); its deliveries wait until an operator resumes it.
 * @see https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 */
import { createHmac } from 'node:crypto'
import { WEBHOOK_EVENTS } from '../config/signals.js'
import type { EventSink } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import type { DestinationHandler, PushOutcome } from './dispatcher.js'
import { failureOf, postToEndpoint, type EndpointPolicy } from './endpoint-guard.js'
import type { DestinationRecord, OutboxEvent, SignalOutboxStore } from '../storage/store.js'

/** Event types webhooks can subscribe to (`signals.webhooks[].events`). */
export const WEBHOOK_EVENT_TYPES = WEBHOOK_EVENTS
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number]

/** A configured endpoint (from `signals.webhooks`). */
export interface WebhookEndpoint {
  /** Stable id, e.g. `siem`: the destination id is `webhook:<id>`. */
  id: string
  url: string
  /** `whsec_` + base64 key; memory only. */
  secret: string
  events: readonly WebhookEventType[]
  /** Failing longer than this pauses the endpoint, seconds. */
  pauseAfterSeconds: number
  /** The operator allows this endpoint on a private network (`allow_private_network`). */
  allowPrivateNetwork: boolean
}

/** The destination id of a configured endpoint. */
export const webhookDestinationId = (id: string) => `webhook:${id}`

/**
 * The `webhook-signature` value for one message (Standard Webhooks §"Signature scheme"):
 * `v1,` + base64 HMAC-SHA256 of `${id}.${timestamp}.${body}` with the decoded secret.
 * @throws {TypeError} when the secret is not `whsec_` + base64.
 */
export function signWebhook(secret: string, id: string, timestampSeconds: number, body: string): string {
  const key = webhookKey(secret)
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`
}

/** Decodes a `whsec_` secret. @throws {TypeError} when malformed or shorter than 24 bytes. */
export function webhookKey(secret: string): Buffer {
  if (!secret.startsWith('whsec_')) throw new TypeError('a webhook secret starts with "whsec_"')
  const b64 = secret.slice('whsec_'.length)
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new TypeError('a webhook secret is "whsec_" followed by base64')
  const key = Buffer.from(b64, 'base64')
  if (key.length < 24) throw new TypeError('a webhook secret needs at least 24 bytes of key')
  return key
}

/** The JSON body of a webhook (Standard Webhooks payload structure: `type`, `timestamp`, `data`). */
export function webhookBody(event: OutboxEvent, emailOf: (username: string) => string | undefined = () => undefined): string {
  const timestamp = new Date(event.occurredAt * 1000).toISOString()
  if (event.type.startsWith('review.')) return JSON.stringify({ type: event.type, timestamp, data: reviewWebhookData(event, emailOf) })
  const data: Record<string, unknown> = { id: event.id, clientId: event.clientId, subject: event.subject, grantId: event.grantId }
  for (const [k, v] of Object.entries(event.payload)) {
    // Detail members are JSON text in the database; sent as JSON.
    if (k === 'details' && typeof v === 'string') {
      try {
        data.details = JSON.parse(v)
        continue
      } catch {
        // keep as text
      }
    }
    data[k] = v
  }
  return JSON.stringify({ type: event.type, timestamp, data })
}

/**
 * The `data` of an access-review webhook (issue 15 §1), built from named audit facts only (no
 * justification text, never a token): `campaignId`, `roundId`, `deadlineAt` (epoch seconds) and
 * `deadline` (RFC 3339), and by type —
 * - `review.round_opened`: `number`, `items`, `reviewers: [{ reviewer, email?, items }]`;
 * - `review.reminder_due`: `items` (undecided), `reviewers: [{ reviewer, email?, items }]` (each
 *   reviewer's undecided items);
 * - `review.item_decided`: `itemId`, `decision` (keep | revoke), `via` (reviewer | deadline),
 *   `clientId`, `subject`, `grantId` (the family id, not a token);
 * - `review.round_closed`: `reason` (completed | deadline), `items`, `decided`, `kept`, `revoked`.
 */
export function reviewWebhookData(event: OutboxEvent, emailOf: (username: string) => string | undefined): Record<string, unknown> {
  let d: Record<string, unknown> = {}
  try {
    const parsed: unknown = typeof event.payload.details === 'string' ? JSON.parse(event.payload.details) : {}
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) d = parsed as Record<string, unknown>
  } catch {
    // an unreadable record: the ids below stay null
  }
  const str = (k: string) => (typeof d[k] === 'string' ? (d[k] as string) : null)
  const int = (k: string) => (typeof d[k] === 'number' && Number.isFinite(d[k]) ? (d[k] as number) : null)
  const deadlineAt = int('deadlineAt')
  const reviewers = (counts: string) => {
    const byReviewer = d[counts] !== null && typeof d[counts] === 'object' ? (d[counts] as Record<string, unknown>) : {}
    const names = Array.isArray(d.reviewers) ? d.reviewers.filter((r): r is string => typeof r === 'string') : Object.keys(byReviewer)
    return names.map((reviewer) => {
      const email = emailOf(reviewer)
      const items = byReviewer[reviewer]
      return { reviewer, ...(email ? { email } : {}), ...(typeof items === 'number' ? { items } : {}) }
    })
  }
  const base = {
    id: event.id,
    campaignId: str('campaignId'),
    roundId: str('roundId'),
    deadlineAt,
    deadline: deadlineAt === null ? null : new Date(deadlineAt * 1000).toISOString(),
  }
  switch (event.type) {
    case 'review.round_opened':
      return { ...base, number: int('number'), items: int('items'), reviewers: reviewers('itemsByReviewer') }
    case 'review.reminder_due':
      return { ...base, items: int('undecided'), reviewers: reviewers('undecidedByReviewer') }
    case 'review.item_decided':
      return { ...base, itemId: str('itemId'), decision: str('decision'), via: str('via'), clientId: event.clientId, subject: event.subject, grantId: event.grantId }
    case 'review.round_closed':
      return { ...base, reason: str('reason'), items: int('items'), decided: int('decided'), kept: int('kept'), revoked: int('revoked') }
    default:
      return base
  }
}

/** The webhook destination handler; see the module comment. */
export function webhookHandler(deps: {
  endpoints: ReadonlyMap<string, WebhookEndpoint>
  store: SignalOutboxStore
  clock: Clock
  events: EventSink | undefined
  pushTimeoutMs: number
  /** A user's e-mail address, when known (reviewers in access-review webhooks). */
  emailOf?: (username: string) => string | undefined
  /** Which endpoints may be reached, checked at every delivery (`endpoint-guard.ts`). */
  endpointPolicy: EndpointPolicy
}): DestinationHandler {
  const endpointOf = (d: DestinationRecord) => deps.endpoints.get(d.id)
  return {
    kind: 'webhook',
    async render(destination, event) {
      const endpoint = endpointOf(destination)
      if (!endpoint || !(endpoint.events as readonly string[]).includes(event.type)) return null
      return { jti: `msg_${event.id}`, payload: webhookBody(event, deps.emailOf) }
    },
    isPush: (d) => endpointOf(d) !== undefined,
    async push(destination, delivery): Promise<PushOutcome> {
      const endpoint = endpointOf(destination)
      if (!endpoint) return { ok: false, permanent: false, error: 'endpoint no longer configured' }
      const timestamp = deps.clock.nowSeconds()
      try {
        const res = await postToEndpoint(
          endpoint.url,
          {
            headers: {
              'content-type': 'application/json',
              'webhook-id': delivery.jti,
              'webhook-timestamp': String(timestamp),
              'webhook-signature': signWebhook(endpoint.secret, delivery.jti, timestamp, delivery.payload),
            },
            body: delivery.payload,
            timeoutMs: deps.pushTimeoutMs,
          },
          { allowHttp: deps.endpointPolicy.allowHttp, allowPrivate: deps.endpointPolicy.allowPrivate || endpoint.allowPrivateNetwork },
        )
        // Standard Webhooks: any 2xx is success; everything else is retried.
        return res.status >= 200 && res.status < 300 ? { ok: true } : { ok: false, permanent: false, error: `HTTP ${res.status}` }
      } catch (err) {
        return { ok: false, permanent: false, error: failureOf(err) }
      }
    },
    async afterFailure(destination, failingForSeconds) {
      const endpoint = endpointOf(destination)
      if (!endpoint || failingForSeconds < endpoint.pauseAfterSeconds) return
      const reason = `failing for ${failingForSeconds} s (more than ${endpoint.pauseAfterSeconds} s)`
      await deps.store.updateSignalDestination(destination.id, { status: 'paused', statusReason: reason }, deps.clock.nowSeconds())
      await deps.events?.record({ type: 'webhook.paused', actor: 'system', details: { endpoint: endpoint.id, failingForSeconds, pauseAfterSeconds: endpoint.pauseAfterSeconds } })
    },
  }
}

/**
 * Creates the destination of every configured endpoint that has none yet (status `enabled`). An
 * endpoint removed from the configuration keeps its row (and history) but is no longer pushed.
 */
export async function syncWebhookDestinations(store: SignalOutboxStore, endpoints: Iterable<WebhookEndpoint>, now: number): Promise<void> {
  for (const e of endpoints) {
    const id = webhookDestinationId(e.id)
    const config = { url: e.url, events: [...e.events] }
    const existing = await store.findSignalDestination(id)
    if (existing === undefined)
      await store.createSignalDestination({ id, kind: 'webhook', owner: null, config, status: 'enabled', statusReason: null, createdAt: now, updatedAt: now, nextAttemptAtMs: 0, failingSince: null })
    else await store.updateSignalDestination(id, { config }, now)
  }
}
