/**
 * Revocation state for the resource-server helper: either devicegate's revocation feed
 * (`GET /revocations?since=`), polled in the background, or token introspection (RFC 7662) with a
 * short cache. Either way a token revoked at the server is refused within a bounded delay.
 */
import { createHash } from 'node:crypto'

/** Credentials of a confidential client allowed to introspect (`introspection: true`). */
export interface ClientCredentials {
  clientId: string
  clientSecret: string
}

/** HTTP Basic credentials (RFC 6749 §2.3.1: form-urlencoded, then base64). */
export function basicAuthorization({ clientId, clientSecret }: ClientCredentials): string {
  const enc = (v: string) => encodeURIComponent(v).replace(/%20/g, '+')
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`
}

/** The body of `GET /revocations` (see the authorization server's revocation feed). */
interface FeedBody {
  now: number
  access_tokens: { jti: string; revoked_at: number; exp: number }[]
  grants: { id: string; revoked_at: number }[]
}

/** Thrown when revocation state cannot be established (the helper then fails closed). */
export class RevocationUnavailableError extends Error {
  override readonly name = 'RevocationUnavailableError'
}

/**
 * How far back each feed poll asks again, in seconds: revocations whose transaction commits up to
 * this long after its time stamp are still seen (see {@link RevocationFeed}).
 */
export const FEED_OVERLAP_SECONDS = 30

/**
 * Follows the revocation feed: one request per `pollIntervalMs` (default 1000), asking only for
 * what changed since the server time of the previous answer. Revoked `jti`s are kept until their
 * token's `exp`. When the last successful poll is older than twice the interval, the next check
 * waits for a fresh poll first; when none succeeds within `maxStalenessMs`, checks fail (closed).
 * So a revoked token is refused at most about 2 × `pollIntervalMs` after its revocation commits.
 * Each poll asks from {@link FEED_OVERLAP_SECONDS} before the previous answer's server time, so a
 * revocation committed late (stamped before an earlier answer) is not missed; the overlap costs
 * re-reading the last 30 s of revocations at each poll.
 */
export class RevocationFeed {
  readonly #url: string
  readonly #authorization: string
  readonly #fetch: typeof fetch
  readonly #pollIntervalMs: number
  readonly #maxStalenessMs: number
  readonly #nowMs: () => number
  readonly #revoked = new Map<string, number>() // jti → exp (epoch seconds)
  #since = 0
  #lastSyncMs = Number.NEGATIVE_INFINITY
  #inflight: Promise<void> | undefined
  #timer: ReturnType<typeof setInterval> | undefined
  #lastError: unknown

  constructor(options: {
    url: string
    credentials: ClientCredentials
    pollIntervalMs?: number
    maxStalenessMs?: number
    fetch?: typeof fetch
    nowMs?: () => number
  }) {
    this.#url = options.url
    this.#authorization = basicAuthorization(options.credentials)
    this.#fetch = options.fetch ?? fetch
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000
    this.#maxStalenessMs = options.maxStalenessMs ?? Math.max(5000, 5 * this.#pollIntervalMs)
    this.#nowMs = options.nowMs ?? Date.now
    if (this.#pollIntervalMs < 100) throw new TypeError('pollIntervalMs must be at least 100')
  }

  /** Starts background polling (the timer does not keep the process alive). */
  start(): void {
    if (this.#timer) return
    this.#timer = setInterval(() => {
      this.sync().catch(() => {})
    }, this.#pollIntervalMs)
    this.#timer.unref?.()
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** Polls the feed once (concurrent callers share one request). */
  sync(): Promise<void> {
    this.#inflight ??= this.#poll().finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  async #poll(): Promise<void> {
    const started = this.#nowMs()
    try {
      const res = await this.#fetch(`${this.#url}?since=${this.#since}`, {
        headers: { authorization: this.#authorization, accept: 'application/json' },
        signal: AbortSignal.timeout(Math.max(2000, this.#pollIntervalMs)),
      })
      if (!res.ok) throw new RevocationUnavailableError(`revocation feed answered ${res.status}`)
      const body = (await res.json()) as FeedBody
      for (const t of body.access_tokens) this.#revoked.set(t.jti, t.exp)
      // The next poll asks again for the last FEED_OVERLAP_SECONDS before this answer's server
      // time: a revocation is stamped when its transaction starts and seen when it commits, so a
      // large one (10,000 families on PostgreSQL: over a second) commits after answers whose `now`
      // is already past its `revoked_at`; asking from `now` alone would miss it for good.
      this.#since = Math.max(0, body.now - FEED_OVERLAP_SECONDS)
      this.#lastSyncMs = started
      const nowSeconds = Math.floor(this.#nowMs() / 1000)
      for (const [jti, exp] of this.#revoked) if (exp <= nowSeconds) this.#revoked.delete(jti)
    } catch (err) {
      this.#lastError = err
      throw err
    }
  }

  /**
   * Whether the token with this `jti` is revoked, after making sure the state is fresh enough.
   * @throws {RevocationUnavailableError} when no poll succeeded within `maxStalenessMs`.
   */
  async isRevoked(jti: string): Promise<boolean> {
    const age = this.#nowMs() - this.#lastSyncMs
    if (age > 2 * this.#pollIntervalMs) {
      try {
        await this.sync()
      } catch {
        if (this.#nowMs() - this.#lastSyncMs > this.#maxStalenessMs)
          throw new RevocationUnavailableError('revocation state is unavailable', { cause: this.#lastError })
      }
    }
    return this.#revoked.has(jti)
  }
}

/** The subset of an RFC 7662 §2.2 response the helper uses. */
export interface IntrospectionResult {
  active: boolean
  scope?: string
  client_id?: string
  sub?: string
  exp?: number
  iat?: number
  jti?: string
  iss?: string
  aud?: string | string[]
  token_type?: string
  cnf?: { jkt?: string }
}

/**
 * Token introspection (RFC 7662) with a short cache keyed by the token's SHA-256, so a busy API
 * asks once per token per `cacheTtlMs` (default 1000): a revoked token is refused at most that
 * long after its revocation.
 */
export class IntrospectionClient {
  readonly #url: string
  readonly #authorization: string
  readonly #fetch: typeof fetch
  readonly #ttlMs: number
  readonly #nowMs: () => number
  readonly #cache = new Map<string, { result: IntrospectionResult; until: number }>()
  static readonly #MAX_ENTRIES = 10_000

  constructor(options: { url: string; credentials: ClientCredentials; cacheTtlMs?: number; fetch?: typeof fetch; nowMs?: () => number }) {
    this.#url = options.url
    this.#authorization = basicAuthorization(options.credentials)
    this.#fetch = options.fetch ?? fetch
    this.#ttlMs = options.cacheTtlMs ?? 1000
    this.#nowMs = options.nowMs ?? Date.now
  }

  /**
   * @param clientIp Where the token was presented: sent as `client_ip` (devicegate records the
   *   use and runs its new-network detector); part of the cache key.
   * @throws {RevocationUnavailableError} when the endpoint cannot answer.
   */
  async introspect(token: string, clientIp?: string): Promise<IntrospectionResult> {
    const key = createHash('sha256').update(`${token}\0${clientIp ?? ''}`).digest('base64url')
    const now = this.#nowMs()
    const hit = this.#cache.get(key)
    if (hit && hit.until > now) return hit.result
    let result: IntrospectionResult
    try {
      const res = await this.#fetch(this.#url, {
        method: 'POST',
        headers: { authorization: this.#authorization, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, ...(clientIp ? { client_ip: clientIp } : {}) }).toString(),
        signal: AbortSignal.timeout(5000),
      })
      if (!res.ok) throw new Error(`introspection answered ${res.status}`)
      result = (await res.json()) as IntrospectionResult
    } catch (err) {
      throw new RevocationUnavailableError('token introspection is unavailable', { cause: err })
    }
    if (this.#cache.size >= IntrospectionClient.#MAX_ENTRIES) this.#cache.clear()
    this.#cache.set(key, { result, until: now + this.#ttlMs })
    return result
  }
}
