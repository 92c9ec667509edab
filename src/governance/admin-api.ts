/**
 * The admin API under `/admin/api`: JSON over HTTP, described by the OpenAPI 3.1
 * document at `/admin/api/openapi.json`.
 *
 * Authentication: an access token issued by devicegate itself (RFC 6750 §2.1 `Authorization:
 * Bearer`), typically to a confidential admin client through client_credentials, carrying the
 * configured admin scope (default `admin`). The token is checked against the store exactly as
 * introspection does (not revoked, family not revoked, unexpired, client still enabled). Without
 * a token, or with another scheme (Basic, DPoP): 401 with `WWW-Authenticate: Bearer
 * realm="devicegate-admin"` and no error code; with a malformed Bearer header (`Bearer`, `Bearer a
 * b`) or a repeated `Authorization` field: 400 `invalid_request`; with a bad token: 401
 * `invalid_token`; without the scope: 403 `insufficient_scope` (RFC 6750 §3.1). DPoP-bound tokens are refused here (the admin API does not
 * check DPoP proofs; RFC 9449 §7.2).
 *
 * Every route calls the same functions as the CLI: inventory, central revocation (with dry run),
 * anomalies and audit events since a time, user and client disable/delete, and the trusted
 * device registry.
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { JWK } from 'jose'
import type { z } from 'zod'
import type { ClientDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import { describeJsonBodyProblem, jsonBodyProblem } from '../core/json-body.js'
import { authorizationField, findActiveAccessToken, parseAuthorizationHeader, withoutCredentials } from '../protocol/bearer.js'
import { OAuthError } from '../protocol/errors.js'
import type { Store } from '../storage/store.js'
import { ADMIN_ROUTES, buildOpenApiDocument, describeIssue, type AdminRouteSpec, type RevocationBody } from './admin-schemas.js'
import type { AnomalyEngine } from './anomalies.js'
import { exportLine } from './audit.js'
import { DeviceRegistryError, getDevice, labelDevice, listDevices, registerDevice, retireDevice } from './devices.js'
import type { GovernanceEvents } from './events.js'
import { describeLineage, InvalidCursorError, listFlows, listInventory, toInventoryItem, type InventoryQuery } from './inventory.js'
import type { PrincipalAdmin } from './principals.js'
import { PeopleError, personView, type PeopleService } from '../identity/people.js'
import { RevocationTargetError, type RevocationService, type RevocationTarget } from './revocation.js'

/** Path prefix of the admin API. */
export const ADMIN_API_PREFIX = '/admin/api'

export interface AdminApiDeps {
  store: Store
  clock: Clock
  clients: ClientDirectory
  events: GovernanceEvents
  revocation: RevocationService
  principals: PrincipalAdmin
  anomalies: AnomalyEngine
  /** Scope an access token needs. */
  scope: string
  /** Stored people: `GET /users`, `GET /users/:id`, `POST /users/:id/password`. */
  people?: PeopleService
  /**
   * Routes other domains add under the prefix (access reviews, reports), registered after these
   * with the same bearer check; read when the plugin registers, so the list may be filled later.
   */
  extensions?: readonly AdminApiExtension[]
}

/**
 * Adds routes to the admin API. `authenticate` is the admin bearer check (RFC 6750); it resolves
 * to the administrator, or throws the OAuth error to send.
 */
export type AdminApiExtension = ((api: FastifyInstance, authenticate: (request: FastifyRequest) => Promise<AdminIdentity>) => void) & {
  /** OpenAPI 3.1 path items of the added routes (paths relative to the prefix), merged into `/openapi.json`. */
  openApiPaths?: Record<string, unknown>
}

/** The administrator a request was authenticated as (see {@link AdminApiExtension}). */
export interface AdminIdentity {
  /** `admin:<client id>` (or `admin:<subject>` for a user-bound token). */
  actor: string
  /** The token's user, when it was issued to a person (device flow); null for client_credentials. */
  subject: string | null
}

const REALM = 'Bearer realm="devicegate-admin"'
/** A field of the one scheme this API takes (RFC 6750 §2.1), well-formed or not. */
const BEARER_SCHEME = /^\s*Bearer(?:\s|$)/i

type Admin = AdminIdentity

type Query = Record<string, string | undefined>

function bad(description: string): OAuthError {
  return new OAuthError('invalid_request', description)
}

function notFound(what: string): OAuthError {
  return new OAuthError('invalid_request', `${what} not found`, { status: 404 })
}

/** Reads a validated revocation body into a target. */
function targetOf(body: z.output<typeof RevocationBody>): RevocationTarget {
  switch (body.kind) {
    case 'token':
      return { kind: 'token', token: body.token }
    case 'grant':
      return { kind: 'grant', grantId: body.grant_id }
    case 'user':
      return { kind: 'user', subject: body.username }
    case 'client':
      return { kind: 'client', clientId: body.client_id }
    case 'jkt':
      return { kind: 'jkt', jkt: body.jkt }
    case 'before':
      return { kind: 'before', time: body.time }
    case 'pattern':
      return {
        kind: 'pattern',
        pattern: {
          ...(body.request_ip !== undefined ? { requestIp: body.request_ip } : {}),
          ...(body.client_id !== undefined ? { clientId: body.client_id } : {}),
          ...(body.approved_by !== undefined ? { approvedBy: body.approved_by } : {}),
          ...(body.from !== undefined ? { from: body.from } : {}),
          ...(body.to !== undefined ? { to: body.to } : {}),
        },
      }
  }
}

type Out<T> = T extends z.ZodType ? z.output<T> : undefined
/** The validated input of one route. */
interface RouteInput<S extends AdminRouteSpec> {
  params: Out<S['params']>
  query: Out<S['query']>
  body: Out<S['body']>
}

/** Parses one part of a request with its schema; a failure is 400 `invalid_request` naming the field. */
function parsePart(schema: z.ZodType | undefined, value: unknown, where: 'path' | 'query' | 'body'): unknown {
  if (schema === undefined) return undefined
  const result = schema.safeParse(value)
  if (!result.success) throw bad(describeIssue(result.error, where))
  return result.data
}

/**
 * Registers the admin API as an encapsulated plugin under {@link ADMIN_API_PREFIX}, with its own
 * JSON body parser (the root application parses form bodies only).
 */
export async function registerAdminApi(app: FastifyInstance, deps: AdminApiDeps): Promise<void> {
  await app.register(
    async (api) => {
      api.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, text, done) => {
        try {
          const parsed: unknown = (text as string).length === 0 ? {} : JSON.parse(text as string)
          if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
          // U+0000 is refused by each field's schema, which names the field.
          const problem = jsonBodyProblem(parsed, { nul: false })
          if (problem !== undefined) {
            done(new OAuthError('invalid_request', describeJsonBodyProblem(problem)), undefined)
            return
          }
          done(null, parsed)
        } catch {
          done(new OAuthError('invalid_request', 'the body must be a JSON object'), undefined)
        }
      })

      /**
       * RFC 6750 §3.1: the answer to a request without credentials — no field, a blank one, or an
       * "unsupported authentication method" (Basic, or DPoP: this API takes Bearer only) — the
       * challenge alone, no error code or other error information (body `{}`); undefined when the
       * request carries a Bearer field (well-formed or not) or repeats the field.
       */
      const bareChallenge = (field: string | string[] | undefined) => withoutCredentials(field, 'devicegate-admin', { challenge: REALM, scheme: BEARER_SCHEME })

      // Such a request is answered before its body is read, whatever the body (the JSON parser
      // above would judge it first); the routes that need no token are left alone.
      const publicRoutes = new Set((Object.values(ADMIN_ROUTES) as readonly AdminRouteSpec[]).flatMap((spec) => (spec.secured ? [] : [ADMIN_API_PREFIX + spec.path])))
      api.addHook('preParsing', (request, _reply, payload, done) => {
        const route = request.routeOptions.url
        done(route === undefined || publicRoutes.has(route) ? null : (bareChallenge(authorizationField(request.raw)) ?? null), payload)
      })

      /**
       * RFC 6750 bearer check: the header parsed by the one parser of access-token headers
       * (`parseAuthorizationHeader`), the token judged as introspection judges it
       * (`findActiveAccessToken`). Only the Bearer scheme: DPoP-bound tokens are refused here.
       */
      async function authenticate(request: FastifyRequest): Promise<Admin> {
        const field = authorizationField(request.raw)
        // Two credentials (node would keep only the first line): a malformed request, RFC 6750 §3.1.
        if (Array.isArray(field))
          throw new OAuthError('invalid_request', 'the Authorization header must be sent once', { headers: { 'WWW-Authenticate': `${REALM}, error="invalid_request"` } })
        const bare = bareChallenge(field)
        if (bare !== undefined) throw bare
        const credentials = parseAuthorizationHeader(field)
        // RFC 6750 §3.1: a Bearer header without a well-formed token is a malformed request.
        if (!credentials)
          throw new OAuthError('invalid_request', 'the Authorization header must be "Bearer <access token>"', { headers: { 'WWW-Authenticate': `${REALM}, error="invalid_request"` } })
        const invalid = () => new OAuthError('invalid_token', 'the access token is not active', { headers: { 'WWW-Authenticate': `${REALM}, error="invalid_token"` } })
        const active = await findActiveAccessToken(credentials.token, deps)
        if (active === undefined || active.record.dpopJkt !== null) throw invalid()
        const { record } = active
        if (!record.scope.split(' ').includes(deps.scope))
          throw new OAuthError('insufficient_scope', `the "${deps.scope}" scope is required`, {
            headers: { 'WWW-Authenticate': `${REALM}, error="insufficient_scope", scope="${deps.scope}"` },
          })
        return { actor: `admin:${record.subject ?? record.clientId}`, subject: record.subject }
      }

      /**
       * Registers one route of {@link ADMIN_ROUTES}: authenticates (unless public), validates the
       * path parameters, query and body with the route's schemas, then runs the handler.
       */
      function route<S extends AdminRouteSpec>(
        spec: S,
        handler: (input: RouteInput<S>, admin: Admin, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
      ): void {
        api.route({
          method: spec.method,
          url: spec.path,
          handler: async (request, reply) => {
            const admin: Admin = spec.secured ? await authenticate(request) : { actor: 'anonymous', subject: null }
            const input = {
              params: parsePart(spec.params, request.params ?? {}, 'path'),
              query: parsePart(spec.query, request.query ?? {}, 'query'),
              body: spec.method === 'POST' ? parsePart(spec.body, request.body ?? undefined, 'body') : undefined,
            } as RouteInput<S>
            const result = await handler(input, admin, request, reply)
            if (spec.status !== undefined) reply.status(spec.status)
            return result
          },
        })
      }

      route(ADMIN_ROUTES.openapi, async () => openApiDocument(deps.scope, deps.extensions))

      route(ADMIN_ROUTES.grants, async ({ query }) => inventory(query))
      route(ADMIN_ROUTES.grant, async ({ params }) => {
        const found = await describeLineage(deps.store, deps.clock, params.id)
        if (found === undefined) throw notFound('grant')
        return found
      })
      route(ADMIN_ROUTES.userGrants, async ({ params, query }) => inventory({ ...query, subject: params.username }))

      async function inventory(q: z.output<typeof ADMIN_ROUTES.grants.query>) {
        const query: InventoryQuery = {
          ...(q.subject !== undefined ? { subject: q.subject } : {}),
          ...(q.client_id !== undefined ? { clientId: q.client_id } : {}),
          ...(q.jkt !== undefined ? { dpopJkt: q.jkt } : {}),
          ...(q.request_ip !== undefined ? { requestIp: q.request_ip } : {}),
          ...(q.status !== undefined ? { status: q.status } : {}),
          ...(q.created_from !== undefined ? { createdFrom: q.created_from } : {}),
          ...(q.created_before !== undefined ? { createdBefore: q.created_before } : {}),
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
        }
        try {
          return await listInventory(deps.store, deps.clock, query)
        } catch (err) {
          if (err instanceof InvalidCursorError) throw bad('"cursor" is invalid')
          throw err
        }
      }

      route(ADMIN_ROUTES.flows, async ({ query }) => {
        try {
          return await listFlows(deps.store, deps.clock, {
            ...(query.status !== undefined ? { status: query.status } : {}),
            ...(query.client_id !== undefined ? { clientId: query.client_id } : {}),
            ...(query.subject !== undefined ? { subject: query.subject } : {}),
            ...(query.created_from !== undefined ? { createdFrom: query.created_from } : {}),
            ...(query.created_before !== undefined ? { createdBefore: query.created_before } : {}),
            ...(query.limit !== undefined ? { limit: query.limit } : {}),
            ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
          })
        } catch (err) {
          if (err instanceof InvalidCursorError) throw bad('"cursor" is invalid')
          throw err
        }
      })

      route(ADMIN_ROUTES.revocations, async ({ body }, admin, request) => {
        try {
          const result = await deps.revocation.revoke(targetOf(body), {
            actor: admin.actor,
            ip: request.clientIp,
            dryRun: body.dry_run,
            ...(body.reason !== undefined ? { reason: body.reason } : {}),
          })
          const now = deps.clock.nowSeconds()
          return {
            kind: result.kind,
            dry_run: result.dryRun,
            grants: result.grants,
            device_authorizations: result.deviceAuthorizations,
            listed: result.listed.map((g) => toInventoryItem(g, now)),
          }
        } catch (err) {
          if (err instanceof RevocationTargetError) throw bad(err.message)
          throw err
        }
      })

      route(ADMIN_ROUTES.anomalies, async ({ query }) => {
        const rows = await deps.store.listAnomalies({ sinceTime: query.since ?? 0, ...(query.kind !== undefined ? { kind: query.kind } : {}), limit: query.limit ?? 1000 })
        return {
          items: rows.map((a) => ({
            id: a.id,
            kind: a.kind,
            time: a.time,
            action: a.action,
            client_id: a.clientId,
            subject: a.subject,
            grant_id: a.grantId,
            ip: a.ip,
            details: JSON.parse(a.details) as unknown,
          })),
        }
      })

      route(ADMIN_ROUTES.auditEvents, async ({ query }) => {
        const limit = query.limit ?? 1000
        const rows = await deps.store.listAuditEvents({
          ...(query.since !== undefined ? { sinceTime: query.since } : {}),
          ...(query.after_seq !== undefined ? { afterSeq: query.after_seq } : {}),
          limit,
        })
        return { items: rows.map((r) => JSON.parse(exportLine(r)) as unknown), next_after_seq: rows.length === limit ? rows[rows.length - 1]!.seq : null }
      })

      for (const kind of ['user', 'client'] as const) {
        for (const verb of ['disable', 'delete', 'enable'] as const) {
          const spec = ADMIN_ROUTES[`${kind}_${verb}`]
          route(spec, async ({ params }, admin, request) => {
            const id = 'username' in params ? params.username : params.client_id
            const state = verb === 'disable' ? 'disabled' : verb === 'delete' ? 'deleted' : 'enabled'
            const revoked = await deps.principals.change(kind, id, state, admin.actor, request.clientIp)
            if (revoked === undefined) throw notFound(kind)
            return { [kind === 'user' ? 'username' : 'client_id']: id, state, revoked_grants: revoked }
          })
        }
      }

      // --- people (src/identity/people.ts) ---
      const people = deps.people
      if (people !== undefined) {
        api.get('/users', async (request) => {
          await authenticate(request)
          const q = request.query as Query
          const status = q.status
          if (status !== undefined && !['active', 'disabled', 'deleted'].includes(status)) throw bad('"status" must be active, disabled or deleted')
          const source = q.source
          if (source !== undefined && !['config', 'provider', 'scim'].includes(source)) throw bad('"source" must be config, provider or scim')
          const items = people.directory.all().filter((p) => (status === undefined || p.status === status) && (source === undefined || p.source === source))
          return { items: items.map(personView) }
        })
        api.get('/users/:id', async (request) => {
          await authenticate(request)
          const person = people.directory.person((request.params as { id: string }).id)
          if (person === undefined) throw notFound('user')
          return personView(person)
        })
        api.post('/users/:id/password', async (request) => {
          const admin = await authenticate(request)
          const id = (request.params as { id: string }).id
          const password = ((request.body ?? {}) as Record<string, unknown>).password
          if (typeof password !== 'string') throw bad('"password" must be a string')
          try {
            const revoked = await people.changePassword(id, password, admin.actor, request.clientIp)
            return { id, password_changed: true, revoked_grants: revoked }
          } catch (err) {
            if (err instanceof PeopleError && err.code === 'not_found') throw notFound('user')
            if (err instanceof PeopleError) throw bad(err.message)
            throw err
          }
        })
      }

      // --- trusted device registry (src/governance/devices.ts) ---
      const registry = { store: deps.store, clock: deps.clock, events: deps.events }
      const deviceCall = async <T>(fn: () => Promise<T>): Promise<T> => {
        try {
          return await fn()
        } catch (err) {
          if (err instanceof DeviceRegistryError) {
            throw new OAuthError('invalid_request', err.message, { status: err.code === 'ERR_DEVICE_NOT_FOUND' ? 404 : err.code === 'ERR_DEVICE_EXISTS' ? 409 : 400 })
          }
          throw err
        }
      }
      route(ADMIN_ROUTES.devices, async ({ query }) => ({ items: await listDevices(registry, { includeRetired: query.include_retired === 'true' }) }))
      route(ADMIN_ROUTES.registerDevice, async ({ body }, admin) =>
        deviceCall(() =>
          registerDevice(registry, {
            ...(body.jkt !== undefined ? { jkt: body.jkt } : {}),
            ...(body.jwk !== undefined ? { jwk: body.jwk as JWK } : {}),
            label: body.label,
            registeredBy: admin.actor,
          }),
        ),
      )
      route(ADMIN_ROUTES.device, async ({ params }) => {
        const device = await getDevice(registry, params.jkt)
        if (device === undefined) throw notFound('device')
        return device
      })
      route(ADMIN_ROUTES.labelDevice, async ({ params, body }, admin) => deviceCall(() => labelDevice(registry, params.jkt, body.label, admin.actor)))
      route(ADMIN_ROUTES.retireDevice, async ({ params }, admin) => deviceCall(() => retireDevice(registry, params.jkt, admin.actor)))
      // Other domains' routes (reviews, reports) validate their own input.
      for (const extend of deps.extensions ?? []) extend(api, authenticate)
    },
    { prefix: ADMIN_API_PREFIX },
  )
}

/**
 * Path items of routes not yet described by a schema in admin-schemas.ts (people, from the
 * identity domain); merged into the generated document so it still lists every route.
 */
const UNSCHEMATISED_PATHS: Record<string, unknown> = (() => {
  const secured = (summary: string, parameters: unknown[] = []) => ({
    summary,
    security: [{ bearer: ['admin'] }],
    ...(parameters.length > 0 ? { parameters } : {}),
    responses: { '200': { description: 'OK' }, '400': { $ref: '#/components/responses/Error' }, '401': { $ref: '#/components/responses/Error' }, '403': { $ref: '#/components/responses/Error' } },
  })
  const q = (name: string, description: string) => ({ name, in: 'query', required: false, description, schema: { type: 'string' } })
  const id = { name: 'id', in: 'path', required: true, schema: { type: 'string' } }
  return {
    '/users': { get: secured('people (configured, signed in upstream, provisioned by SCIM)', [q('status', 'active, disabled or deleted'), q('source', 'config, provider or scim')]) },
    '/users/{id}': { get: secured('one person', [id]) },
    '/users/{id}/password': { post: secured("change a person's local password ({password}); revokes their grants (RFC 6819 §5.2.2.4)", [id]) },
  }
})()

/** The OpenAPI 3.1 description of the admin API, generated from the routes' schemas. */
export function openApiDocument(scope: string, extensions: readonly AdminApiExtension[] = []): Record<string, unknown> {
  const doc = buildOpenApiDocument(scope, ADMIN_API_PREFIX)
  const extra = Object.assign({}, UNSCHEMATISED_PATHS, ...extensions.map((e) => e.openApiPaths ?? {})) as Record<string, unknown>
  return { ...doc, paths: { ...(doc.paths as Record<string, unknown>), ...extra } }
}
