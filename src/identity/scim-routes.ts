/**
 * HTTP routes of the SCIM 2.0 server at `/scim/v2` (RFC 7644 §3); `scim.ts` decides. Users and
 * Groups are served by the same routes over {@link ScimResourceOperations}.
 *
 * Authentication: an RFC 6750 bearer access token issued by devicegate to a confidential client
 * (client_credentials) whose scope includes the configured SCIM scope (default `scim`); checked
 * against the store as introspection judges tokens. Without credentials (no `Authorization`, a
 * blank one, or another scheme) 401 with the bare `Bearer` challenge and a minimal SCIM error
 * (RFC 6750 §3.1, RFC 7644 §3.12; see {@link scimWithoutCredentials}); a malformed `Bearer` field or
 * a repeated field 400 `invalid_request`; a token that is not live 401 `invalid_token`; 403
 * `insufficient_scope` without the scope. Every error, including unparseable JSON and
 * unknown paths under /scim/v2, is SCIM error JSON (RFC 7644 §3.12), never a 5xx for bad input:
 * another method on a known endpoint is 405 with `Allow`, a body that is not
 * `application/scim+json` or `application/json` (RFC 7644 §3.1, §3.8) is 415, `/Me` and POST
 * `.search` (not implemented) are 501.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ClientDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import { describeJsonBodyProblem, jsonBodyProblem } from '../core/json-body.js'
import { authorizationField, withoutCredentials } from '../protocol/bearer.js'
import { OAuthError } from '../protocol/errors.js'
import { isDataException } from '../storage/data-errors.js'
import type { Store } from '../storage/store.js'
import { sha256Hex } from '../system.js'
import { ScimError, ScimService, SCHEMA, type ListQuery, type ScimResourceOperations, type ScimResult } from './scim.js'

export const SCIM_PREFIX = '/scim/v2'
const SCIM_JSON = 'application/scim+json'
const REALM = 'Bearer realm="devicegate-scim"'
const BODY_LIMIT = 1024 * 1024

/** What the routes need. */
export interface ScimRouteDeps {
  scim: ScimService
  /** Access tokens are looked up here. */
  store: Store
  clients: ClientDirectory
  clock: Clock
  /** Scope the bearer token must carry. */
  scope: string
}

class ScimAuthError extends ScimError {
  constructor(
    status: number,
    detail: string,
    readonly challenge: string,
  ) {
    super(status, detail)
  }
}

/** The Bearer scheme, the only one the SCIM endpoints take (a DPoP or Basic field is another scheme). */
const BEARER_SCHEME = /^\s*Bearer(?:\s|$)/i

/**
 * The body of the answer to a SCIM request without credentials: RFC 7644 §3.12 requires SCIM
 * error JSON on every error ("MUST return the errors in the body", `schemas` and `status`
 * REQUIRED, `detail` OPTIONAL), while RFC 6750 §3.1 says an answer to a request without
 * credentials "SHOULD NOT include an error code or other error information". Both hold with the
 * required members alone: `schemas` and `status` "401", no `detail` and no `scimType` — the
 * `WWW-Authenticate` challenge, bare, says the rest, as at devicegate's other protected resources
 * (whose OAuth answer is `{}`).
 * @see https://www.rfc-editor.org/rfc/rfc7644#section-3.12
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 */
export const SCIM_NO_CREDENTIALS_BODY = JSON.stringify({ schemas: [SCHEMA.error], status: '401' })

/**
 * What makes a parsed SCIM body unfit to store, if anything ({@link jsonBodyProblem}): nesting
 * too deep is `invalidSyntax`, a malformed string `invalidValue` (RFC 7644 §3.12).
 */
export function scimBodyProblem(value: unknown): ScimError | undefined {
  const problem = jsonBodyProblem(value)
  if (problem === undefined) return undefined
  return new ScimError(400, describeJsonBodyProblem(problem), problem === 'too_deep' ? 'invalidSyntax' : 'invalidValue')
}

/** Registers `/scim/v2/…` in its own scope (JSON body parsing, SCIM error handler). */
export async function registerScimRoutes(app: FastifyInstance, deps: ScimRouteDeps): Promise<void> {
  await app.register(
    async (api) => {
      const parse = (_req: FastifyRequest, text: string | Buffer, done: (err: Error | null, body?: unknown) => void) => {
        let body: unknown
        try {
          body = text.length === 0 ? undefined : JSON.parse(text.toString())
        } catch {
          done(new ScimError(400, 'the body is not valid JSON', 'invalidSyntax'), undefined)
          return
        }
        const problem = scimBodyProblem(body)
        if (problem !== undefined) {
          done(problem, undefined)
          return
        }
        done(null, body)
      }
      // RFC 7644 §3.1/§3.8: bodies are application/scim+json (application/json accepted). The app's
      // catch-all parser (which discards other bodies) is not inherited: any other media type, or a
      // body without one, is 415 here rather than a misleading 400 about a missing body.
      api.removeAllContentTypeParsers()
      api.addContentTypeParser(['application/scim+json', 'application/json'], { parseAs: 'string', bodyLimit: BODY_LIMIT }, parse)
      api.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (request, _body, done) => {
        const type = request.headers['content-type']
        done(new ScimError(415, `send the body as ${SCIM_JSON} or application/json${type === undefined ? '' : `, not ${JSON.stringify(type.slice(0, 100))}`}`), undefined)
      })

      api.setErrorHandler((err, request, reply) => {
        if (err instanceof ScimAuthError) reply.header('www-authenticate', err.challenge)
        if (err instanceof ScimError) return sendError(reply, err)
        // What the app-wide onRequest hook refuses before any SCIM route (a Content-Encoding, an
        // HTTP/1.1 request without Host, an Expect it cannot meet, the 503 while draining) comes as
        // an OAuthError: its status and headers (Retry-After, Connection), in SCIM error JSON.
        if (err instanceof OAuthError) {
          reply.headers({ ...err.headers })
          return sendError(reply, new ScimError(err.status, err.description ?? err.error))
        }
        const status = (err as { statusCode?: number }).statusCode
        if (status !== undefined && status >= 400 && status < 500) return sendError(reply, new ScimError(status, String((err as Error).message).slice(0, 200), status === 400 ? 'invalidSyntax' : undefined))
        // The app-wide backstop (src/http/app.ts) does not reach this scope's own handler.
        if (isDataException(err)) {
          request.log.warn({ err: { code: (err as { code?: string }).code, message: (err as Error).message } }, 'scim request carried a value the database refuses')
          return sendError(reply, new ScimError(400, 'a value in the request cannot be stored', 'invalidValue'))
        }
        request.log.error({ err }, 'scim request failed')
        return sendError(reply, new ScimError(500, 'internal error'))
      })
      api.setNotFoundHandler((request, reply) => sendError(reply, new ScimError(404, `no SCIM endpoint ${request.method} ${request.url.split('?')[0]!.slice(0, 100)}`)))

      /**
       * RFC 6750 bearer check; returns the audit actor `scim:<client id>`. The field is read as
       * received: node's `headers.authorization` keeps only the first line of a repeated field,
       * which is refused (400 `invalid_request`, RFC 6750 §3.1, RFC 9110 §5.3) whatever its lines.
       */
      async function authenticate(field: string | string[] | undefined): Promise<string> {
        if (Array.isArray(field)) throw new ScimAuthError(400, 'the Authorization header must be sent once', `${REALM}, error="invalid_request"`)
        // A Bearer field here (scimWithoutCredentials answered the others): one without a
        // well-formed token is a malformed request (RFC 6750 §3.1), as at the other protected resources.
        const m = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(field ?? '')
        if (!m) throw new ScimAuthError(400, 'the Authorization header must be "Bearer <access token>"', `${REALM}, error="invalid_request"`)
        const record = await deps.store.findAccessTokenByHash(sha256Hex(m[1]!))
        const now = deps.clock.nowSeconds()
        const invalid = () => new ScimAuthError(401, 'the access token is not active', `${REALM}, error="invalid_token"`)
        if (record === undefined || record.revokedAt !== null || record.grantRevokedAt !== null || record.expiresAt <= now || record.dpopJkt !== null) throw invalid()
        const client = deps.clients.get(record.clientId)
        if (client === undefined || client.disabled || !client.isConfidential) throw invalid()
        if (!record.scope.split(' ').includes(deps.scope))
          throw new ScimAuthError(403, `the "${deps.scope}" scope is required`, `${REALM}, error="insufficient_scope", scope="${deps.scope}"`)
        return `scim:${record.clientId}`
      }

      /**
       * RFC 6750 §3.1 with RFC 7644 §3.12: a request without credentials — no `Authorization`, a
       * blank one, or an "unsupported authentication method" (Basic, DPoP: SCIM takes Bearer only)
       * — is answered 401 with the bare challenge and {@link SCIM_NO_CREDENTIALS_BODY}, nothing
       * else. Answered here rather than thrown, so it is counted as `no_credentials` (metrics).
       * @returns true when it answered.
       */
      const scimWithoutCredentials = (field: string | string[] | undefined, request: FastifyRequest, reply: FastifyReply): boolean => {
        if (withoutCredentials(field, 'devicegate-scim', { challenge: REALM, scheme: BEARER_SCHEME }) === undefined) return false
        request.oauthError = 'no_credentials'
        reply.code(401).header('www-authenticate', REALM).header('cache-control', 'no-store').type(SCIM_JSON).send(SCIM_NO_CREDENTIALS_BODY)
        return true
      }

      // Authentication comes first, before the body is even parsed.
      const actors = new WeakMap<FastifyRequest, string>()
      api.addHook('onRequest', async (request, reply) => {
        const field = authorizationField(request.raw)
        if (scimWithoutCredentials(field, request, reply)) return reply
        actors.set(request, await authenticate(field))
        return undefined
      })
      const actorOf = (request: FastifyRequest) => actors.get(request)!

      const { scim } = deps
      // RFC 7644 §3.4.2: each query parameter holds one value; a repeated one (the router reads it
      // as a list) is a 400 naming it, not a value of another type handed to the filter parser.
      const q = (request: FastifyRequest): ListQuery => {
        const query = (request.query ?? {}) as Record<string, unknown>
        for (const [name, value] of Object.entries(query))
          if (typeof value !== 'string')
            throw new ScimError(400, `"${name.slice(0, 100)}" must not be included more than once`, name === 'filter' ? 'invalidFilter' : 'invalidValue')
        return query as ListQuery
      }
      const id = (request: FastifyRequest) => (request.params as { id: string }).id
      const ifMatch = (request: FastifyRequest) => {
        const v = request.headers['if-match']
        return typeof v === 'string' ? v : undefined
      }
      /** One answer: status, no-store, the resource's weak ETag, Location on 201 (RFC 7644 §3.3). */
      const send = (reply: FastifyReply, r: ScimResult) => {
        reply.code(r.status).header('cache-control', 'no-store')
        if (r.etag !== undefined) reply.header('etag', r.etag)
        if (r.status === 201 && r.body?.meta !== undefined) reply.header('location', (r.body.meta as { location: string }).location)
        return r.body === undefined ? reply.send() : reply.type(SCIM_JSON).send(JSON.stringify(r.body))
      }

      type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
      type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>
      /**
       * Registers one SCIM endpoint with its handlers; any other method on it is 405 with `Allow`
       * (RFC 9110 §15.5.6) and SCIM error JSON (RFC 7644 §3.12), not 404: the path exists.
       */
      const endpoint = (path: string, handlers: Partial<Record<Method, Handler>>) => {
        const methods = Object.keys(handlers) as Method[]
        for (const method of methods) api.route({ method, url: path, handler: handlers[method]! })
        const allow = (methods.includes('GET') ? [...methods, 'HEAD'] : methods).join(', ')
        const others = (['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const).filter((m) => !methods.includes(m))
        if (others.length > 0)
          api.route({
            method: others,
            url: path,
            handler: async (request, reply) =>
              sendError(reply.header('allow', allow), new ScimError(405, `use ${methods.join(' or ')} for ${request.url.split('?')[0]!.slice(0, 100)}`)),
          })
      }

      endpoint('/ServiceProviderConfig', { GET: async (_request, reply) => send(reply, scim.serviceProviderConfig()) })
      const listOf = (items: Record<string, unknown>[]) => ({ status: 200, body: { schemas: [SCHEMA.list], totalResults: items.length, startIndex: 1, itemsPerPage: items.length, Resources: items } })
      endpoint('/ResourceTypes', { GET: async (_request, reply) => send(reply, listOf(scim.resourceTypes())) })
      endpoint('/ResourceTypes/:id', {
        GET: async (request, reply) => {
          const found = scim.resourceTypes().find((r) => r.id === id(request))
          if (!found) throw new ScimError(404, `no ResourceType "${id(request)}"`)
          return send(reply, { status: 200, body: found })
        },
      })
      endpoint('/Schemas', { GET: async (_request, reply) => send(reply, listOf(scim.schemas())) })
      endpoint('/Schemas/:id', {
        GET: async (request, reply) => {
          const found = scim.schemas().find((s) => s.id === id(request))
          if (!found) throw new ScimError(404, `no Schema "${id(request)}"`)
          return send(reply, { status: 200, body: found })
        },
      })

      // Endpoints RFC 7644 defines that devicegate does not implement: 501, not 404 or 405 — /Me
      // (§3.11: "SHOULD respond with HTTP status code 501") and searching with POST (§3.4.3).
      const notImplemented = (what: string) => async (_request: FastifyRequest, reply: FastifyReply) => sendError(reply, new ScimError(501, `${what} is not implemented`))
      api.route({ method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], url: '/Me', handler: notImplemented('/Me (RFC 7644 §3.11)') })
      for (const path of ['/.search', '/Users/.search', '/Groups/.search']) api.route({ method: ['POST'], url: path, handler: notImplemented('searching with POST (RFC 7644 §3.4.3); use GET with "filter"') })

      // Users and Groups: the same six operations, the same If-Match / ETag handling (RFC 7644 §3.14).
      for (const [path, ops, kind] of [['/Users', scim.users, 'User'], ['/Groups', scim.groups, 'Group']] as const) {
        // No resource id holds a control character (they are UUIDs); asked of the database, U+0000
        // is an error on PostgreSQL (a 500), so such an id is answered here, as any unknown id is.
        const resourceId = (request: FastifyRequest) => {
          const v = id(request)
          if (/[\u0000-\u001f\u007f]/.test(v)) throw new ScimError(404, `no ${kind} ${JSON.stringify(v.slice(0, 100))}`)
          return v
        }
        endpoint(path, {
          GET: async (request, reply) => send(reply, await ops.list(q(request))),
          POST: async (request, reply) => send(reply, await ops.create(request.body, actorOf(request))),
        })
        endpoint(`${path}/:id`, {
          GET: async (request, reply) => send(reply, await ops.get(resourceId(request), q(request))),
          PUT: async (request, reply) => send(reply, await ops.replace(resourceId(request), request.body, actorOf(request), ifMatch(request))),
          PATCH: async (request, reply) => send(reply, await ops.patch(resourceId(request), request.body, actorOf(request), ifMatch(request))),
          DELETE: async (request, reply) => send(reply, await ops.remove(resourceId(request), actorOf(request), ifMatch(request))),
        })
      }
    },
    { prefix: SCIM_PREFIX },
  )
}

function sendError(reply: FastifyReply, err: ScimError): FastifyReply {
  return reply.code(err.status).header('cache-control', 'no-store').type(SCIM_JSON).send(JSON.stringify(err.toJSON()))
}
