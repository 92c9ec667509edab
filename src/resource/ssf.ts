/**
 * Revocation state from a Shared Signals stream (OpenID SSF 1.0, CAEP `session-revoked`), as an
 * alternative to devicegate's revocation feed: the helper registers itself as a receiver (a
 * confidential client with the `ssf` scope), creates (or takes over) its stream, and learns of
 * every revoked session either by polling (RFC 8936, the default) or by push (RFC 8935, when the
 * API mounts {@link SsfRevocations.receivePush} at a public URL).
 *
 * Every SET is verified with jose against the issuer's JWKS (`typ: secevent+jwt`, `iss`, `aud` =
 * the receiver's client id). A `session-revoked` event naming a session (`sub_id.session`, the
 * token family id that devicegate puts in access tokens as `sid`) refuses that family's tokens; one
 * naming only a user refuses that user's tokens issued up to the event. Poll mode fails closed
 * when no poll succeeded within `maxStalenessMs`, as the feed does.
 *
 * Revocations made before the stream existed are not replayed: start the helper before the API
 * takes traffic, or keep access tokens short-lived.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose'
import { receivedField } from './header-fields.js'
import { basicAuthorization, RevocationUnavailableError, type ClientCredentials } from './revocation.js'

const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const PUSH = 'urn:ietf:rfc:8935'
const POLL = 'urn:ietf:rfc:8936'

/** Options of {@link SsfRevocations}. */
export interface SsfRevocationOptions {
  issuer: string
  credentials: ClientCredentials
  /** `poll` (RFC 8936, default) or `push` to this public URL of the API (RFC 8935). */
  delivery?: 'poll' | { push: { endpointUrl: string } }
  /** Poll interval in ms. Default: 1000. */
  pollIntervalMs?: number
  /** Poll mode: refuse every request when no poll succeeded for this long, ms. Default: max(5000, 5 × interval). */
  maxStalenessMs?: number
  /** How long a revoked session is remembered, seconds (the longest access-token lifetime). Default: 86400. */
  retainSeconds?: number
  fetch?: typeof fetch
  nowMs?: () => number
}

/** What a token is judged on. */
export interface SessionOfToken {
  /** The `sid` claim (token family), if any. */
  sid?: unknown
  sub?: unknown
  iat?: unknown
}

/** The receiver; see the module comment. */
export class SsfRevocations {
  readonly #issuer: string
  readonly #credentials: ClientCredentials
  readonly #fetch: typeof fetch
  readonly #nowMs: () => number
  readonly #pollIntervalMs: number
  readonly #maxStalenessMs: number
  readonly #retainMs: number
  readonly #push: { endpointUrl: string; secret: string } | undefined
  readonly #jwks: ReturnType<typeof createRemoteJWKSet>
  /** sid → when learnt (ms). */
  readonly #sessions = new Map<string, number>()
  /** sub → latest event time (epoch seconds): tokens issued up to it are refused. */
  readonly #subjects = new Map<string, number>()
  #token: { value: string; untilMs: number } | undefined
  #pollUrl: string | undefined
  #ready: Promise<void> | undefined
  #inflight: Promise<void> | undefined
  #timer: ReturnType<typeof setInterval> | undefined
  #lastSyncMs = Number.NEGATIVE_INFINITY
  #lastError: unknown
  /** Checks waiting for the next answered poll page. */
  #pageWaiters: (() => void)[] = []
  #acks: string[] = []
  #errs: Record<string, { err: string; description: string }> = {}

  constructor(options: SsfRevocationOptions) {
    this.#issuer = options.issuer.replace(/\/+$/, '')
    this.#credentials = options.credentials
    this.#fetch = options.fetch ?? fetch
    this.#nowMs = options.nowMs ?? Date.now
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000
    this.#maxStalenessMs = options.maxStalenessMs ?? Math.max(5000, 5 * this.#pollIntervalMs)
    this.#retainMs = (options.retainSeconds ?? 86_400) * 1000
    const d = options.delivery ?? 'poll'
    this.#push = d === 'poll' ? undefined : { endpointUrl: d.push.endpointUrl, secret: randomBytes(32).toString('base64url') }
    this.#jwks = createRemoteJWKSet(new URL(`${this.#issuer}/jwks`), { cooldownDuration: 1000 })
    if (this.#pollIntervalMs < 100) throw new TypeError('pollIntervalMs must be at least 100')
  }

  /** Registers the stream (once) and, in poll mode, starts polling in the background. */
  start(): Promise<void> {
    this.#ready ??= this.#register().catch((err: unknown) => {
      this.#ready = undefined
      this.#lastError = err
      throw err
    })
    if (!this.#push && !this.#timer) {
      this.#timer = setInterval(() => {
        this.sync().catch(() => {})
      }, this.#pollIntervalMs)
      this.#timer.unref?.()
    }
    return this.#ready
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
  }

  async #accessToken(): Promise<string> {
    if (this.#token && this.#token.untilMs > this.#nowMs()) return this.#token.value
    const res = await this.#fetch(`${this.#issuer}/token`, {
      method: 'POST',
      headers: { authorization: basicAuthorization(this.#credentials), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'ssf' }).toString(),
      signal: AbortSignal.timeout(5000),
    })
    if (!res.ok) throw new RevocationUnavailableError(`token endpoint answered ${res.status}`)
    const body = (await res.json()) as { access_token: string; expires_in?: number }
    this.#token = { value: body.access_token, untilMs: this.#nowMs() + Math.max(10, (body.expires_in ?? 60) - 30) * 1000 }
    return body.access_token
  }

  async #call(url: string, method: string, body?: unknown): Promise<any> {
    const res = await this.#fetch(url, {
      method,
      headers: { authorization: `Bearer ${await this.#accessToken()}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    })
    if (!res.ok) throw new RevocationUnavailableError(`${method} ${new URL(url).pathname} answered ${res.status}`)
    const text = await res.text()
    return text ? JSON.parse(text) : undefined
  }

  /** Finds this helper's stream (by description) or creates it (SSF 1.0 §8.1.1). */
  async #register(): Promise<void> {
    const meta = (await (await this.#fetch(`${this.#issuer}/.well-known/ssf-configuration`, { signal: AbortSignal.timeout(5000) })).json()) as { configuration_endpoint: string }
    const description = `devicegate-resource:${this.#push ? 'push' : 'poll'}`
    const delivery = this.#push
      ? { method: PUSH, endpoint_url: this.#push.endpointUrl, authorization_header: `Bearer ${this.#push.secret}` }
      : { method: POLL }
    const streams = (await this.#call(meta.configuration_endpoint, 'GET')) as { stream_id: string; description?: string; delivery: { endpoint_url?: string } }[]
    const existing = streams.find((s) => s.description === description)
    const stream = existing
      ? ((await this.#call(meta.configuration_endpoint, 'PATCH', { stream_id: existing.stream_id, delivery, events_requested: [SESSION_REVOKED] })) as typeof existing)
      : ((await this.#call(meta.configuration_endpoint, 'POST', { delivery, events_requested: [SESSION_REVOKED], description })) as typeof existing)
    if (!this.#push) this.#pollUrl = stream!.delivery.endpoint_url
  }

  /** Verifies one SET and applies it. @returns an RFC 8935 §2.3 error, or undefined when accepted. */
  async #apply(set: string): Promise<{ err: string; description: string } | undefined> {
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(set, this.#jwks, { issuer: this.#issuer, audience: this.#credentials.clientId, typ: 'secevent+jwt' }))
    } catch (err) {
      if ((err as Error).message === 'fetch failed') throw new RevocationUnavailableError('the JWKS cannot be fetched', { cause: err })
      return { err: 'invalid_key', description: 'the SET does not verify' }
    }
    const events = payload.events as Record<string, { event_timestamp?: number }> | undefined
    if (!events || typeof events !== 'object') return { err: 'invalid_request', description: 'no events' }
    const revoked = events[SESSION_REVOKED]
    if (revoked) {
      const subId = payload.sub_id as { session?: { id?: unknown }; user?: unknown } | undefined
      const session = subId?.session?.id
      if (typeof session === 'string') this.#sessions.set(session, this.#nowMs())
      else {
        const sub = subjectOf(subId?.user)
        if (sub !== undefined) this.#subjects.set(sub, Math.max(this.#subjects.get(sub) ?? 0, revoked.event_timestamp ?? Math.floor(this.#nowMs() / 1000)))
      }
    }
    return undefined
  }

  /**
   * Resolves when the next poll page has been answered and applied (starting a poll when none is
   * in flight); rejects when the poll fails first. A backlog spans many pages: a check waits for
   * one of them, not for all.
   */
  #nextPage(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pageWaiters.push(resolve)
      this.sync().catch(reject)
    })
  }

  /** Polls once (RFC 8936 §2): acknowledges what was applied, then takes what is new. */
  sync(): Promise<void> {
    this.#inflight ??= this.#poll().finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  async #poll(): Promise<void> {
    try {
      await this.start()
      for (let more = true; more; ) {
        const pageStarted = this.#nowMs()
        const body = (await this.#call(this.#pollUrl!, 'POST', { ack: this.#acks, setErrs: this.#errs, maxEvents: 100, returnImmediately: true })) as {
          sets: Record<string, string>
          moreAvailable?: boolean
        }
        this.#acks = []
        this.#errs = {}
        for (const [jti, set] of Object.entries(body.sets ?? {})) {
          const err = await this.#apply(set)
          if (err) this.#errs[jti] = err
          else this.#acks.push(jti)
        }
        more = body.moreAvailable === true
        // Each answered page is a successful poll: during a backlog of thousands of SETs (one per
        // family of a mass revocation; devicegate sends the user-level one first) checks go on
        // with what is applied so far instead of all waiting for the whole backlog.
        this.#lastSyncMs = pageStarted
        for (const resolve of this.#pageWaiters.splice(0)) resolve()
      }
      const cutoff = this.#nowMs() - this.#retainMs
      for (const [sid, at] of this.#sessions) if (at < cutoff) this.#sessions.delete(sid)
    } catch (err) {
      this.#lastError = err
      this.#pageWaiters.length = 0 // rejected through sync()
      throw err
    }
  }

  /**
   * Handles one RFC 8935 push (mount it at `delivery.push.endpointUrl`): checks the stream's
   * `Authorization` secret, verifies the SET and applies it. Answer with the returned status and
   * body (202 accepted; 400 `{err, description}` (RFC 8935 §2.3); 401 wrong credentials; 503 retry
   * later).
   *
   * A repeated `Authorization` field is refused with 400 `invalid_request`, whatever its lines:
   * it is not a list field (RFC 9110 §5.3) and a push carries one credential. node's
   * `headers.authorization` keeps only the first line of a repeated field, so pass the lines as
   * received in `rawHeaders` (node: `req.rawHeaders`; fastify: `request.raw.rawHeaders`);
   * without them only an `authorization` array in `headers` is seen as repeated.
   *
   * @param request.body The request body as text (`application/secevent+jwt`).
   * @param request.headers The request headers, names in lower case (node's `req.headers`).
   * @param request.rawHeaders Optional: the header fields as received, names and values alternating.
   * @see https://www.rfc-editor.org/rfc/rfc8935#section-2.3
   */
  async receivePush(request: {
    body: string
    headers: Record<string, string | string[] | undefined>
    rawHeaders?: readonly string[] | undefined
  }): Promise<{ status: number; body?: { err: string; description: string } }> {
    if (!this.#push) return { status: 404 }
    const authorization = receivedField(request, 'authorization')
    if (Array.isArray(authorization) && authorization.length !== 1) return { status: 400, body: { err: 'invalid_request', description: 'the Authorization header must be sent once' } }
    if (!sameSecretText(Array.isArray(authorization) ? authorization[0] : authorization, `Bearer ${this.#push.secret}`)) return { status: 401, body: { err: 'authentication_failed', description: 'wrong credentials' } }
    const type = String(request.headers['content-type'] ?? '')
    if (!type.startsWith('application/secevent+jwt')) return { status: 400, body: { err: 'invalid_request', description: 'expected application/secevent+jwt' } }
    try {
      const err = await this.#apply(request.body.trim())
      return err ? { status: 400, body: err } : { status: 202 }
    } catch {
      return { status: 503 }
    }
  }

  /**
   * Whether a token's session (or user, up to the event) was revoked, after making sure a poll
   * page was answered recently enough (poll mode: within 2 × the interval, else it waits for the
   * next page).
   * @throws {RevocationUnavailableError} when no poll succeeded within `maxStalenessMs`.
   */
  async isRevoked(token: SessionOfToken): Promise<boolean> {
    if (!this.#push && this.#nowMs() - this.#lastSyncMs > 2 * this.#pollIntervalMs) {
      try {
        await this.#nextPage()
      } catch {
        if (this.#nowMs() - this.#lastSyncMs > this.#maxStalenessMs)
          throw new RevocationUnavailableError('revocation state is unavailable', { cause: this.#lastError })
      }
    }
    if (typeof token.sid === 'string' && this.#sessions.has(token.sid)) return true
    if (typeof token.sub === 'string') {
      const at = this.#subjects.get(token.sub)
      if (at !== undefined && typeof token.iat === 'number' && token.iat <= at) return true
    }
    return false
  }
}

/** The `sub` of a user subject (`iss_sub`, or the `iss_sub` among `aliases`). */
function subjectOf(user: unknown): string | undefined {
  const u = user as { format?: string; sub?: unknown; identifiers?: unknown[] } | undefined
  if (u?.format === 'iss_sub' && typeof u.sub === 'string') return u.sub
  if (u?.format === 'aliases' && Array.isArray(u.identifiers)) for (const i of u.identifiers) if (subjectOf(i) !== undefined) return subjectOf(i)
  return undefined
}

/**
 * Whether the presented credential equals the expected one, compared in constant time: both are
 * hashed to SHA-256 first, so neither the content nor the length of the secret shows in the time
 * taken. `undefined` (no field) is never equal.
 */
function sameSecretText(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false
  const digest = (text: string) => createHash('sha256').update(text).digest()
  return timingSafeEqual(digest(presented), digest(expected))
}
