/**
 * Shared Signals stream management (OpenID SSF 1.0 §8): create, read, update, replace and delete
 * a stream, its status, its subjects and the verification event, and RFC 8936 polling. Every call
 * is made by an authenticated receiver (a confidential client) and sees only its own streams:
 * another receiver's stream id answers 404, as an unknown one does.
 *
 * Choices where the specification leaves them open (the safer one, documented in the README):
 * - `default_subjects: ALL`: a stream gets events about every subject until the receiver removes
 *   a subject; adding it back undoes the removal.
 * - Push endpoints must be `https` (unless `signals.ssf.allow_http_push` is set, for tests and
 *   development), so SETs and the receiver's `authorization_header` never cross the network in
 *   clear, and must resolve only to public addresses (unless `signals.allow_private_endpoints`):
 *   devicegate is not made to POST into its own network (`endpoint-guard.ts`; checked again at
 *   every delivery). A refused `endpoint_url` is a 400 `invalid_request`; nothing is stored.
 * - The `authorization_header` a receiver gives is stored only sealed (`signals/secrets.ts`),
 *   opened in memory when pushing, and never returned by a read (SSF 1.0 §8.1.1 lists it among
 *   the receiver-supplied delivery properties without requiring it back; a transmitter that
 *   echoed it would hand the receiver's credential to anyone holding an `ssf` token of that
 *   receiver) nor logged.
 * - Transmitter-supplied properties sent in an update are ignored, not refused.
 * - Errors are JSON `{ "err": …, "description": … }` (the RFC 8935 §2.3 shape) with the status
 *   SSF 1.0 §8.1 names: 400 malformed, 404 unknown stream, 409 too many streams, 429 verification
 *   asked too often.
 */
import { createHash } from 'node:crypto'
import type { Clock, Random } from '../../core/ports.js'
import { recordId } from '../../system.js'
import type { DeliveryRecord, DestinationRecord, DestinationStatus, SignalOutboxStore } from '../../storage/store.js'
import { checkEndpointUrl, EndpointRefusedError, type ResolveAll } from '../endpoint-guard.js'
import { sealStreamSecret, type SecretSealer } from '../secrets.js'
import { checkSubject, EVENTS_SUPPORTED, normalizeSubject, subjectKey, type SubjectIdentifier } from './events.js'

/** RFC 8935 push and RFC 8936 poll delivery method URNs (SSF 1.0 §8.1.1). */
export const DELIVERY_METHODS = { push: 'urn:ietf:rfc:8935', poll: 'urn:ietf:rfc:8936' } as const

/** Paths of the transmitter's endpoints, relative to the issuer. */
export const SSF_PATHS = {
  configuration: '/.well-known/ssf-configuration',
  streams: '/ssf/stream',
  status: '/ssf/status',
  addSubject: '/ssf/subjects/add',
  removeSubject: '/ssf/subjects/remove',
  verification: '/ssf/verify',
  poll: '/ssf/poll',
} as const

/** A refused stream-management or poll request: status and RFC 8935 §2.3-style body. */
export class SsfError extends Error {
  override readonly name = 'SsfError'
  /**
   * @param retryAfterSeconds For a 429: when the request may be repeated, sent as `Retry-After`
   *   (delay-seconds, RFC 9110 §10.2.3; RFC 6585 §4).
   */
  constructor(
    readonly status: number,
    readonly err: string,
    readonly description: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(description)
  }

  /**
   * The HTTP status, under the name fastify and the request metrics read on a thrown error (an SSF
   * 4xx is then counted as the request's fault, not as a `server_error`).
   */
  get statusCode(): number {
    return this.status
  }
}

const bad = (description: string) => new SsfError(400, 'invalid_request', description)
const notFound = () => new SsfError(404, 'not_found', 'no such stream')

/** What devicegate keeps of a stream (the destination's `config`). */
interface StreamConfig {
  description: string | null
  eventsRequested: string[]
  method: 'push' | 'poll'
  endpointUrl: string | null
  audience: string
  lastVerificationAt: number | null
}

/** Settings of the transmitter. */
export interface StreamServiceOptions {
  issuer: string
  /** Streams one receiver may have. */
  maxStreamsPerReceiver: number
  /** Accept `http:` push endpoints. */
  allowHttpPush: boolean
  /** Accept push endpoints on loopback, private, link-local or other internal addresses. */
  allowPrivateEndpoints: boolean
  /** Shortest time between two verification requests of a stream, seconds (`min_verification_interval`). */
  minVerificationIntervalSeconds: number
  /** Longest wait of a poll without `returnImmediately`, seconds. */
  longPollSeconds: number
}

function configOf(d: DestinationRecord): StreamConfig {
  const c = d.config as Partial<StreamConfig>
  return {
    description: c.description ?? null,
    eventsRequested: c.eventsRequested ?? [],
    method: c.method ?? 'poll',
    endpointUrl: c.endpointUrl ?? null,
    audience: c.audience ?? '',
    lastVerificationAt: c.lastVerificationAt ?? null,
  }
}

/**
 * Whether a stream is delivered by push, where, and its `authorization_header` as stored
 * (sealed, see `signals/secrets.ts`) for the push handler to open.
 */
export function pushTarget(d: DestinationRecord): { url: string; sealedAuthorization: string | null } | null {
  const c = configOf(d)
  return c.method === 'push' && c.endpointUrl ? { url: c.endpointUrl, sealedAuthorization: d.secret ?? null } : null
}

/** The event types a stream gets: requested ∩ supported (SSF 1.0 §8.1.1 `events_delivered`). */
export function eventsDelivered(d: DestinationRecord): string[] {
  return configOf(d).eventsRequested.filter((e) => EVENTS_SUPPORTED.includes(e))
}

/** The `aud` of a stream's SETs. */
export function audienceOf(d: DestinationRecord): string {
  return configOf(d).audience
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/**
 * The `stream_id` of a request (query parameter or body member), one string of 1–100 characters.
 * @throws {SsfError} 400 `invalid_request` saying what is wrong: missing, given more than once
 *   (`?stream_id=a&stream_id=b` arrives as an array), not a string, or of the wrong length.
 */
function streamIdOf(value: unknown): string {
  if (value === undefined || value === null || value === '') throw bad('"stream_id" is required')
  if (Array.isArray(value)) throw bad('"stream_id" must be given once')
  if (typeof value !== 'string') throw bad('"stream_id" must be a string')
  if (value.length > 100) throw bad('"stream_id" must be at most 100 characters')
  return value
}

/** Stream management and polling; see the module comment. */
export class StreamService {
  readonly #store: SignalOutboxStore
  readonly #clock: Clock
  readonly #random: Random
  readonly #options: StreamServiceOptions
  /** Makes new outbox rows and pending deliveries visible at once (the dispatcher's fan-out). */
  readonly #refresh: () => Promise<void>
  /** Asks the dispatcher to run soon (a verification event was queued). */
  readonly #wake: () => void

  /** Seals the `authorization_header`s (the key encryption of signing keys). */
  readonly #secrets: SecretSealer
  /** DNS lookup for the endpoint check (tests inject one). */
  readonly #resolveAll: ResolveAll | undefined

  constructor(deps: {
    store: SignalOutboxStore
    clock: Clock
    random: Random
    options: StreamServiceOptions
    refresh: () => Promise<void>
    wake: () => void
    secrets: SecretSealer
    resolveAll?: ResolveAll
  }) {
    this.#store = deps.store
    this.#secrets = deps.secrets
    this.#resolveAll = deps.resolveAll
    this.#clock = deps.clock
    this.#random = deps.random
    this.#options = deps.options
    this.#refresh = deps.refresh
    this.#wake = deps.wake
  }

  /** The Transmitter Configuration Metadata (SSF 1.0 §7.1). */
  metadata(jwksUri: string): Record<string, unknown> {
    const base = this.#options.issuer
    return {
      spec_version: '1_0',
      issuer: base,
      jwks_uri: jwksUri,
      delivery_methods_supported: [DELIVERY_METHODS.push, DELIVERY_METHODS.poll],
      configuration_endpoint: base + SSF_PATHS.streams,
      status_endpoint: base + SSF_PATHS.status,
      add_subject_endpoint: base + SSF_PATHS.addSubject,
      remove_subject_endpoint: base + SSF_PATHS.removeSubject,
      verification_endpoint: base + SSF_PATHS.verification,
      authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6749' }],
      default_subjects: 'ALL',
    }
  }

  /** The stream configuration as the receiver sees it (SSF 1.0 §8.1.1); never the authorization header. */
  #wire(d: DestinationRecord): Record<string, unknown> {
    const c = configOf(d)
    return {
      stream_id: d.id,
      iss: this.#options.issuer,
      aud: c.audience,
      events_supported: [...EVENTS_SUPPORTED],
      events_requested: c.eventsRequested,
      events_delivered: eventsDelivered(d),
      delivery: {
        method: c.method === 'push' ? DELIVERY_METHODS.push : DELIVERY_METHODS.poll,
        endpoint_url: c.method === 'push' ? c.endpointUrl : `${this.#options.issuer}${SSF_PATHS.poll}/${d.id}`,
      },
      min_verification_interval: this.#options.minVerificationIntervalSeconds,
      ...(c.description !== null ? { description: c.description } : {}),
    }
  }

  /**
   * Reads the receiver-supplied properties of a create or update body into `base`, checking a
   * push `endpoint_url` (https, public addresses: `endpoint-guard.ts`). `authorization` is the new
   * `authorization_header` in plaintext, null to drop the stored one, undefined to keep it.
   */
  async #readConfig(body: Record<string, unknown>, base: StreamConfig, replace: boolean): Promise<{ config: StreamConfig; authorization: string | null | undefined }> {
    const next: StreamConfig = replace ? { ...base, description: null, eventsRequested: [...EVENTS_SUPPORTED] } : { ...base }
    let authorization: string | null | undefined
    if (body.description !== undefined) {
      if (typeof body.description !== 'string' || body.description.length > 1000) throw bad('"description" must be a string of at most 1000 characters')
      next.description = body.description
    }
    if (body.events_requested !== undefined) {
      const ev = body.events_requested
      if (!Array.isArray(ev) || ev.length > 50 || ev.some((e) => typeof e !== 'string' || e.length === 0 || e.length > 300))
        throw bad('"events_requested" must be an array of event-type URIs')
      next.eventsRequested = [...new Set(ev as string[])]
    }
    if (body.delivery !== undefined || replace) {
      const delivery = body.delivery ?? {}
      if (!isObject(delivery)) throw bad('"delivery" must be an object')
      const method = delivery.method ?? DELIVERY_METHODS.poll
      if (method === DELIVERY_METHODS.poll) {
        next.method = 'poll'
        next.endpointUrl = null
        authorization = null
      } else if (method === DELIVERY_METHODS.push) {
        const url = delivery.endpoint_url
        if (typeof url !== 'string' || url.length > 2000) throw bad('push delivery needs "endpoint_url"')
        const auth = delivery.authorization_header
        if (auth !== undefined && (typeof auth !== 'string' || auth.length === 0 || auth.length > 4096 || /[\r\n]/.test(auth)))
          throw bad('"authorization_header" must be a single-line string')
        try {
          await checkEndpointUrl(url, { allowHttp: this.#options.allowHttpPush, allowPrivate: this.#options.allowPrivateEndpoints }, '"endpoint_url"', this.#resolveAll)
        } catch (err) {
          if (err instanceof EndpointRefusedError) throw bad(err.message)
          throw err
        }
        // Kept from before when an update leaves it out and the endpoint stays; replaced when given.
        authorization = typeof auth === 'string' ? auth : replace || base.endpointUrl !== url ? null : undefined
        next.method = 'push'
        next.endpointUrl = url
      } else {
        throw bad(`unsupported delivery method ${JSON.stringify(String(method).slice(0, 60))}`)
      }
    }
    return { config: next, authorization }
  }

  /** The stored form of a new `authorization_header`: sealed, bound to the stream. */
  async #sealed(streamId: string, authorization: string | null): Promise<string | null> {
    return authorization === null ? null : sealStreamSecret(this.#secrets, streamId, authorization)
  }

  async #own(owner: string, streamId: string): Promise<DestinationRecord> {
    // No stream id holds a control character (they are record ids); asked of PostgreSQL, U+0000 is
    // a data exception (22021), so such an id is answered here, as any unknown stream is.
    if (/[\u0000-\u001f\u007f]/.test(streamId)) throw notFound()
    const d = await this.#store.findSignalDestination(streamId)
    if (d === undefined || d.kind !== 'ssf_stream' || d.owner !== owner) throw notFound()
    return d
  }

  /** Creates a stream (SSF 1.0 §8.1.1.1). @returns its configuration (201). */
  async create(owner: string, body: unknown): Promise<Record<string, unknown>> {
    if (!isObject(body)) throw bad('the body must be a JSON object')
    const initial: StreamConfig = { description: null, eventsRequested: [...EVENTS_SUPPORTED], method: 'poll', endpointUrl: null, audience: owner, lastVerificationAt: null }
    const { config, authorization } = await this.#readConfig(body, initial, false)
    const existing = await this.#store.listSignalDestinations({ kind: 'ssf_stream', owner })
    if (existing.length >= this.#options.maxStreamsPerReceiver) throw new SsfError(409, 'conflict', `a receiver may have at most ${this.#options.maxStreamsPerReceiver} streams`)
    const now = this.#clock.nowSeconds()
    const id = recordId(this.#random)
    const record: DestinationRecord = {
      id,
      kind: 'ssf_stream',
      owner,
      config: { ...config },
      status: 'enabled',
      statusReason: null,
      createdAt: now,
      updatedAt: now,
      nextAttemptAtMs: 0,
      failingSince: null,
      secret: await this.#sealed(id, authorization ?? null),
    }
    await this.#store.createSignalDestination(record)
    return this.#wire(record)
  }

  /** Reads one stream, or all of the receiver's (SSF 1.0 §8.1.1.2). */
  async read(owner: string, streamId: string | undefined): Promise<Record<string, unknown> | Record<string, unknown>[]> {
    if (streamId === undefined) return (await this.#store.listSignalDestinations({ kind: 'ssf_stream', owner })).map((d) => this.#wire(d))
    return this.#wire(await this.#own(owner, streamIdOf(streamId)))
  }

  /** Updates (PATCH) or replaces (PUT) a stream's receiver-supplied properties (SSF 1.0 §8.1.1.3–4). */
  async update(owner: string, body: unknown, replace: boolean): Promise<Record<string, unknown>> {
    if (!isObject(body)) throw bad('the body must be a JSON object')
    const d = await this.#own(owner, streamIdOf(body.stream_id))
    const { config, authorization } = await this.#readConfig(body, configOf(d), replace)
    const now = this.#clock.nowSeconds()
    const secret = authorization === undefined ? {} : { secret: await this.#sealed(d.id, authorization) }
    await this.#store.updateSignalDestination(d.id, { config: { ...config }, ...secret }, now)
    return this.#wire({ ...d, config: { ...config }, updatedAt: now })
  }

  /** Deletes a stream and everything queued for it (SSF 1.0 §8.1.1.5). */
  async delete(owner: string, streamId: unknown): Promise<void> {
    const d = await this.#own(owner, streamIdOf(streamId))
    await this.#store.deleteSignalDestination(d.id)
  }

  /** Reads a stream's status (SSF 1.0 §8.1.2.1). */
  async status(owner: string, streamId: unknown): Promise<Record<string, unknown>> {
    const d = await this.#own(owner, streamIdOf(streamId))
    return { stream_id: d.id, status: d.status, ...(d.statusReason ? { reason: d.statusReason } : {}) }
  }

  /**
   * Changes a stream's status (SSF 1.0 §8.1.2.2): `enabled`; `paused` (events are kept and
   * delivered when enabled again); `disabled` (events are not kept).
   */
  async setStatus(owner: string, body: unknown): Promise<Record<string, unknown>> {
    if (!isObject(body)) throw bad('the body must be a JSON object')
    const d = await this.#own(owner, streamIdOf(body.stream_id))
    const status = body.status
    if (status !== 'enabled' && status !== 'paused' && status !== 'disabled') throw bad('"status" must be enabled, paused or disabled')
    const reason = body.reason
    if (reason !== undefined && (typeof reason !== 'string' || reason.length > 500)) throw bad('"reason" must be a string')
    await this.#store.updateSignalDestination(d.id, { status: status as DestinationStatus, statusReason: (reason as string | undefined) ?? null }, this.#clock.nowSeconds())
    return { stream_id: d.id, status, ...(reason ? { reason } : {}) }
  }

  /** Adds (or, with `included: false`, removes) a subject (SSF 1.0 §8.1.3.2–3). */
  async setSubject(owner: string, body: unknown, included: boolean): Promise<void> {
    if (!isObject(body)) throw bad('the body must be a JSON object')
    const d = await this.#own(owner, streamIdOf(body.stream_id))
    const problem = checkSubject(body.subject)
    if (problem) throw bad(`"subject": ${problem}`)
    if (body.verified !== undefined && typeof body.verified !== 'boolean') throw bad('"verified" must be a boolean')
    const subject = normalizeSubject(body.subject as SubjectIdentifier)
    await this.#store.setStreamSubject(d.id, { key: subjectKey(subject), subject, included }, this.#clock.nowSeconds())
  }

  /**
   * Queues a verification event for the stream (SSF 1.0 §8.1.4.2), delivered like every other
   * event (push or poll). @throws {SsfError} 429 when asked again within `min_verification_interval`.
   */
  async verify(owner: string, body: unknown): Promise<void> {
    if (!isObject(body)) throw bad('the body must be a JSON object')
    const d = await this.#own(owner, streamIdOf(body.stream_id))
    const state = body.state
    if (state !== undefined && (typeof state !== 'string' || state.length > 1000)) throw bad('"state" must be a string')
    const now = this.#clock.nowSeconds()
    const c = configOf(d)
    // SSF 1.0 §8.1.4.2: the transmitter MAY answer 429 inside min_verification_interval; the
    // answer says when to retry (RFC 6585 §4, RFC 9110 §10.2.3 Retry-After in seconds).
    if (c.lastVerificationAt !== null && now - c.lastVerificationAt < this.#options.minVerificationIntervalSeconds)
      throw new SsfError(
        429,
        'too_many_requests',
        `verification may be requested once every ${this.#options.minVerificationIntervalSeconds} seconds`,
        Math.max(1, Math.ceil(c.lastVerificationAt + this.#options.minVerificationIntervalSeconds - now)),
      )
    await this.#store.updateSignalDestination(d.id, { config: { ...c, lastVerificationAt: now } }, now)
    await this.#store.appendSignalEvent({
      type: 'ssf.verification',
      occurredAt: now,
      ref: null,
      target: d.id,
      payload: state === undefined ? {} : { state },
    })
    this.#wake()
  }

  /**
   * RFC 8936 §2: acknowledges (`ack`) and refuses (`setErrs`) earlier SETs, then returns up to
   * `maxEvents` pending ones (`sets`, by `jti`) in order, and `moreAvailable`. SETs stay pending
   * until acknowledged, so a lost response loses nothing. Without `returnImmediately: true` an
   * empty answer waits up to `longPollSeconds` for events.
   */
  async poll(owner: string, streamId: string, body: unknown, signal?: AbortSignal): Promise<{ sets: Record<string, string>; moreAvailable: boolean }> {
    const d = await this.#own(owner, streamId)
    if (configOf(d).method !== 'poll') throw bad('this stream is delivered by push')
    const b = body === undefined ? {} : body
    if (!isObject(b)) throw bad('the body must be a JSON object')
    const maxEvents = b.maxEvents ?? 100
    if (typeof maxEvents !== 'number' || !Number.isInteger(maxEvents) || maxEvents < 0 || maxEvents > 1000) throw bad('"maxEvents" must be an integer from 0 to 1000')
    const returnImmediately = b.returnImmediately ?? false
    if (typeof returnImmediately !== 'boolean') throw bad('"returnImmediately" must be a boolean')
    const ack = b.ack ?? []
    if (!Array.isArray(ack) || ack.length > 10_000 || ack.some((j) => typeof j !== 'string')) throw bad('"ack" must be an array of jti strings')
    const setErrs = b.setErrs ?? {}
    if (!isObject(setErrs)) throw bad('"setErrs" must be an object')
    for (const v of Object.values(setErrs)) if (!isObject(v) || typeof v.err !== 'string') throw bad('each "setErrs" member needs an "err"')
    const now = this.#clock.nowSeconds()
    await this.#store.completeSignalDeliveries(d.id, ack as string[], 'acknowledged', now)
    for (const [jti, e] of Object.entries(setErrs as Record<string, { err: string; description?: string }>))
      await this.#store.completeSignalDeliveries(d.id, [jti], 'rejected', now, `${e.err}${e.description ? `: ${String(e.description)}` : ''}`)
    if (maxEvents === 0) return { sets: {}, moreAvailable: (await this.#store.listPendingSignalDeliveries(d.id, 1)).length > 0 }
    if (d.status !== 'enabled') return { sets: {}, moreAvailable: false }
    const deadline = Date.now() + (returnImmediately ? 0 : this.#options.longPollSeconds * 1000)
    let pending: DeliveryRecord[]
    let refreshed = false
    for (;;) {
      // SETs already fanned out come first (fan-out follows the outbox order): they are answered
      // at once, and more of the outbox is fanned out only when none is waiting, so a poll during
      // a mass revocation does not wait behind the signing of another batch.
      pending = await this.#store.listPendingSignalDeliveries(d.id, maxEvents + 1)
      if (pending.length === 0) {
        await this.#refresh()
        refreshed = true
        pending = await this.#store.listPendingSignalDeliveries(d.id, maxEvents + 1)
      }
      if (pending.length > 0 || Date.now() >= deadline || signal?.aborted) break
      await new Promise((r) => setTimeout(r, 250))
    }
    // Events still in the outbox may become SETs of this stream: say so, and the receiver polls again.
    const moreAvailable = pending.length > maxEvents || (!refreshed && (await this.#store.listPendingSignalEvents(1)).length > 0)
    return { sets: Object.fromEntries(pending.slice(0, maxEvents).map((p) => [p.jti, p.payload])), moreAvailable }
  }
}

/** A SET `jti` for one event in one stream: stable, so a retried SET keeps it. */
export function setJti(eventId: string, streamId: string): string {
  return createHash('sha256').update(`${eventId}\0${streamId}`).digest('base64url').slice(0, 32)
}

