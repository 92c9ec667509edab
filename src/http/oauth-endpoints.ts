/**
 * The form-encoded JSON endpoints of the OAuth surface — device authorization (RFC 8628 §3.1),
 * token (RFC 6749 §3.2, RFC 8628 §3.4), introspection (RFC 7662 §2), revocation (RFC 7009 §2) —
 * described once, and the one rendering of their answers and of every OAuth error.
 *
 * Two paths answer these endpoints and both go through what is here: fastify's routes (app.ts)
 * and the fast path in front of fastify (fast-routes.ts), so they cannot drift apart.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import { authorizationField, dpopField } from '../protocol/bearer.js'
import type { ProtocolDeps, RequestContext } from '../protocol/deps.js'
import { checkClientAuthenticationForm } from '../protocol/clients.js'
import { handleDeviceAuthorization } from '../protocol/device-authorization.js'
import { verifyDpopProof } from '../protocol/dpop.js'
import { OAuthError } from '../protocol/errors.js'
import { handleIntrospection } from '../protocol/introspection.js'
import { ENDPOINTS } from '../protocol/metadata.js'
import { readParams, type FormBody, type Params } from '../protocol/params.js'
import { handleRevocation } from '../protocol/revocation.js'
import { handleTokenRequest } from '../protocol/token.js'
import { isDataException } from '../storage/data-errors.js'
import { StoreUnavailableError } from '../storage/store.js'

/** Largest accepted request body, in bytes. OAuth requests are a few hundred bytes. */
export const BODY_LIMIT_BYTES = 64 * 1024

/**
 * Headers every JSON answer starts with, in this order (lower case, as fastify writes them):
 * no caching of responses that may carry tokens (RFC 6749 §5.1) and no content sniffing.
 */
export const NO_STORE_HEADERS = Object.freeze({
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'x-content-type-options': 'nosniff',
} as const)

/** `Content-Type` of a JSON answer, byte for byte as fastify completes `application/json`. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'

/** One request to a form endpoint, as the path that answers it has read it. */
export interface FormRequest {
  method: string
  /**
   * The path requested, as received and without the query (`/token`, or `/token/`, which the
   * router serves too): a DPoP proof's `htu` is judged against the issuer followed by it (RFC 9449
   * §4.3 check 9), so a proof names the URI it is sent to.
   */
  path: string
  /** The parsed form body; undefined when the body was of another media type (or absent). */
  body: FormBody | undefined
  /** The parsed query string; undefined or empty when there was none. */
  query: Record<string, unknown> | undefined
  headers: IncomingHttpHeaders
  /**
   * The header fields as received (node's `IncomingMessage.rawHeaders`: names and values
   * alternating), where a repeated `Authorization` field shows every line (see {@link contextOf}).
   */
  rawHeaders: readonly string[]
  /** The client address (see client-address.ts). */
  clientIp: string
}

/** A form-encoded OAuth endpoint answered with JSON. */
export interface FormEndpoint {
  /** Its path (ENDPOINTS in protocol/metadata.ts), also its route pattern in metrics. */
  readonly path: string
  /**
   * The `DPoP-Nonce` every answer of this endpoint carries, errors included, so a client learns it
   * before it needs it (RFC 9449 §8); read before the request is handled. Undefined when the
   * endpoint offers none (not a DPoP endpoint, or nonces are not required).
   */
  readonly dpopNonce: (() => string) | undefined
  /** Whether its requests may carry a DPoP proof (RFC 9449 §5, §10): its route is marked `takesDpopProof`. */
  readonly takesDpopProof: boolean
  /**
   * Handles one request: its parameters (protocol/params.ts), its DPoP proof where the endpoint
   * takes one, then the protocol handler.
   * @returns the JSON answer, or undefined for an empty `200` (revocation, RFC 7009 §2.2).
   * @throws {OAuthError} the answer when the request fails; anything else is a fault (see {@link toOAuthError}).
   */
  handle(request: FormRequest): Promise<object | undefined>
}

/**
 * What the protocol handlers read of a request besides its parameters. `authorization` is every
 * line of a repeated `Authorization` field ({@link authorizationField}), which client
 * authentication refuses (RFC 6749 §2.3, RFC 9110 §5.3).
 */
export function contextOf(request: Pick<FormRequest, 'headers' | 'rawHeaders' | 'clientIp'>): RequestContext {
  return { clientIp: request.clientIp, userAgent: request.headers['user-agent'], authorization: authorizationField(request) }
}

/** The four form endpoints, bound to `protocol`. */
export function formEndpoints(protocol: ProtocolDeps): readonly FormEndpoint[] {
  const nonces = protocol.dpopNonces
  const dpopNonce = nonces === undefined ? undefined : () => nonces.current()
  const paramsOf = (request: FormRequest) => readParams(request.body, request.query)
  /**
   * Verifies the request's `DPoP` field, if any, against the path requested (RFC 9449 §4.3); null
   * when absent. The field is read as received ({@link dpopField}), so a repeated one is refused
   * (check 1).
   */
  const dpopJktOf = async (request: FormRequest): Promise<string | null> => {
    const proof = dpopField(request)
    return proof === undefined ? null : (await verifyDpopProof(proof, request.method, protocol.issuer + request.path, protocol)).jkt
  }
  /**
   * An endpoint that takes a DPoP proof. A malformed request is refused before the proof is
   * judged (RFC 6749 §5.2 `invalid_request`): its parameters are read first (a repeated parameter),
   * then the form of its client authentication (a repeated `Authorization` field, more than one
   * method, a `client_id` beside Basic credentials of another client: RFC 6749 §2.3, RFC 9110 §5.3;
   * `checkClientAuthenticationForm`), then the proof, then `handler` decides (and verifies the
   * client's credentials).
   */
  const withDpop = (path: string, handler: (params: Params, ctx: RequestContext, dpopJkt: string | null) => Promise<object>): FormEndpoint => ({
    path,
    dpopNonce,
    takesDpopProof: true,
    async handle(request) {
      const params = paramsOf(request)
      const ctx = contextOf(request)
      checkClientAuthenticationForm({ authorization: ctx.authorization, params })
      const dpopJkt = await dpopJktOf(request)
      return handler(params, ctx, dpopJkt)
    },
  })
  return [
    withDpop(ENDPOINTS.deviceAuthorization, (params, ctx, dpopJkt) => handleDeviceAuthorization(params, ctx, protocol, dpopJkt)),
    withDpop(ENDPOINTS.token, (params, ctx, dpopJkt) => handleTokenRequest(params, ctx, dpopJkt, protocol)),
    {
      path: ENDPOINTS.revocation,
      dpopNonce: undefined,
      takesDpopProof: false,
      async handle(request) {
        await handleRevocation(paramsOf(request), contextOf(request), protocol)
        return undefined
      },
    },
    {
      path: ENDPOINTS.introspection,
      dpopNonce: undefined,
      takesDpopProof: false,
      handle: async (request) => handleIntrospection(paramsOf(request), contextOf(request), protocol),
    },
  ]
}

/**
 * Adds the headers of an {@link OAuthError}'s JSON answer (RFC 6749 §5.2) to `headers`, names in
 * lower case: the error's own (`WWW-Authenticate`, `Retry-After`…), then no-store, nosniff and
 * the JSON content type.
 * @returns `headers`.
 */
export function addOAuthErrorHeaders(err: OAuthError, headers: Record<string, string>): Record<string, string> {
  const own = err.headers
  for (const name in own) headers[name.toLowerCase()] = own[name]!
  headers['cache-control'] = NO_STORE_HEADERS['cache-control']
  headers.pragma = NO_STORE_HEADERS.pragma
  headers['x-content-type-options'] = NO_STORE_HEADERS['x-content-type-options']
  headers['content-type'] = JSON_CONTENT_TYPE
  return headers
}

/** The log a fault is written to: the request's logger (bound to its id). */
type FaultLog = Pick<FastifyBaseLogger, 'error' | 'warn'>

/**
 * Maps anything thrown while answering a request to the OAuth error the client sees, and logs
 * what it hides: an unreachable store is `503 temporarily_unavailable` with `Retry-After`, a value
 * the database refuses is the request's fault (`invalid_request`), a framework 4xx (body too
 * large, bad URL encoding…) keeps its status as `invalid_request` (except a malformed
 * `Content-Type`: 400, as for any body that is not a form), anything else is
 * `500 server_error` with a generic description.
 */
export function toOAuthError(err: unknown, log: FaultLog): OAuthError {
  if (err instanceof OAuthError) return err
  if (err instanceof StoreUnavailableError) {
    log.error({ err }, 'store unavailable')
    return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable', { headers: { 'Retry-After': '5' } })
  }
  if (isDataException(err)) {
    // A value the database cannot hold: the request's fault, not the server's.
    log.warn({ err }, 'database refused a request value')
    return new OAuthError('invalid_request', 'a request value is out of range or not valid text', { cause: err })
  }
  const e = err as { statusCode?: number; code?: string }
  // A Content-Type that is not one valid media type (empty, a list, no subtype): fastify refuses it
  // with 415 before any route, but it is a malformed request, answered as any non-form body is —
  // 400 invalid_request (RFC 6749 §5.2; RFC 8628 §3.1).
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new OAuthError('invalid_request', 'the Content-Type header is not a valid media type', { cause: err })
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const description =
      e.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? 'the request body is too large'
        : e.code === 'FST_ERR_BAD_URL'
          ? 'the request URL is not validly encoded'
          : e.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? 'a path segment is too long'
            : e.statusCode === 415
              ? 'unsupported content type'
              : 'malformed request'
    return new OAuthError('invalid_request', description, { status: e.statusCode, cause: err })
  }
  log.error({ err }, 'unhandled error')
  return new OAuthError('server_error', 'the server encountered an unexpected error')
}
