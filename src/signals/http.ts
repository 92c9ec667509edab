/**
 * HTTP wiring of the signals domain (parses, calls the services, renders):
 * - `GET /.well-known/ssf-configuration` and the stream management endpoints (SSF 1.0 §7–8),
 *   the RFC 8936 poll endpoint `POST /ssf/poll/{stream_id}`;
 * - `POST /global-token-revocation`;
 * - the admin API for webhook endpoints under `/admin/api/webhooks`.
 *
 * Stream-management and poll errors are `{ err, description }` with the SSF status, including a
 * value the database refuses and a body over the limit; token problems are RFC 6750 errors with
 * their `WWW-Authenticate` challenge.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { EventSink } from '../core/events.js'
import type { ClientDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import { describeJsonBodyProblem, jsonBodyProblem } from '../core/json-body.js'
import { authenticateAccessToken, authorizationField, dpopField, requestPath, resourceChallenge, withoutCredentials, type AuthenticatedToken } from '../protocol/bearer.js'
import type { DpopNonces } from '../protocol/dpop-nonce.js'
import { OAuthError } from '../protocol/errors.js'
import { isDataException } from '../storage/data-errors.js'
import type { DeliveryStatus, SignalOutboxStore, Store } from '../storage/store.js'
import { GLOBAL_REVOCATION_PATH, handleGlobalRevocation, type GlobalRevocationDeps } from './global-revocation.js'
import { SsfError, SSF_PATHS, type StreamService } from './ssf/streams.js'
import { webhookDestinationId } from './webhooks.js'

/** What the routes need. */
export interface SignalsHttpDeps {
  issuer: string
  store: Store
  clock: Clock
  clients: ClientDirectory
  signals: SignalOutboxStore
  streams: StreamService | undefined
  ssfScope: string
  globalRevocation: (GlobalRevocationDeps & { scope: string }) | undefined
  /** Admin API scope (governance.admin.scope), or undefined when the admin API is off. */
  adminScope: string | undefined
  /** Configured webhook endpoint ids. */
  webhookIds: readonly string[]
  events: EventSink | undefined
  /** Asks the dispatcher to run soon. */
  wake(): void
  /** Set when DPoP proofs must carry a server nonce (RFC 9449 §9, `dpop.require_nonce`). */
  dpopNonces?: DpopNonces | undefined
}

function protectedRequest(request: FastifyRequest, issuer: string) {
  return { authorization: authorizationField(request.raw), dpop: dpopField(request.raw), method: request.method, uri: issuer + requestPath(request.url) }
}

/**
 * Renders a stream-management or poll error: the SSF status with the RFC 8935 §2.3-style body
 * `{ "err": …, "description": … }` (SSF 1.0 §8.1), `Cache-Control: no-store`.
 */
function sendSsfError(reply: FastifyReply, err: SsfError): FastifyReply {
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds))
  return reply.status(err.status).header('cache-control', 'no-store').type('application/json').send({ err: err.err, description: err.description })
}

/**
 * The request's own fault that reached the error handler outside {@link SsfError}, as one: a value
 * the database cannot hold (400) or a 4xx of the framework (oversized body 413, …). Undefined for
 * anything else (token errors, server faults).
 */
function requestFault(err: unknown, request: FastifyRequest): SsfError | undefined {
  if (err instanceof OAuthError) return undefined
  if (isDataException(err)) {
    request.log.warn({ err: { code: (err as { code?: string }).code, message: (err as Error).message } }, 'shared signals request carried a value the database refuses')
    return new SsfError(400, 'invalid_request', 'a request value is out of range or not valid text')
  }
  const status = (err as { statusCode?: unknown }).statusCode
  if (typeof status === 'number' && status >= 400 && status < 500)
    return new SsfError(status, 'invalid_request', (err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'the request body is too large' : 'malformed request')
  return undefined
}

/**
 * The realm of the access-token challenge of a route here (its pattern), or undefined for the
 * public SSF configuration (and anything unrouted).
 */
function realmOf(route: string | undefined): string | undefined {
  if (route === undefined || route === SSF_PATHS.configuration) return undefined
  if (route.startsWith('/ssf/')) return 'devicegate-ssf'
  if (route === GLOBAL_REVOCATION_PATH) return 'devicegate'
  if (route.startsWith('/admin/api/')) return 'devicegate-admin'
  return undefined
}

/** Registers the routes; see the module comment. */
export async function registerSignalsRoutes(app: FastifyInstance, deps: SignalsHttpDeps): Promise<void> {
  await app.register(async (api) => {
    api.addContentTypeParser(['application/json', 'application/secevent+json'], { parseAs: 'string', bodyLimit: 256 * 1024 }, (_req, text, done) => {
      let body: unknown
      try {
        body = (text as string).length === 0 ? undefined : JSON.parse(text as string)
      } catch {
        done(new SsfError(400, 'invalid_request', 'the body is not valid JSON'), undefined)
        return
      }
      const problem = jsonBodyProblem(body)
      if (problem !== undefined) done(new SsfError(400, 'invalid_request', describeJsonBodyProblem(problem)), undefined)
      else done(null, body)
    })
    // Any other media type is a malformed request of these endpoints (400 with their error body,
    // draft-parecki-oauth-global-token-revocation §3.4.2, SSF 1.0 §8.1), not fastify's 415.
    api.addContentTypeParser('*', { parseAs: 'string', bodyLimit: 256 * 1024 }, (_req, _text, done) => done(null, undefined))
    api.setErrorHandler((err, request, reply) => {
      // Shared Signals endpoints answer {err, description}; the others speak OAuth errors. Token
      // problems stay RFC 6750 errors (their WWW-Authenticate challenge) and server faults go to the
      // app-wide handler; what the request did wrong is put in the SSF shape here, because the
      // app-wide backstops (a PostgreSQL data exception, fastify's 4xx) answer in the OAuth shape.
      // So does what the app-wide onRequest hook refuses before any route here (a Content-Encoding
      // 415, no Host 400, an Expect it cannot meet 417, the 503 while draining): an OAuthError
      // without a challenge, answered with its status and headers (Retry-After, Connection).
      if (err instanceof OAuthError && request.url.startsWith('/ssf/') && !('WWW-Authenticate' in err.headers))
        return sendSsfError(reply.headers({ ...err.headers }), new SsfError(err.status, err.error, err.description ?? err.error))
      const ssf = err instanceof SsfError ? err : request.url.startsWith('/ssf/') ? requestFault(err, request) : undefined
      if (ssf === undefined) throw err
      if (request.url.startsWith('/ssf/')) return sendSsfError(reply, ssf)
      throw new OAuthError('invalid_request', ssf.description, { status: ssf.status })
    })

    // RFC 9449 §9 with §8.2: when nonces are required, every answer of the routes that take a
    // DPoP-bound token (all here but the public, cacheable SSF configuration) carries the current
    // nonce, 2xx and errors alike, so a client never needs a use_dpop_nonce round trip to learn it.
    // The routes are marked `takesDpopProof`, and the app's onSend hook puts the nonce on their
    // answers (http/app.ts) — also on those given before or instead of a route here (a 405 for
    // another method, a compressed body's 415, the 503 while draining), which no hook here sees.
    api.addHook('onRoute', (route) => {
      if (route.url !== SSF_PATHS.configuration) route.config = { ...route.config, takesDpopProof: true }
    })

    // RFC 6750 §3.1: a request without credentials gets the bare challenge whatever its body, so
    // it is answered before the body is read (the JSON parser above would judge the body first).
    api.addHook('preParsing', (request, _reply, payload, done) => {
      const realm = realmOf(request.routeOptions.url)
      done((realm === undefined ? undefined : withoutCredentials(authorizationField(request.raw), realm)) ?? null, payload)
    })

    /** A receiver: a confidential client's token with the SSF scope (RFC 6750). */
    const receiver = async (request: FastifyRequest): Promise<AuthenticatedToken> => {
      const token = await authenticateAccessToken(protectedRequest(request, deps.issuer), deps, { realm: 'devicegate-ssf', scope: deps.ssfScope })
      if (!token.client.isConfidential || token.record.subject !== null)
        throw new OAuthError('insufficient_scope', 'stream management needs a confidential client\'s own token (client_credentials)', {
          headers: { 'WWW-Authenticate': resourceChallenge('devicegate-ssf', 'insufficient_scope', { scope: deps.ssfScope }) },
        })
      return token
    }
    const query = (request: FastifyRequest) => request.query as Record<string, string | undefined>

    const streams = deps.streams
    if (streams) {
      api.get(SSF_PATHS.configuration, async (_req, reply) =>
        reply.header('cache-control', 'public, max-age=300').removeHeader('pragma').send(streams.metadata(`${deps.issuer}/jwks`)),
      )
      api.post(SSF_PATHS.streams, async (request, reply) => {
        const owner = (await receiver(request)).client.id
        return reply.status(201).send(await streams.create(owner, request.body))
      })
      api.get(SSF_PATHS.streams, async (request) => streams.read((await receiver(request)).client.id, query(request).stream_id))
      api.patch(SSF_PATHS.streams, async (request) => streams.update((await receiver(request)).client.id, request.body, false))
      api.put(SSF_PATHS.streams, async (request) => streams.update((await receiver(request)).client.id, request.body, true))
      api.delete(SSF_PATHS.streams, async (request, reply) => {
        await streams.delete((await receiver(request)).client.id, query(request).stream_id)
        return reply.status(204).send()
      })
      api.get(SSF_PATHS.status, async (request) => streams.status((await receiver(request)).client.id, query(request).stream_id))
      api.post(SSF_PATHS.status, async (request) => streams.setStatus((await receiver(request)).client.id, request.body))
      api.post(SSF_PATHS.addSubject, async (request, reply) => {
        await streams.setSubject((await receiver(request)).client.id, request.body, true)
        return reply.status(200).send()
      })
      api.post(SSF_PATHS.removeSubject, async (request, reply) => {
        await streams.setSubject((await receiver(request)).client.id, request.body, false)
        return reply.status(204).send()
      })
      api.post(SSF_PATHS.verification, async (request, reply) => {
        await streams.verify((await receiver(request)).client.id, request.body)
        return reply.status(204).send()
      })
      api.post(`${SSF_PATHS.poll}/:streamId`, async (request) => {
        const owner = (await receiver(request)).client.id
        const abort = new AbortController()
        request.raw.on('close', () => abort.abort())
        return streams.poll(owner, (request.params as { streamId: string }).streamId, request.body, abort.signal)
      })
    }

    const global = deps.globalRevocation
    if (global) {
      api.post(GLOBAL_REVOCATION_PATH, async (request, reply) => {
        const caller = await authenticateAccessToken(protectedRequest(request, deps.issuer), deps, { realm: 'devicegate', scope: global.scope })
        if (!caller.client.isConfidential || caller.record.subject !== null)
          throw new OAuthError('insufficient_scope', 'global token revocation needs a confidential client\'s own token', {
            headers: { 'WWW-Authenticate': resourceChallenge('devicegate', 'insufficient_scope', { scope: global.scope }) },
          })
        // Draft §3.1: the parameters are an application/json body (a form or no body is malformed).
        if (!/^application\/json\s*(;|$)/i.test(String(request.headers['content-type'] ?? '')))
          throw new OAuthError('invalid_request', 'the body must be application/json')
        await handleGlobalRevocation(request.body, caller, request.clientIp, global)
        deps.wake()
        return reply.status(204).send()
      })
    }

    const adminScope = deps.adminScope
    if (adminScope !== undefined) {
      const admin = async (request: FastifyRequest) => {
        const token = await authenticateAccessToken(protectedRequest(request, deps.issuer), deps, { realm: 'devicegate-admin', scope: adminScope })
        return `admin:${token.record.subject ?? token.client.id}`
      }
      const endpointOf = async (request: FastifyRequest) => {
        const id = (request.params as { id: string }).id
        if (!deps.webhookIds.includes(id)) throw new OAuthError('invalid_request', 'webhook endpoint not found', { status: 404 })
        const d = await deps.signals.findSignalDestination(webhookDestinationId(id))
        if (d === undefined) throw new OAuthError('invalid_request', 'webhook endpoint not found', { status: 404 })
        return d
      }
      const view = (d: Awaited<ReturnType<typeof endpointOf>>) => ({
        id: d.id.slice('webhook:'.length),
        url: d.config.url,
        events: d.config.events,
        status: d.status,
        status_reason: d.statusReason,
        failing_since: d.failingSince,
        next_attempt_at: d.nextAttemptAtMs === 0 ? null : Math.ceil(d.nextAttemptAtMs / 1000),
      })
      api.get('/admin/api/webhooks', async (request) => {
        await admin(request)
        const list = await deps.signals.listSignalDestinations({ kind: 'webhook' })
        return { items: list.filter((d) => deps.webhookIds.includes(d.id.slice('webhook:'.length))).map(view) }
      })
      api.get('/admin/api/webhooks/:id/deliveries', async (request) => {
        await admin(request)
        const d = await endpointOf(request)
        const q = query(request)
        const status = q.status
        if (status !== undefined && !['pending', 'delivered', 'rejected'].includes(status)) throw new OAuthError('invalid_request', '"status" must be pending, delivered or rejected')
        const limit = q.limit === undefined ? 100 : /^\d{1,4}$/.test(q.limit) ? Number(q.limit) : Number.NaN
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new OAuthError('invalid_request', '"limit" must be an integer between 1 and 1000')
        const items = await deps.signals.listSignalDeliveries(d.id, { ...(status ? { status: status as DeliveryStatus } : {}), limit })
        return {
          endpoint: view(d),
          items: items.map((i) => ({
            seq: i.eventSeq,
            webhook_id: i.jti,
            status: i.status,
            attempts: i.attempts,
            last_error: i.lastError,
            created_at: i.createdAt,
            last_attempt_at: i.lastAttemptAt,
            delivered_at: i.deliveredAt,
            body: JSON.parse(i.payload) as unknown,
          })),
        }
      })
      api.post('/admin/api/webhooks/:id/deliveries/:seq/retry', async (request, reply: FastifyReply) => {
        const actor = await admin(request)
        const d = await endpointOf(request)
        // A malformed id is 400 like every admin route's path parameters (admin-api.ts parsePart);
        // only a well-formed sequence number that names no delivery is 404.
        const raw = (request.params as { seq: string }).seq
        const seq = Number(raw)
        if (!/^\d{1,15}$/.test(raw) || !Number.isSafeInteger(seq)) throw new OAuthError('invalid_request', '"seq" must be a delivery sequence number (decimal digits)')
        if (!(await deps.signals.retrySignalDelivery(d.id, seq))) throw new OAuthError('invalid_request', 'delivery not found', { status: 404 })
        await deps.events?.record({ type: 'admin.action', actor, details: { action: 'webhook.delivery_retried', endpoint: view(d).id, seq } })
        deps.wake()
        return reply.status(202).send({ status: 'pending' })
      })
      api.post('/admin/api/webhooks/:id/resume', async (request) => {
        const actor = await admin(request)
        const d = await endpointOf(request)
        await deps.signals.updateSignalDestination(d.id, { status: 'enabled', statusReason: null }, deps.clock.nowSeconds())
        await deps.events?.record({ type: 'admin.action', actor, details: { action: 'webhook.resumed', endpoint: view(d).id } })
        deps.wake()
        return view((await deps.signals.findSignalDestination(d.id))!)
      })
    }
  })
}
