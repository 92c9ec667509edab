/**
 * The fast path: the ordinary requests of the form-encoded JSON endpoints (token polling,
 * introspection, device authorization, revocation: most of the traffic) answered straight from
 * node's `request` event, in front of fastify.
 *
 * fastify's pipeline for one of these requests (routing, request and reply objects, hook runners,
 * the content-type parser, reply serialisation) was about a fifth of the CPU of a poll (issue
 * 17). Here the same request costs one map lookup, a few header checks, the body read and one
 * `writeHead`/`end`; what decides the answer is shared with fastify's routes
 * (oauth-endpoints.ts: parameters, DPoP, protocol handlers, error rendering), and the answer is
 * byte for byte the one fastify would send: the same status, headers in the same order, body,
 * access-log line, request id and metrics.
 *
 * Only requests with nothing unusual are taken: `POST` to one of the paths exactly as registered
 * (or with fastify's ignored trailing slash), no query string, a `Content-Length` within the body
 * limit, an `application/x-www-form-urlencoded` body (optionally `; charset=utf-8`), no
 * `Transfer-Encoding`, `Content-Encoding` or `Expect`, at most one `Host` line (exactly one in HTTP/1.1), and the server not draining. Anything else
 * — other methods and paths, 413, 415, 405, bodies of other media types, the 503 while draining —
 * falls through to fastify unchanged, which answers it as it always has.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { OAuthError, type OAuthErrorOutcome } from '../protocol/errors.js'
import { parseFormBody } from './form-body.js'
import { addOAuthErrorHeaders, BODY_LIMIT_BYTES, JSON_CONTENT_TYPE, NO_STORE_HEADERS, toOAuthError, type FormEndpoint } from './oauth-endpoints.js'
import type { AnsweredRequest } from './request-context.js'

/** What the fast path needs from the app. */
export interface FastRoutesOptions {
  /** The endpoints it answers (oauth-endpoints.ts `formEndpoints`). */
  endpoints: readonly FormEndpoint[]
  /** Whether fastify's routes treat `/token/` as `/token` (fastify's `ignoreTrailingSlash`). */
  ignoreTrailingSlash: boolean
  /** Names the client (client-address.ts), from the socket peer and `X-Forwarded-For`. */
  resolveClientIp: (peer: string | undefined, forwardedFor: string | string[] | undefined) => string
  /** The app's request id generator, shared with fastify (`genReqId`) so ids stay unique. */
  nextRequestId: () => string
  /** True once the server is draining for shutdown: fastify then answers 503 itself. */
  isClosing: () => boolean
  /** The app's logger; faults are logged on a child bound to the request id, as fastify's `request.log`. */
  logger: FastifyBaseLogger
  /** Called once the response has finished (the access-log line and metrics, as fastify's `onResponse`). */
  answered: (request: AnsweredRequest) => void
}

/**
 * A node `request` listener for the fast path.
 * @returns true when it has taken the request (and will answer it); false when the request is
 *   to go to fastify (nothing has been read from it).
 */
export type FastRoute = (req: IncomingMessage, res: ServerResponse) => boolean

/**
 * `Content-Type` values fastify's content-type parser gives to the form parser and the fast path
 * takes: the media type in any case, alone or with a UTF-8 charset (what browsers and `fetch`
 * send). Bodies are decoded as UTF-8 either way, as fastify does.
 */
const FORM_CONTENT_TYPE = /^application\/x-www-form-urlencoded(?:; ?charset=utf-8)?$/i

/**
 * A request the fast path has taken: what it learned on arrival, its body as read so far, and
 * the outcome reported once its response has finished. One object per request, found by the
 * listeners (shared by all requests, see {@link createFastRoutes}) on the request and response
 * under {@link TAKEN}: no closures and no `once` wrappers per request.
 */
class TakenRequest {
  /** The body's chunks so far. */
  readonly chunks: Buffer[] = []
  /** `reading` the body; `answering` once it has ended (or failed); `reported` once reported. */
  phase: 'reading' | 'answering' | 'reported' = 'reading'
  /** What was thrown that is not an OAuth answer (a fault), for observers; undefined when nothing was. */
  error: unknown = undefined
  /** The outcome of the OAuth error answered ({@link OAuthError.outcome}), or null. */
  oauthError: OAuthErrorOutcome | null = null

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly endpoint: FormEndpoint,
    /** Its request id (`req-1`, …). */
    readonly id: string,
    /** The client address (client-address.ts). */
    readonly clientIp: string,
    /** `performance.now()` at arrival, in milliseconds. */
    readonly started: number,
  ) {}
}

/** Where a taken request's {@link TakenRequest} is kept on its `IncomingMessage` and `ServerResponse`. */
const TAKEN: unique symbol = Symbol('devicegate.fastRoute')

/** A node request or response the fast path has taken. */
type Taken<T> = T & { [TAKEN]: TakenRequest }

/** Builds the fast path's `request` listener. */
export function createFastRoutes(options: FastRoutesOptions): FastRoute {
  const { resolveClientIp, nextRequestId, isClosing, logger, answered } = options
  const routes = new Map<string, FormEndpoint>()
  for (const endpoint of options.endpoints) {
    routes.set(endpoint.path, endpoint)
    if (options.ignoreTrailingSlash) routes.set(`${endpoint.path}/`, endpoint)
  }

  /**
   * The response's `finish` and `error` listener: reports the request once, when fastify runs
   * `onResponse`. A response to a client that has gone away may do neither; then nothing is
   * reported, as with fastify. What `answered` throws (a log destination already closed) is
   * dropped, as fastify drops what an `onResponse` hook throws when request logging is off.
   */
  function onResponseDone(this: Taken<ServerResponse>): void {
    const t = this[TAKEN]
    if (t.phase === 'reported') return
    t.phase = 'reported'
    try {
      answered({ id: t.id, method: 'POST', url: t.req.url!, clientIp: t.clientIp, endpoint: t.endpoint.path, status: this.statusCode, elapsedMs: performance.now() - t.started, error: t.error, oauthError: t.oauthError })
    } catch {
      // Dropped, as fastify does (see above).
    }
  }

  /**
   * Leaves the body behind: from now on the request is answered, and reported once its response
   * has finished or failed, whichever comes first (fastify's `onResponse`).
   */
  function startAnswering(t: TakenRequest): void {
    t.phase = 'answering'
    t.res.on('finish', onResponseDone)
    t.res.on('error', onResponseDone)
  }

  /** The request's `data` listener. */
  function onBodyData(this: Taken<IncomingMessage>, chunk: Buffer): void {
    this[TAKEN].chunks.push(chunk)
  }

  /** The request's `end` listener: the body is complete; answer it. */
  function onBodyEnd(this: Taken<IncomingMessage>): void {
    const t = this[TAKEN]
    if (t.phase !== 'reading') return
    startAnswering(t)
    const chunks = t.chunks
    const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')
    answer(t, text).catch((err: unknown) => {
      // Only a fault of the answering itself (a header node refuses) gets here.
      logger.child({ reqId: t.id }).error({ err }, 'unhandled error')
      t.res.destroy()
    })
  }

  /** The request's `error` listener: only while the body is read (see {@link answerUnreadable}). */
  function onBodyError(this: Taken<IncomingMessage>, err: Error): void {
    const t = this[TAKEN]
    if (t.phase !== 'reading') return
    startAnswering(t)
    answerUnreadable(t, err)
  }

  /** Writes the answer: `headers` completed by its length and, while draining, `Connection: close`. */
  function send(res: ServerResponse, status: number, headers: Record<string, string>, payload: string | undefined): void {
    headers['content-length'] = payload === undefined ? '0' : String(Buffer.byteLength(payload))
    // Draining began while this request was in flight: end the connection with the answer (as fastify's onSend hook does).
    if (isClosing()) headers.connection = 'close'
    res.writeHead(status, headers)
    res.end(payload)
  }

  /** Handles the parsed request and writes the answer; reports it once the response has finished. */
  async function answer(t: TakenRequest, text: string): Promise<void> {
    const headers: Record<string, string> = { ...NO_STORE_HEADERS }
    let status = 200
    let payload: string | undefined
    try {
      if (t.endpoint.dpopNonce !== undefined) headers['dpop-nonce'] = t.endpoint.dpopNonce()
      // req.url is the route key the endpoint was found by: the path as received, with no query.
      const result = await t.endpoint.handle({ method: 'POST', path: t.req.url!, body: parseFormBody(text), query: undefined, headers: t.req.headers, rawHeaders: t.req.rawHeaders, clientIp: t.clientIp })
      if (result !== undefined) {
        payload = JSON.stringify(result)
        headers['content-type'] = JSON_CONTENT_TYPE
      }
    } catch (err) {
      // As fastify's routes: an OAuthError is the answer (counted by its code); anything else
      // is a fault, mapped and logged by the one error mapping (counted as thrown).
      let oauth: OAuthError
      if (err instanceof OAuthError) {
        oauth = err
        t.oauthError = err.outcome
      } else {
        oauth = toOAuthError(err, logger.child({ reqId: t.id }))
        t.error = err
      }
      status = oauth.status
      addOAuthErrorHeaders(oauth, headers)
      payload = oauth.toJSONText()
    }
    send(t.res, status, headers, payload)
  }

  /**
   * The body could not be read (the client went away mid-body): answered as fastify answers a
   * body-parser error — 400 `invalid_request`, `Connection: close` — should anyone still listen.
   */
  function answerUnreadable(t: TakenRequest, err: Error & { statusCode?: number }): void {
    if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400
    const oauth = toOAuthError(err, logger.child({ reqId: t.id }))
    t.error = err
    const headers = addOAuthErrorHeaders(oauth, { ...NO_STORE_HEADERS, connection: 'close' })
    // RFC 9449 §8: every answer of a DPoP endpoint carries the nonce, this one too (last, as
    // fastify's onSend hook adds it to an answer no route gave).
    if (t.endpoint.dpopNonce !== undefined) headers['dpop-nonce'] = t.endpoint.dpopNonce()
    send(t.res, oauth.status, headers, oauth.toJSONText())
  }

  return (req, res) => {
    if (req.method !== 'POST') return false
    const endpoint = routes.get(req.url!)
    if (endpoint === undefined) return false
    const h = req.headers
    const length = h['content-length']
    if (
      length === undefined ||
      !(Number(length) <= BODY_LIMIT_BYTES) ||
      h['transfer-encoding'] !== undefined ||
      h['content-encoding'] !== undefined ||
      h.expect !== undefined ||
      (h.host === undefined ? req.httpVersionMajor === 1 && req.httpVersionMinor === 1 : hasRepeatedHost(req.rawHeaders)) ||
      h['content-type'] === undefined ||
      !FORM_CONTENT_TYPE.test(h['content-type']) ||
      isClosing()
    )
      return false
    const t = new TakenRequest(req, res, endpoint, nextRequestId(), resolveClientIp(req.socket.remoteAddress, h['x-forwarded-for']), performance.now())
    ;(req as Taken<IncomingMessage>)[TAKEN] = t
    ;(res as Taken<ServerResponse>)[TAKEN] = t
    req.on('data', onBodyData)
    req.on('end', onBodyEnd)
    req.on('error', onBodyError)
    return true
  }
}

/**
 * Whether the request has more than one `Host` field line (`rawHeaders`: name, value, name, …, as
 * received). node keeps the first and drops the others from `headers.host`; RFC 9112 §3.2 asks
 * for 400 instead, which the app's onRequest hook answers (http/app.ts).
 * @see https://www.rfc-editor.org/rfc/rfc9112#section-3.2
 */
export function hasRepeatedHost(rawHeaders: readonly string[]): boolean {
  let seen = false
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    // First letter h/H before the case-folding compare: on the polling path, cheap per field.
    if (name.length === 4 && (name.charCodeAt(0) | 0x20) === 0x68 && (name === 'Host' || name.toLowerCase() === 'host')) {
      if (seen) return true
      seen = true
    }
  }
  return false
}
