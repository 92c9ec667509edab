/**
 * The fastify application: wiring only. Parses requests, calls protocol handlers, renders their
 * results and errors. Decides nothing.
 */
import cookie from '@fastify/cookie'
import helmet from '@fastify/helmet'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import pino from 'pino'
import type { ProtocolDeps, RequestContext } from '../protocol/deps.js'
import { handleDeviceAuthorization } from '../protocol/device-authorization.js'
import { verifyDpopProof } from '../protocol/dpop.js'
import { OAuthError } from '../protocol/errors.js'
import { handleIntrospection } from '../protocol/introspection.js'
import { ENDPOINTS } from '../protocol/metadata.js'
import { readParams, type FormBody } from '../protocol/params.js'
import { handleRevocation } from '../protocol/revocation.js'
import { handleRevocationFeed, REVOCATION_FEED_PATH } from '../protocol/revocation-feed.js'
import { handleTokenRequest } from '../protocol/token.js'
import { StoreUnavailableError } from '../storage/store.js'
import type { VerificationDeps } from '../web/deps.js'
import { VERIFICATION_PAGE_CSP_DIRECTIVES } from '../web/templates/layout.js'
import { registerVerificationPages } from '../web/verification.js'
import { createClientAddressResolver } from './client-address.js'
import './request-context.js'

/** Largest accepted request body, in bytes. OAuth requests are a few hundred bytes. */
export const BODY_LIMIT_BYTES = 64 * 1024

/** Longest time to receive a whole request, in milliseconds. */
export const REQUEST_TIMEOUT_MS = 30_000

/** Everything the app needs; built by `server.ts`. */
export interface AppDeps {
  protocol: ProtocolDeps
  web: Omit<VerificationDeps, 'logger'>
  /** RFC 8414 metadata document, built once. */
  metadata: Record<string, unknown>
  trustedProxies: readonly string[]
  logger: FastifyBaseLogger
  /** Checks the store is reachable, for `/healthz`. */
  healthCheck: () => Promise<void>
  /**
   * Called with the root instance before the protocol routes are added (governance: metrics
   * hooks and `/metrics`, the admin API plugin). Hooks they add apply to every route.
   */
  plugins?: readonly ((app: FastifyInstance) => Promise<void>)[]
}

/**
 * The logger of the one access-log line per request: the same destination and level as `logger`,
 * without its redaction. That line's fields are fixed (method, path without query, status, time,
 * client address) and hold no secret, and pino's redaction, which parses every configured path
 * on every line, was about a twentieth of each request. Falls back to `logger` when its
 * destination cannot be reached.
 */
function accessLoggerOf(logger: FastifyBaseLogger): FastifyBaseLogger {
  const destination = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as pino.DestinationStream | undefined
  return destination === undefined ? logger : pino({ level: logger.level }, destination)
}

/** Parses `application/x-www-form-urlencoded` into a {@link FormBody}; repeats become arrays. */
export function parseFormBody(text: string): FormBody {
  const body: FormBody = Object.create(null)
  for (const [name, value] of new URLSearchParams(text)) {
    const prev = body[name]
    body[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
  }
  return body
}

function contextOf(request: FastifyRequest): RequestContext {
  return {
    clientIp: request.clientIp,
    userAgent: request.headers['user-agent'],
    authorization: request.headers.authorization,
  }
}

function paramsOf(request: FastifyRequest) {
  return readParams(request.body as FormBody | undefined, request.query as Record<string, unknown>)
}

/** Renders an {@link OAuthError} as RFC 6749 §5.2 JSON. */
function sendOAuthError(reply: FastifyReply, err: OAuthError): FastifyReply {
  for (const [name, value] of Object.entries(err.headers)) reply.header(name, value)
  return reply
    .status(err.status)
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .type('application/json')
    .send(err.toJSON())
}

/** Maps anything thrown to the OAuth error the client sees; logs what it hides. */
function toOAuthError(err: unknown, request: FastifyRequest): OAuthError {
  if (err instanceof OAuthError) return err
  if (err instanceof StoreUnavailableError) {
    request.log.error({ err }, 'store unavailable')
    return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable', { headers: { 'Retry-After': '5' } })
  }
  const e = err as { statusCode?: number; code?: string }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const description =
      e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'the request body is too large' : e.statusCode === 415 ? 'unsupported content type' : 'malformed request'
    return new OAuthError('invalid_request', description, { status: e.statusCode, cause: err })
  }
  request.log.error({ err }, 'unhandled error')
  return new OAuthError('server_error', 'the server encountered an unexpected error')
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
  const app = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: false,
    return503OnClosing: true,
    // A client that stops sending its body is cut off (408) instead of holding a socket forever.
    requestTimeout: REQUEST_TIMEOUT_MS,
    routerOptions: { ignoreTrailingSlash: true },
    // One access-log line per request (onResponse, below) instead of fastify's two, written after
    // the client address is known.
    logController: new LogController({ disableRequestLogging: true }),
  })

  app.decorateRequest('clientIp', '')
  // Callback-style hooks: on every request, an async hook's promise is measurable overhead.
  app.addHook('onRequest', (request, reply, done) => {
    request.clientIp = resolveClientIp(request.socket.remoteAddress, request.headers['x-forwarded-for'])
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache').header('x-content-type-options', 'nosniff')
    // Bodies are parsed as sent; a compressed body would be read as garbage (RFC 9110 §8.4).
    const encoding = request.headers['content-encoding']
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity')
      return done(new OAuthError('invalid_request', 'content-encoding is not supported', { status: 415 }))
    done()
  })
  const accessLog = accessLoggerOf(deps.logger)
  app.addHook('onResponse', (request, reply, done) => {
    accessLog.info(
      { reqId: request.id, method: request.method, path: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, clientIp: request.clientIp },
      'request',
    )
    done()
  })

  // Only form bodies are parsed. Any other media type is read (within the limit) and discarded,
  // so the endpoint answers `invalid_request` itself rather than 415 from the framework.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, text, done) => {
    done(null, parseFormBody(text as string))
  })
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => done(null, undefined))

  app.setErrorHandler((err, request, reply) => sendOAuthError(reply, toOAuthError(err, request)))
  for (const plugin of deps.plugins ?? []) await plugin(app)
  // A known path asked with another method is 405 with `Allow` (RFC 9110 §15.5.6), not 404.
  const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!
    const allowed = methods.filter((method) => app.hasRoute({ url: path, method }))
    if (allowed.length > 0)
      return sendOAuthError(reply, new OAuthError('invalid_request', `use ${allowed.join(' or ')} for ${path}`, { status: 405, headers: { Allow: allowed.join(', ') } }))
    return sendOAuthError(reply, new OAuthError('invalid_request', `no endpoint ${request.method} ${path.slice(0, 100)}`, { status: 404 }))
  })

  const { protocol } = deps
  const cacheable = (reply: FastifyReply) => reply.header('cache-control', 'public, max-age=300').removeHeader('pragma')

  app.get(ENDPOINTS.metadata, async (_req, reply) => cacheable(reply).send(deps.metadata))
  app.get(ENDPOINTS.jwks, async (_req, reply) => cacheable(reply).type('application/jwk-set+json').send(await protocol.keys.jwks()))
  app.get('/healthz', async (_req, reply) => {
    await deps.healthCheck()
    return reply.send({ status: 'ok' })
  })

  // RFC 9449 §8: when nonces are required, every answer of the two DPoP endpoints (errors too)
  // carries a current nonce, so a client learns it before it needs it.
  const offerDpopNonce = (reply: FastifyReply) => {
    if (protocol.dpopNonces) reply.header('DPoP-Nonce', protocol.dpopNonces.current())
  }
  /** Verifies the request's `DPoP` header, if any, against `path` (RFC 9449 §4.3); null when absent. */
  const dpopJktOf = async (request: FastifyRequest, path: string): Promise<string | null> => {
    const proof = request.headers.dpop
    return proof === undefined ? null : (await verifyDpopProof(proof, request.method, protocol.issuer + path, protocol)).jkt
  }
  app.post(ENDPOINTS.deviceAuthorization, async (request, reply) => {
    offerDpopNonce(reply)
    const params = paramsOf(request)
    const dpopJkt = await dpopJktOf(request, ENDPOINTS.deviceAuthorization)
    return handleDeviceAuthorization(params, contextOf(request), protocol, dpopJkt)
  })
  app.post(ENDPOINTS.token, async (request, reply) => {
    offerDpopNonce(reply)
    const params = paramsOf(request)
    const dpopJkt = await dpopJktOf(request, ENDPOINTS.token)
    return handleTokenRequest(params, contextOf(request), dpopJkt, protocol)
  })
  app.post(ENDPOINTS.revocation, async (request, reply) => {
    await handleRevocation(paramsOf(request), contextOf(request), protocol)
    return reply.status(200).send()
  })
  app.post(ENDPOINTS.introspection, async (request) => handleIntrospection(paramsOf(request), contextOf(request), protocol))
  // devicegate's revocation feed for resource servers that verify JWTs locally.
  app.get(REVOCATION_FEED_PATH, async (request) => handleRevocationFeed(request.query as Record<string, unknown>, contextOf(request), protocol))

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
  })
  return app
}
