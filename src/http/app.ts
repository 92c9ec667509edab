/**
 * The fastify application: wiring only. Parses requests, calls protocol handlers, renders their
 * results and errors. Decides nothing. The ordinary requests of the four form-encoded JSON
 * endpoints are answered by the fast path in front of fastify (fast-routes.ts) through the same
 * endpoint definitions and rendering (oauth-endpoints.ts); fastify answers everything else.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import cookie from '@fastify/cookie'
import helmet from '@fastify/helmet'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyContextConfig, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { ProtocolDeps } from '../protocol/deps.js'
import { OAuthError } from '../protocol/errors.js'
import { ENDPOINTS } from '../protocol/metadata.js'
import { authorizationField, dpopField, requestPath } from '../protocol/bearer.js'
import { handleUserInfo, OIDC_ENDPOINTS } from '../protocol/oidc.js'
import type { FormBody } from '../protocol/params.js'
import { handleRevocationFeed, REVOCATION_FEED_PATH } from '../protocol/revocation-feed.js'
import type { VerificationDeps } from '../web/deps.js'
import { renderErrorPage } from '../web/templates/error.js'
import { VERIFICATION_PAGE_CSP, VERIFICATION_PAGE_CSP_DIRECTIVES } from '../web/templates/layout.js'
import { registerVerificationPages } from '../web/verification.js'
import { createAccessLog } from './access-log.js'
import { createClientAddressResolver } from './client-address.js'
import { createFastRoutes, hasRepeatedHost, type FastRoute } from './fast-routes.js'
import { parseFormBody } from './form-body.js'
import { addOAuthErrorHeaders, BODY_LIMIT_BYTES, contextOf, formEndpoints, NO_STORE_HEADERS, toOAuthError } from './oauth-endpoints.js'
import type { AnsweredRequest, RequestObserver } from './request-context.js'
import { lazyChildLoggerFactory } from './request-logger.js'

export { BODY_LIMIT_BYTES } from './oauth-endpoints.js'

/** Default longest time to receive a whole request (headers and body), in seconds (`listen.request_timeout_seconds`). */
export const REQUEST_TIMEOUT_SECONDS = 30

/**
 * How often node checks connections for the request and headers timeouts, in milliseconds. Node's
 * default (30 s) let a slow client hold a socket up to 30 s past the timeout.
 */
const CONNECTIONS_CHECK_MS = 1_000

/** Path of the HTML verification pages (RFC 8628 §3.3); everything else speaks JSON. */
const PAGES_PREFIX = '/device'

/** Whether a request URL is one of the HTML pages, which answer errors with an HTML page. */
export function isPagePath(url: string): boolean {
  const path = url.split('?')[0]!
  return path === PAGES_PREFIX || path.startsWith(`${PAGES_PREFIX}/`)
}

/** Everything the app needs; built by `server.ts`. */
export interface AppDeps {
  protocol: ProtocolDeps
  web: Omit<VerificationDeps, 'logger'>
  /** RFC 8414 metadata document, built once. */
  metadata: Record<string, unknown>
  /** OpenID Connect Discovery 1.0 §3 document, built once. */
  openIdConfiguration: Record<string, unknown>
  trustedProxies: readonly string[]
  logger: FastifyBaseLogger
  /** Checks the store is reachable, for `/healthz`. */
  healthCheck: () => Promise<void>
  /** Longest time to receive a whole request, headers and body, in seconds. Default: 30. */
  requestTimeoutSeconds?: number
  /**
   * Called with the root instance before the protocol routes are added (governance: the metrics
   * observer and `/metrics`, the admin API plugin). Hooks they add apply to every route, but not
   * to the requests the fast path answers in front of fastify (the ordinary requests of `/token`,
   * `/device_authorization`, `/introspect` and `/revoke`, see fast-routes.ts): to see every
   * answered request, use `app.observeRequests`.
   */
  plugins?: readonly ((app: FastifyInstance) => Promise<void>)[]
  /** Routes registered beside the verification pages: with cookies and the pages' security headers (upstream sign-in). */
  pagePlugins?: readonly ((pages: FastifyInstance) => Promise<void>)[]
}

/** Renders an {@link OAuthError} as RFC 6749 §5.2 JSON (oauth-endpoints.ts, as the fast path does). */
function sendOAuthError(reply: FastifyReply, err: OAuthError): FastifyReply {
  return reply.status(err.status).headers(addOAuthErrorHeaders(err, {})).send(err.toJSONText())
}

/** Page titles for the statuses an error page can have. */
const ERROR_PAGE_TITLES: Record<number, string> = {
  400: 'Invalid request',
  404: 'Page not found',
  405: 'Method not allowed',
  408: 'Request timed out',
  413: 'Request too large',
  414: 'Address too long',
  415: 'Unsupported request',
  503: 'Temporarily unavailable',
}

/**
 * Renders an {@link OAuthError} as the pages' HTML error page, with the pages' security headers
 * (helmet's plugin has not run for a request the framework refused before routing).
 */
function sendErrorPage(reply: FastifyReply, err: OAuthError): FastifyReply {
  for (const [name, value] of Object.entries(err.headers)) if (name !== 'WWW-Authenticate') reply.header(name, value)
  const title = ERROR_PAGE_TITLES[err.status] ?? (err.status >= 500 ? 'Something went wrong' : 'Invalid request')
  return reply
    .status(err.status)
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .header('content-security-policy', VERIFICATION_PAGE_CSP)
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .type('text/html; charset=utf-8')
    .send(renderErrorPage({ title, message: `${err.description ?? err.error}.` }))
}

/**
 * The one error path: everything thrown by a route, a hook, a body parser or the router itself
 * (bad URL encoding, over-long path parameters) is answered here — RFC 6749 §5.2 JSON with
 * `Cache-Control: no-store` on the OAuth endpoints, an HTML page on the verification pages.
 */
function renderError(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const oauth = toOAuthError(err, request.log)
  return isPagePath(request.url) ? sendErrorPage(reply, oauth) : sendOAuthError(reply, oauth)
}

/** A JSON endpoint's route handler. */
type JsonHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>

/**
 * Wraps a JSON endpoint's handler so that an {@link OAuthError} it throws is answered right there,
 * exactly as the error handler would answer it (status, `{ error, error_description }`, no-store,
 * the error's headers), without fastify's error path (the rejected route promise, `onError`
 * hooks, the error handler): `authorization_pending` and `slow_down` are most of the polling
 * traffic, and that path was a measurable share of each poll. Its outcome (the code, or
 * `no_credentials`) is recorded in `request.oauthError` for metrics. Anything else still goes to the error handler.
 */
function answeringOAuthErrors(handler: JsonHandler): JsonHandler {
  return async (request, reply) => {
    try {
      return await handler(request, reply)
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err
      request.oauthError = err.outcome
      return sendOAuthError(reply, err)
    }
  }
}

/** Longest a parser error's answer waits for the answers of earlier requests on its connection, in milliseconds. */
const EARLIER_ANSWERS_GRACE_MS = 10_000

/**
 * Answers what node's HTTP parser refuses before fastify sees a request (malformed request line or
 * headers, headers too large, the request timeout) with RFC 6749 §5.2 JSON and no-store, then
 * closes the connection. The path is unknown here, so there is no HTML variant.
 *
 * Answers on a connection go out in the order of its requests (RFC 9112 §9.3.2): when earlier
 * requests pipelined on the connection are still being answered, their answers are written first
 * and the error after them (node's own handler writes the error ahead of an answer not yet begun,
 * which the client then reads as that request's answer, and cuts an answer already begun). An
 * earlier answer that takes longer than {@link EARLIER_ANSWERS_GRACE_MS} is cut off with the
 * connection.
 * @see https://nodejs.org/api/http.html#event-clienterror
 */
export function handleClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, reason, description] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', 'the request was not received in time']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'the request headers are too large']
        : [400, 'Bad Request', 'malformed request']
  const body = JSON.stringify({ error: 'invalid_request', error_description: description })
  const answer = () => {
    if (socket.writable)
      socket.write(
        `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nPragma: no-cache\r\n` +
          `X-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      )
    socket.destroy()
  }
  // The answer node is writing on this socket; when it finishes, node hands the socket to the
  // next pipelined answer, if any, before the listeners below run.
  const inFlight = () => (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined
  let cutOff: NodeJS.Timeout | undefined
  const afterEarlierAnswers = () => {
    if (socket.destroyed) return
    const current = inFlight()
    if (current !== undefined && !current.writableFinished && current.req.complete) {
      // An earlier request's answer: it goes first.
      if (cutOff === undefined) {
        cutOff = setTimeout(() => socket.destroy(), EARLIER_ANSWERS_GRACE_MS).unref()
        socket.once('close', () => clearTimeout(cutOff))
      }
      current.once('finish', afterEarlierAnswers)
      return
    }
    clearTimeout(cutOff)
    // The refused request may be the one being answered (its body broke off or is malformed): as
    // node's own handler, the error goes out only if that answer has not begun.
    if (current !== undefined && !current.writableFinished && current.headersSent) socket.destroy()
    else answer()
  }
  afterEarlierAnswers()
}

/**
 * Builds the HTTP application.
 *
 * Security headers on the verification pages (helmet): CSP with `frame-ancestors 'none'`,
 * `X-Frame-Options: DENY`, no referrer to other origins, nosniff; `nosniff` on every other
 * response. Every response is `Cache-Control: no-store` and
 * `Pragma: no-cache` (RFC 6749 §5.1) except metadata and JWKS, which may be cached for 5 minutes.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const resolveClientIp = createClientAddressResolver(deps.trustedProxies)
  const requestTimeoutMs = (deps.requestTimeoutSeconds ?? REQUEST_TIMEOUT_SECONDS) * 1000
  const nextRequestId = requestIdGenerator()
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: false,
    // Answered by the onRequest hook below, in our own error format, instead of fastify's JSON.
    return503OnClosing: false,
    // A client that sends its headers or its body too slowly is cut off with 408 at the documented
    // request timeout: node's headers timeout (default 60 s) is aligned with it, and connections
    // are checked every second instead of every 30 s.
    requestTimeout: requestTimeoutMs,
    // An HTTP/1.1 request without Host reaches the app (node's own 400 for it has no body and no
    // no-store), which refuses it in the onRequest hook below.
    http: { requestTimeout: requestTimeoutMs, headersTimeout: requestTimeoutMs, connectionsCheckingInterval: CONNECTIONS_CHECK_MS, requireHostHeader: false },
    clientErrorHandler: handleClientError,
    // Bad URL encoding and over-long path parameters are refused by the router before any route:
    // they go through the one error path too.
    frameworkErrors: (err, request, reply) => {
      request.clientIp = resolveClientIp(request.socket.remoteAddress, request.headers['x-forwarded-for'])
      return renderError(err, request, reply)
    },
    routerOptions: { ignoreTrailingSlash: true },
    // One access-log line per request (onResponse, below) instead of fastify's two, written after
    // the client address is known.
    logController: new LogController({ disableRequestLogging: true }),
    // request.log is built on first use: few requests log anything besides the access line.
    childLoggerFactory: lazyChildLoggerFactory,
    // Shared with the fast path, so request ids stay unique across both.
    genReqId: nextRequestId,
  })

  // Every route, by method, for the 405 answer below: `hasRoute` compares route definitions, so it
  // cannot tell that `/ssf/poll/abc` exists. The route's options are kept (not copied): a plugin's
  // own onRoute hook, which runs after this one, may still mark it `takesDpopProof`.
  const knownRoutes: { path: RegExp; method: string; route: { config?: FastifyContextConfig } }[] = []
  app.addHook('onRoute', (route) => {
    const path = new RegExp(`^${route.url.split('/').map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/')}/?$`)
    for (const method of [route.method].flat()) knownRoutes.push({ path, method, route })
  })

  app.decorateRequest('clientIp', '')
  app.decorateRequest('oauthError', null)
  app.decorateRequest('takesDpopProof', false)
  app.decorateRequest('thrownError', undefined)
  const observers: RequestObserver[] = []
  app.decorate('observeRequests', (observer: RequestObserver) => {
    observers.push(observer)
  })
  let closing = false
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  // Callback-style hooks: on every request, an async hook's promise is measurable overhead.
  app.addHook('onRequest', (request, reply, done) => {
    request.clientIp = resolveClientIp(request.socket.remoteAddress, request.headers['x-forwarded-for'])
    reply.headers(NO_STORE_HEADERS)
    // Draining for shutdown: a request arriving on a kept-alive connection goes elsewhere (its
    // answer closes the connection: the onSend hook below).
    if (closing) {
      return done(new OAuthError('temporarily_unavailable', 'the server is shutting down', { headers: { 'Retry-After': '5' } }))
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is malformed, 400 (node's own answer, turned
    // off above, had no body).
    const raw = request.raw
    if (raw.httpVersionMajor === 1 && raw.httpVersionMinor === 1 && request.headers.host === undefined)
      return done(new OAuthError('invalid_request', 'the Host header is required', { headers: { Connection: 'close' } }))
    // RFC 9112 §3.2: more than one Host field line is 400 too (node keeps the first line only).
    if (hasRepeatedHost(raw.rawHeaders)) return done(new OAuthError('invalid_request', 'the Host header must be sent once', { headers: { Connection: 'close' } }))
    // RFC 9110 §10.1.1: an expectation other than 100-continue cannot be met, 417 (node hands such
    // a request over through `checkExpectation`, see installFastRoutes, instead of its bodiless 417).
    if ((raw as IncomingMessage & { [UNMET_EXPECTATION]?: true })[UNMET_EXPECTATION])
      return done(new OAuthError('invalid_request', "the expectation in 'Expect' cannot be met", { status: 417, headers: { Connection: 'close' } }))
    // Bodies are parsed as sent; a compressed body would be read as garbage (RFC 9110 §8.4).
    const encoding = request.headers['content-encoding']
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity')
      return done(new OAuthError('invalid_request', 'content-encoding is not supported', { status: 415 }))
    done()
  })
  // While draining every answer ends its connection, also that of a request already in flight when
  // draining began: the server does not wait out the shutdown deadline on a kept-alive, idle one.
  // RFC 9449 §8 and §9 (with §8.2): when nonces are required, every answer at a path that takes a
  // DPoP proof carries the current nonce — also the answers given before a route runs or instead
  // of it (405, 413, 415, a malformed body, 503 while draining), which no route sets it on.
  const nonces = deps.protocol.dpopNonces
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    if (nonces !== undefined && !reply.hasHeader('dpop-nonce') && takesDpopProof(request)) reply.header('dpop-nonce', nonces.current())
    done(null, payload)
  })
  // What was thrown to the error handler, for observers (metrics count it as the outcome).
  app.addHook('onError', (request, _reply, error, done) => {
    request.thrownError = error
    done()
  })
  // Both answering paths end here: the access-log line, then the observers.
  const accessLog = createAccessLog(deps.logger)
  const answered = (request: AnsweredRequest) => {
    const query = request.url.indexOf('?')
    accessLog(request.id, request.method, query === -1 ? request.url : request.url.slice(0, query), request.status, Math.round(request.elapsedMs * 10) / 10, request.clientIp)
    for (const observe of observers) observe(request)
  }
  app.addHook('onResponse', (request, reply, done) => {
    answered({
      id: request.id,
      method: request.method,
      url: request.url,
      clientIp: request.clientIp,
      endpoint: request.routeOptions.url ?? 'unmatched',
      status: reply.statusCode,
      elapsedMs: reply.elapsedTime,
      error: request.thrownError,
      oauthError: request.oauthError,
    })
    done()
  })

  // Only form bodies are parsed. Any other media type is read (within the limit) and discarded,
  // so the endpoint answers `invalid_request` itself rather than 415 from the framework.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, text, done) => {
    done(null, parseFormBody(text as string))
  })
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => done(null, undefined))

  app.setErrorHandler((err, request, reply) => renderError(err, request, reply))
  for (const plugin of deps.plugins ?? []) await plugin(app)
  // A known path asked with another method is 405 with `Allow` (RFC 9110 §15.5.6), not 404.
  const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const
  app.setNotFoundHandler((request, reply) => {
    // The path, also of a request in absolute form (RFC 9112 §3.2.2: GET http://host/token).
    const path = requestPath(request.url)
    const routes = knownRoutes.filter((r) => r.path.test(path))
    const allowed = methods.filter((method) => app.hasRoute({ url: path, method }) || routes.some((r) => r.method === method || (method === 'HEAD' && r.method === 'GET')))
    // Another method on a path whose routes take a DPoP proof: the 405 carries the nonce (onSend).
    if (routes.some((r) => r.route.config?.takesDpopProof === true)) request.takesDpopProof = true
    if (allowed.length > 0)
      return renderError(new OAuthError('invalid_request', `use ${allowed.join(' or ')} for ${path.slice(0, 100)}`, { status: 405, headers: { Allow: allowed.join(', ') } }), request, reply)
    return renderError(new OAuthError('invalid_request', `no endpoint ${request.method} ${path.slice(0, 100)}`, { status: 404 }), request, reply)
  })

  const { protocol } = deps
  const cacheable = (reply: FastifyReply) => reply.header('cache-control', 'public, max-age=300').removeHeader('pragma')

  app.get(ENDPOINTS.metadata, async (_req, reply) => cacheable(reply).send(deps.metadata))
  app.get(OIDC_ENDPOINTS.configuration, async (_req, reply) => cacheable(reply).send(deps.openIdConfiguration))
  // OpenID Connect Core §5.3: GET and POST; the token in the Authorization header (RFC 6750 §2.1,
  // RFC 9449 §7.1); errors carry their WWW-Authenticate challenge. The proof's `htu` is compared
  // with the URI the request was made to (RFC 9449 §4.3 check 9): `/userinfo/`, which the router
  // also serves, is another URI than `/userinfo` (RFC 3986 §6.2.2–6.2.3 normalisation keeps the
  // trailing slash), so a proof must name the one it is sent to.
  const dpopNonces = protocol.dpopNonces
  const userinfo = answeringOAuthErrors(async (request, reply) => {
    // RFC 9449 §9 with §8.2: when nonces are required, every answer carries the current one (200s
    // and errors alike), so a client never needs a use_dpop_nonce round trip to learn it.
    if (dpopNonces !== undefined) reply.header('dpop-nonce', dpopNonces.current())
    return handleUserInfo(
      { authorization: authorizationField(request.raw), dpop: dpopField(request.raw), method: request.method, uri: protocol.issuer + requestPath(request.url) },
      protocol,
    )
  })
  app.get(OIDC_ENDPOINTS.userinfo, { config: { takesDpopProof: true } }, userinfo)
  app.post(OIDC_ENDPOINTS.userinfo, { config: { takesDpopProof: true } }, userinfo)
  app.get(ENDPOINTS.jwks, async (_req, reply) => cacheable(reply).type('application/jwk-set+json').send(await protocol.keys.jwks()))
  app.get('/healthz', async (_req, reply) => {
    await deps.healthCheck()
    return reply.send({ status: 'ok' })
  })

  // The form-encoded JSON endpoints: routes here for what the fast path leaves to fastify
  // (anything unusual, and app.inject), the fast path in front of fastify for the rest; both
  // through the same endpoint definitions (oauth-endpoints.ts).
  const endpoints = formEndpoints(protocol)
  for (const endpoint of endpoints)
    app.post(
      endpoint.path,
      { config: { takesDpopProof: endpoint.takesDpopProof } },
      answeringOAuthErrors(async (request, reply) => {
        // RFC 9449 §8: every answer, errors too, carries a current nonce.
        if (endpoint.dpopNonce !== undefined) reply.header('dpop-nonce', endpoint.dpopNonce())
        const result = await endpoint.handle({
          method: request.method,
          path: requestPath(request.url),
          body: request.body as FormBody | undefined,
          query: request.query as Record<string, unknown>,
          headers: request.headers,
          rawHeaders: request.raw.rawHeaders,
          clientIp: request.clientIp,
        })
        return result === undefined ? reply.status(200).send() : result
      }),
    )
  // devicegate's revocation feed for resource servers that verify JWTs locally.
  app.get(
    REVOCATION_FEED_PATH,
    answeringOAuthErrors(async (request) => handleRevocationFeed(request.query as Record<string, unknown>, contextOf({ headers: request.headers, rawHeaders: request.raw.rawHeaders, clientIp: request.clientIp }), protocol)),
  )

  // The HTML pages get cookies and the full browser security headers (helmet); the JSON endpoints
  // need neither, and skipping both per request is a measurable share of a token request.
  await app.register(async (pages) => {
    await pages.register(cookie)
    await pages.register(helmet, {
      contentSecurityPolicy: {
        useDefaults: false,
        directives: Object.fromEntries(Object.entries(VERIFICATION_PAGE_CSP_DIRECTIVES).map(([k, v]) => [k, [...v]])),
      },
      frameguard: { action: 'deny' },
      hsts: deps.protocol.issuer.startsWith('https:') ? { maxAge: 31_536_000 } : false,
      // same-origin, not no-referrer: under no-referrer browsers send `Origin: null` on the pages'
      // own form posts, which the CSRF origin check must refuse. Other sites still get no Referer
      // (verification_uri_complete carries the user code).
      referrerPolicy: { policy: 'same-origin' },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    })
    await registerVerificationPages(pages, { ...deps.web, logger: app.log })
    for (const plugin of deps.pagePlugins ?? []) await plugin(pages)
  })

  installFastRoutes(
    app,
    createFastRoutes({ endpoints, ignoreTrailingSlash: true, resolveClientIp, nextRequestId, isClosing: () => closing, logger: deps.logger, answered }),
  )
  return app
}

/**
 * Whether `request` is at a path that takes a DPoP proof: a route marked `takesDpopProof` (the
 * token and device authorization endpoints, userinfo, and the Shared Signals, global revocation
 * and signals admin routes, signals/http.ts), or a path of such a route asked with another method
 * (the 405).
 */
function takesDpopProof(request: FastifyRequest): boolean {
  return request.takesDpopProof || request.routeOptions.config?.takesDpopProof === true
}

/**
 * fastify's default request ids (`req-1`, `req-2`, …, the counter in base 36, wrapping at 2³¹ − 1),
 * as one generator both answering paths draw from.
 */
function requestIdGenerator(): () => string {
  let next = 0
  return () => {
    next = (next + 1) & 0x7fffffff
    return `req-${next.toString(36)}`
  }
}

/**
 * Puts `fastRoute` in front of fastify on the app's HTTP server: node's `request` event goes to
 * it first, and what it does not take goes on to fastify's handler. (fastify's `serverFactory`
 * would do the same but changes how fastify listens: no second socket for `localhost`.) The
 * second socket fastify opens when listening on `localhost` (IPv4 beside IPv6) has fastify's
 * handler alone: the same answers, without the fast path. Without exactly one `request`
 * listener (fastify's), the fast path stays off and a warning says so.
 */
function installFastRoutes(app: FastifyInstance, fastRoute: FastRoute): void {
  const listeners = app.server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[]
  const fastifyHandler = listeners[0]
  if (listeners.length !== 1 || fastifyHandler === undefined) {
    app.log.warn({ listeners: listeners.length }, 'fast path not installed: unexpected request listeners')
    return
  }
  app.server.removeListener('request', fastifyHandler)
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!fastRoute(req, res)) fastifyHandler(req, res)
  })
  // A request whose Expect names something other than 100-continue: node would answer a bodiless
  // 417 itself; fastify's onRequest hook answers it instead (the fast path never takes a request
  // with Expect).
  app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    ;(req as IncomingMessage & { [UNMET_EXPECTATION]?: true })[UNMET_EXPECTATION] = true
    fastifyHandler(req, res)
  })
}

/** Marks a request node handed over through `checkExpectation` (an Expect it cannot meet). */
const UNMET_EXPECTATION = Symbol('unmetExpectation')
