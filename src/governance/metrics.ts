/**
 * Prometheus metrics at `/metrics`, on their own prom-client Registry (nothing
 * global, so several servers in one process — tests — do not collide).
 *
 * - `devicegate_http_requests_total{endpoint,outcome}`: `endpoint` is the route pattern
 *   (`/token`, `/admin/api/grants/:id`, `unmatched`), `outcome` the OAuth error code
 *   (RFC 6749 §5.2, e.g. `authorization_pending`, `slow_down`, `invalid_grant`),
 *   `no_credentials` for the bare challenge of a protected resource to a request without
 *   credentials (RFC 6750 §3.1), `ok`, or `http_<status>` for pages and non-OAuth failures. A
 *   bounded set: the error catalogue, these three, and the HTTP statuses.
 * - `devicegate_http_request_duration_seconds{endpoint}`: latency histogram.
 * - `devicegate_pending_device_codes`: pending, unexpired device authorizations, counted by one
 *   indexed query at scrape time.
 * - `devicegate_approvals_total`, `devicegate_denials_total`, `devicegate_tokens_issued_total{grant_type}`,
 *   `devicegate_tokens_refreshed_total`, `devicegate_revocations_total{via}`,
 *   `devicegate_refresh_token_reuse_total`, `devicegate_anomalies_total{kind}`: from domain events.
 * - `devicegate_storage_class_declarations_total{storage_class}`: device authorizations by the
 *   token storage the client declared (`unknown` when none).
 * - `devicegate_same_device_approvals_total{client_id}`: approvals where the approving browser ran
 *   on the requesting machine (client ids come from the configuration, so bounded).
 *
 * Access: `governance.metrics.listen` serves /metrics on a listener of its own
 * instead of the main one; `governance.metrics.bearer_token_env` / `bearer_token_file` require
 * `Authorization: Bearer <token>` (RFC 6750 §2.1; 401 with a `Bearer` challenge otherwise).
 *
 * Per-request cost: two map lookups, a bucket search and three additions on plain numbers
 * ({@link RequestStats}); prom-client reads them at scrape time.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { ConfigError } from '../config/load.js'
import { Counter, Gauge, Registry } from 'prom-client'
import type { DomainEvent } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import type { AnsweredRequest } from '../http/request-context.js'
import { authorizationField } from '../protocol/bearer.js'
import { OAuthError } from '../protocol/errors.js'
import { approvalSameDevice } from './anomalies.js'
import { RequestStats } from './request-stats.js'
import type { Store } from '../storage/store.js'

/** Upper bounds of the request latency histogram's buckets, in seconds. */
export const HTTP_LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** Path of the metrics endpoint. */
export const METRICS_PATH = '/metrics'

/** The metrics of one server. */
export class Metrics {
  readonly registry = new Registry()
  readonly #http: RequestStats
  readonly #approvals: Counter
  readonly #denials: Counter
  readonly #issued: Counter<'grant_type'>
  readonly #refreshed: Counter
  readonly #revocations: Counter<'via'>
  readonly #reuse: Counter
  readonly #anomalies: Counter<'kind'>
  readonly #storageClasses: Counter<'storage_class'>
  readonly #sameDevice: Counter<'client_id'>

  constructor(store: Store, clock: Clock) {
    const registers = [this.registry]
    this.#http = new RequestStats(
      this.registry,
      { name: 'devicegate_http_requests_total', help: 'HTTP requests by route and outcome (OAuth error code, no_credentials, ok, or http_<status>)' },
      { name: 'devicegate_http_request_duration_seconds', help: 'HTTP request latency by route', buckets: HTTP_LATENCY_BUCKETS },
    )
    new Gauge({
      name: 'devicegate_pending_device_codes',
      help: 'Pending, unexpired device authorizations (RFC 8628), counted at scrape time',
      registers,
      async collect() {
        this.set(await store.countPendingDeviceGrants(clock.nowSeconds()))
      },
    })
    this.#approvals = new Counter({ name: 'devicegate_approvals_total', help: 'Device authorizations approved', registers })
    this.#denials = new Counter({ name: 'devicegate_denials_total', help: 'Device authorizations denied', registers })
    this.#issued = new Counter({ name: 'devicegate_tokens_issued_total', help: 'Token families issued, by grant type', labelNames: ['grant_type'], registers })
    this.#refreshed = new Counter({ name: 'devicegate_tokens_refreshed_total', help: 'Refresh token rotations', registers })
    this.#revocations = new Counter({ name: 'devicegate_revocations_total', help: 'Revocations by path (rfc7009, central)', labelNames: ['via'], registers })
    this.#reuse = new Counter({ name: 'devicegate_refresh_token_reuse_total', help: 'Refresh token reuse detected (RFC 9700 §4.14.2)', registers })
    this.#anomalies = new Counter({ name: 'devicegate_anomalies_total', help: 'Anomalies raised, by detector', labelNames: ['kind'], registers })
    this.#storageClasses = new Counter({
      name: 'devicegate_storage_class_declarations_total',
      help: 'Device authorizations by declared token storage (storage_class; unknown when none)',
      labelNames: ['storage_class'],
      registers,
    })
    this.#sameDevice = new Counter({
      name: 'devicegate_same_device_approvals_total',
      help: 'Approvals where the approving browser ran on the requesting machine (RFC 10027)',
      labelNames: ['client_id'],
      registers,
    })
  }

  /** Event listener: counts approvals, denials, tokens, revocations, reuse and anomalies. */
  readonly listener = (event: DomainEvent): void => {
    switch (event.type) {
      case 'device_code.approved':
        this.#approvals.inc()
        if (approvalSameDevice(event) === true) this.#sameDevice.labels(String(event.clientId)).inc()
        return
      case 'device_authorization.requested':
        this.#storageClasses.labels(String(event.details?.storageClass ?? 'unknown')).inc()
        return
      case 'device_code.denied':
        this.#denials.inc()
        return
      case 'token.issued':
        this.#issued.labels(String(event.details?.grantType ?? 'unknown')).inc()
        return
      case 'token.refreshed':
        this.#refreshed.inc()
        return
      case 'token.revoked':
        this.#revocations.labels(String(event.details?.via ?? 'unknown')).inc()
        return
      case 'refresh_token.reuse_detected':
        this.#reuse.inc()
        return
      case 'anomaly.raised':
        this.#anomalies.labels(String(event.details?.kind ?? 'unknown')).inc()
        return
      default:
        return
    }
  }

  /**
   * Counts one answered request (an observer of the HTTP layer, http/request-context.ts). The
   * outcome: the {@link OAuthError.outcome} of what was thrown to the error handler (the OAuth
   * error code, or `no_credentials` for a bare RFC 6750 §3.1 challenge; `invalid_request` for
   * another 4xx, `server_error` for anything else), else the outcome of what a route answered with
   * itself, else `ok` below 400 and `http_<status>` from 400.
   */
  readonly observe = (request: AnsweredRequest): void => {
    const { error, status } = request
    let outcome: string
    if (error !== undefined) {
      const statusCode = (error as { statusCode?: unknown } | null)?.statusCode
      outcome = error instanceof OAuthError ? error.outcome : typeof statusCode === 'number' && statusCode < 500 ? 'invalid_request' : 'server_error'
    } else outcome = request.oauthError ?? (status < 400 ? 'ok' : `http_${status}`)
    this.#http.record(request.endpoint, outcome, request.elapsedMs / 1000)
  }

  /**
   * Observes every request the app answers (on the root instance: every route, and the fast path
   * in front of fastify) and, unless metrics have a listener of their own, adds `GET /metrics`.
   * @param access Where /metrics is served and the bearer token it requires.
   */
  async register(app: FastifyInstance, access: MetricsAccess = { ownListener: false }): Promise<void> {
    app.observeRequests(this.observe)
    if (!access.ownListener) this.#route(app, access.bearerToken)
  }

  /** `GET /metrics`, behind the bearer token when one is set. */
  #route(app: FastifyInstance, bearerToken: string | undefined): void {
    const expected = bearerToken === undefined ? undefined : digest(bearerToken)
    app.get(METRICS_PATH, async (request, reply) => {
      if (expected !== undefined) {
        // Read as received: node's headers.authorization keeps only the first line of a repeated
        // field, which is refused whatever its lines (RFC 6750 §3.1, RFC 9110 §5.3).
        const field = authorizationField(request.raw)
        // Counted as the other protected resources' answers are (`request.oauthError`).
        if (Array.isArray(field)) {
          request.oauthError = 'invalid_request'
          return reply
            .status(400)
            .header('www-authenticate', `${METRICS_REALM}, error="invalid_request"`)
            .header('cache-control', 'no-store')
            .send({ error: 'invalid_request', error_description: 'the Authorization header must be sent once' })
        }
        const m = /^Bearer\s+(\S+)\s*$/i.exec(field ?? '')
        if (m === null) {
          // RFC 6750 §3.1: no error code or other error information (the challenge alone, body
          // `{}`) when no bearer credentials were sent (no field, a blank one, another scheme)...
          if (!/^Bearer(?:\s|$)/i.test(field ?? '')) {
            request.oauthError = 'no_credentials'
            return reply.status(401).header('www-authenticate', METRICS_REALM).header('cache-control', 'no-store').send({})
          }
          // ...but a Bearer header without exactly one token (`Bearer`, `Bearer a b`) is a
          // malformed request: 400 invalid_request, as devicegate's other protected resources answer.
          request.oauthError = 'invalid_request'
          return reply
            .status(400)
            .header('www-authenticate', `${METRICS_REALM}, error="invalid_request"`)
            .header('cache-control', 'no-store')
            .send({ error: 'invalid_request', error_description: "the Authorization header must be 'Bearer <token>'" })
        }
        if (!timingSafeEqual(digest(m[1]!), expected)) {
          request.oauthError = 'invalid_token'
          return reply
            .status(401)
            .header('www-authenticate', `${METRICS_REALM}, error="invalid_token"`)
            .header('cache-control', 'no-store')
            .send({ error: 'invalid_token', error_description: 'a metrics bearer token is required' })
        }
      }
      return reply.header('cache-control', 'no-store').type(this.registry.contentType).send(await this.registry.metrics())
    })
  }

  /**
   * Serves `GET /metrics` on a listener of its own (`governance.metrics.listen`), e.g. an
   * internal interface, so the public listener need not expose it.
   * @returns the bound address (`http://host:port`) and a close function.
   */
  async listen(host: string, port: number, bearerToken: string | undefined): Promise<{ url: string; close(): Promise<void> }> {
    const app = Fastify({ logger: false })
    this.#route(app, bearerToken)
    await app.listen({ host, port })
    const address = app.server.address() as AddressInfo
    return { url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`, close: () => app.close() }
  }
}

/** Realm of the metrics endpoint's bearer challenge. */
const METRICS_REALM = 'Bearer realm="devicegate-metrics"'

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** Where `/metrics` is served and whether it needs a token (`governance.metrics`). */
export interface MetricsAccess {
  /** Served by {@link Metrics.listen} instead of the main app. */
  ownListener: boolean
  /** Token scrapers must send as `Authorization: Bearer …`; absent: none needed. */
  bearerToken?: string | undefined
}

/**
 * Reads the metrics bearer token from `governance.metrics.bearer_token_env` or `_file`.
 * @throws {ConfigError} when the variable is unset or short, or the file unreadable or short.
 */
export async function loadMetricsToken(
  m: { bearerTokenEnv?: string | undefined; bearerTokenFile?: string | undefined },
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<string | undefined> {
  let token: string | undefined
  if (m.bearerTokenEnv !== undefined) {
    token = env[m.bearerTokenEnv]
    if (token === undefined || token.length < 32)
      throw new ConfigError(`governance.metrics.bearer_token_env: environment variable ${m.bearerTokenEnv} must hold at least 32 characters`)
  } else if (m.bearerTokenFile !== undefined) {
    try {
      token = (await readFile(m.bearerTokenFile, 'utf8')).replace(/\r?\n$/, '')
    } catch (err) {
      throw new ConfigError(`governance.metrics.bearer_token_file: cannot read ${m.bearerTokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    if (token.length < 32) throw new ConfigError(`governance.metrics.bearer_token_file: ${m.bearerTokenFile} must hold at least 32 characters`)
  }
  return token
}
