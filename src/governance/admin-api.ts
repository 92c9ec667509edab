/**
 * The admin API under `/admin/api`: JSON over HTTP, described by the OpenAPI 3.1
 * document at `/admin/api/openapi.json`.
 *
 * Authentication: an access token issued by devicegate itself (RFC 6750 §2.1 `Authorization:
 * Bearer`), typically to a confidential admin client through client_credentials, carrying the
 * configured admin scope (default `admin`). The token is checked against the store exactly as
 * introspection does (not revoked, family not revoked, unexpired, client still enabled). Without
 * a token: 401 with `WWW-Authenticate: Bearer realm="devicegate-admin"`; with a bad one: 401
 * `invalid_token`; without the scope: 403 `insufficient_scope` (RFC 6750 §3.1). DPoP-bound tokens
 * are refused here (the admin API does not check DPoP proofs).
 *
 * Every route calls the same functions as the CLI: inventory, central revocation (with dry run),
 * anomalies and audit events since a time, user and client disable/delete, and the trusted
 * device registry.
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3.1
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ClientDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import { OAuthError } from '../protocol/errors.js'
import type { Store } from '../storage/store.js'
import { sha256Hex } from '../system.js'
import type { AnomalyEngine } from './anomalies.js'
import { exportLine } from './audit.js'
import { DeviceRegistryError, getDevice, labelDevice, listDevices, registerDevice, retireDevice } from './devices.js'
import type { GovernanceEvents } from './events.js'
import { describeLineage, InvalidCursorError, listInventory, toInventoryItem, type InventoryQuery } from './inventory.js'
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

type Admin = AdminIdentity

type Query = Record<string, string | undefined>

function bad(description: string): OAuthError {
  return new OAuthError('invalid_request', description)
}

function notFound(what: string): OAuthError {
  return new OAuthError('invalid_request', `${what} not found`, { status: 404 })
}

/** Parses a time parameter: ISO 8601 or epoch seconds. */
function parseTime(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value === 'number' && Number.isInteger(value)) return value
  if (typeof value !== 'string') throw bad(`"${name}" must be an ISO 8601 time or epoch seconds`)
  if (/^\d+$/.test(value)) return Number(value)
  const ms = Date.parse(value)
  if (Number.isNaN(ms)) throw bad(`"${name}" must be an ISO 8601 time or epoch seconds`)
  return Math.floor(ms / 1000)
}

function parseLimit(value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > max) throw bad(`"limit" must be an integer between 1 and ${max}`)
  return n
}

function str(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > 2000) throw bad(`"${name}" must be a non-empty string`)
  return value
}

/** Reads a revocation request body into a target. */
function targetOf(body: Record<string, unknown>): RevocationTarget {
  const kind = body.kind
  const need = (name: string) => {
    const v = str(body[name], name)
    if (v === undefined) throw bad(`"${name}" is required for kind "${String(kind)}"`)
    return v
  }
  switch (kind) {
    case 'token':
      return { kind, token: need('token') }
    case 'grant':
      return { kind, grantId: need('grant_id') }
    case 'user':
      return { kind, subject: need('username') }
    case 'client':
      return { kind, clientId: need('client_id') }
    case 'jkt':
      return { kind, jkt: need('jkt') }
    case 'before': {
      const time = parseTime(body.time, 'time')
      if (time === undefined) throw bad('"time" is required for kind "before"')
      return { kind, time }
    }
    case 'pattern': {
      const requestIp = str(body.request_ip, 'request_ip')
      const clientId = str(body.client_id, 'client_id')
      const approvedBy = str(body.approved_by, 'approved_by')
      const from = parseTime(body.from, 'from')
      const to = parseTime(body.to, 'to')
      return {
        kind,
        pattern: {
          ...(requestIp !== undefined ? { requestIp } : {}),
          ...(clientId !== undefined ? { clientId } : {}),
          ...(approvedBy !== undefined ? { approvedBy } : {}),
          ...(from !== undefined ? { from } : {}),
          ...(to !== undefined ? { to } : {}),
        },
      }
    }
    default:
      throw bad('"kind" must be one of token, grant, user, client, jkt, before, pattern')
  }
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
          done(null, parsed)
        } catch {
          done(new OAuthError('invalid_request', 'the body must be a JSON object'), undefined)
        }
      })

      /** RFC 6750 bearer check against the store, as introspection judges tokens. */
      async function authenticate(request: FastifyRequest): Promise<Admin> {
        const header = request.headers.authorization
        const m = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header ?? '')
        if (!m) {
          // RFC 6750 §3.1: no error attribute in the challenge when no credentials were sent.
          if (header === undefined) throw new OAuthError('invalid_token', 'an admin access token is required', { headers: { 'WWW-Authenticate': REALM } })
          throw new OAuthError('invalid_token', 'use "Authorization: Bearer <access token>"', { headers: { 'WWW-Authenticate': `${REALM}, error="invalid_token"` } })
        }
        const invalid = () => new OAuthError('invalid_token', 'the access token is not active', { headers: { 'WWW-Authenticate': `${REALM}, error="invalid_token"` } })
        const record = await deps.store.findAccessTokenByHash(sha256Hex(m[1]!))
        const now = deps.clock.nowSeconds()
        if (record === undefined || record.revokedAt !== null || record.grantRevokedAt !== null || record.expiresAt <= now) throw invalid()
        const client = deps.clients.get(record.clientId)
        if (client === undefined || client.disabled || record.dpopJkt !== null) throw invalid()
        if (!record.scope.split(' ').includes(deps.scope))
          throw new OAuthError('insufficient_scope', `the "${deps.scope}" scope is required`, {
            headers: { 'WWW-Authenticate': `${REALM}, error="insufficient_scope", scope="${deps.scope}"` },
          })
        return { actor: `admin:${record.subject ?? record.clientId}`, subject: record.subject }
      }

      api.get('/openapi.json', async () => {
        const doc = openApiDocument(deps.scope)
        const extra = Object.assign({}, ...(deps.extensions ?? []).map((e) => e.openApiPaths ?? {})) as Record<string, unknown>
        return { ...doc, paths: { ...(doc.paths as Record<string, unknown>), ...extra } }
      })

      api.get('/grants', async (request) => {
        await authenticate(request)
        return inventory(request.query as Query)
      })
      api.get('/grants/:id', async (request) => {
        await authenticate(request)
        const found = await describeLineage(deps.store, deps.clock, (request.params as { id: string }).id)
        if (found === undefined) throw notFound('grant')
        return found
      })
      api.get('/users/:username/grants', async (request) => {
        await authenticate(request)
        return inventory({ ...(request.query as Query), subject: (request.params as { username: string }).username })
      })

      async function inventory(q: Query) {
        const status = q.status
        if (status !== undefined && status !== 'active' && status !== 'revoked') throw bad('"status" must be active or revoked')
        const createdFrom = parseTime(q.created_from, 'created_from')
        const createdBefore = parseTime(q.created_before, 'created_before')
        const limit = parseLimit(q.limit, 1000)
        const query: InventoryQuery = {
          ...(q.subject !== undefined ? { subject: q.subject } : {}),
          ...(q.client_id !== undefined ? { clientId: q.client_id } : {}),
          ...(q.jkt !== undefined ? { dpopJkt: q.jkt } : {}),
          ...(q.request_ip !== undefined ? { requestIp: q.request_ip } : {}),
          ...(status !== undefined ? { status } : {}),
          ...(createdFrom !== undefined ? { createdFrom } : {}),
          ...(createdBefore !== undefined ? { createdBefore } : {}),
          ...(limit !== undefined ? { limit } : {}),
          ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
        }
        try {
          return await listInventory(deps.store, deps.clock, query)
        } catch (err) {
          if (err instanceof InvalidCursorError) throw bad('"cursor" is invalid')
          throw err
        }
      }

      api.post('/revocations', async (request) => {
        const admin = await authenticate(request)
        const body = (request.body ?? {}) as Record<string, unknown>
        if (body.dry_run !== undefined && typeof body.dry_run !== 'boolean') throw bad('"dry_run" must be a boolean')
        const target = targetOf(body)
        const reason = str(body.reason, 'reason')
        try {
          const result = await deps.revocation.revoke(target, {
            actor: admin.actor,
            ip: request.clientIp,
            dryRun: body.dry_run === true,
            ...(reason !== undefined ? { reason } : {}),
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

      api.get('/anomalies', async (request) => {
        await authenticate(request)
        const q = request.query as Query
        const since = parseTime(q.since, 'since') ?? 0
        const rows = await deps.store.listAnomalies({ sinceTime: since, ...(q.kind !== undefined ? { kind: q.kind } : {}), limit: parseLimit(q.limit, 10_000) ?? 1000 })
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

      api.get('/audit/events', async (request) => {
        await authenticate(request)
        const q = request.query as Query
        const since = parseTime(q.since, 'since')
        const after = q.after_seq === undefined ? undefined : Number(q.after_seq)
        if (after !== undefined && (!Number.isInteger(after) || after < 0)) throw bad('"after_seq" must be a non-negative integer')
        const limit = parseLimit(q.limit, 10_000) ?? 1000
        const rows = await deps.store.listAuditEvents({ ...(since !== undefined ? { sinceTime: since } : {}), ...(after !== undefined ? { afterSeq: after } : {}), limit })
        return { items: rows.map((r) => JSON.parse(exportLine(r)) as unknown), next_after_seq: rows.length === limit ? rows[rows.length - 1]!.seq : null }
      })

      for (const [kind, param] of [
        ['user', 'username'],
        ['client', 'client_id'],
      ] as const) {
        const states = kind === 'user' ? (['disable', 'delete', 'enable'] as const) : (['disable', 'delete', 'enable'] as const)
        for (const verb of states) {
          api.post(`/${kind}s/:${param}/${verb}`, async (request) => {
            const admin = await authenticate(request)
            const id = (request.params as Record<string, string>)[param]!
            const state = verb === 'disable' ? 'disabled' : verb === 'delete' ? 'deleted' : 'enabled'
            const revoked = await deps.principals.change(kind, id, state, admin.actor, request.clientIp)
            if (revoked === undefined) throw notFound(kind)
            return { [param]: id, state, revoked_grants: revoked }
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
      api.get('/devices', async (request) => {
        await authenticate(request)
        return { items: await listDevices(registry, { includeRetired: (request.query as Query).include_retired === 'true' }) }
      })
      api.post('/devices', async (request, reply) => {
        const admin = await authenticate(request)
        const body = (request.body ?? {}) as Record<string, unknown>
        const device = await deviceCall(() =>
          registerDevice(registry, {
            ...(typeof body.jkt === 'string' ? { jkt: body.jkt } : {}),
            ...(body.jwk !== null && typeof body.jwk === 'object' ? { jwk: body.jwk as never } : {}),
            label: typeof body.label === 'string' ? body.label : '',
            registeredBy: admin.actor,
          }),
        )
        return reply.status(201).send(device)
      })
      api.get('/devices/:jkt', async (request) => {
        await authenticate(request)
        const device = await getDevice(registry, (request.params as { jkt: string }).jkt)
        if (device === undefined) throw notFound('device')
        return device
      })
      api.post('/devices/:jkt/label', async (request) => {
        const admin = await authenticate(request)
        const label = ((request.body ?? {}) as Record<string, unknown>).label
        return deviceCall(() => labelDevice(registry, (request.params as { jkt: string }).jkt, typeof label === 'string' ? label : '', admin.actor))
      })
      api.post('/devices/:jkt/retire', async (request) => {
        const admin = await authenticate(request)
        return deviceCall(() => retireDevice(registry, (request.params as { jkt: string }).jkt, admin.actor))
      })
      for (const extend of deps.extensions ?? []) extend(api, authenticate)
    },
    { prefix: ADMIN_API_PREFIX },
  )
}

/** The OpenAPI 3.1 description of the admin API. */
export function openApiDocument(scope: string): Record<string, unknown> {
  const error = { $ref: '#/components/responses/Error' }
  const secured = (summary: string, extra: Record<string, unknown> = {}) => ({
    summary,
    security: [{ bearer: [scope] }],
    responses: { '200': { description: 'OK', content: { 'application/json': {} } }, '400': error, '401': error, '403': error },
    ...extra,
  })
  const q = (name: string, description: string, schema: Record<string, unknown> = { type: 'string' }) => ({ name, in: 'query', required: false, description, schema })
  const p = (name: string) => ({ name, in: 'path', required: true, schema: { type: 'string' } })
  const inventoryParams = [
    q('client_id', 'only this client'),
    q('status', 'active or revoked', { type: 'string', enum: ['active', 'revoked'] }),
    q('jkt', 'only families bound to this DPoP key thumbprint (RFC 7638)'),
    q('request_ip', 'only families whose device authorization came from this address'),
    q('created_from', 'created at or after (ISO 8601 or epoch seconds)'),
    q('created_before', 'created before (ISO 8601 or epoch seconds)'),
    q('limit', 'page size, 1–1000 (default 100)', { type: 'integer' }),
    q('cursor', 'next_cursor of the previous page'),
  ]
  return {
    openapi: '3.1.0',
    info: { title: 'devicegate admin API', version: '1', description: `Bearer access tokens issued by devicegate with the "${scope}" scope (RFC 6750).` },
    servers: [{ url: ADMIN_API_PREFIX }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: `client_credentials access token with scope "${scope}"` } },
      responses: {
        Error: {
          description: 'RFC 6749 §5.2 / RFC 6750 §3.1 error',
          content: { 'application/json': { schema: { type: 'object', required: ['error'], properties: { error: { type: 'string' }, error_description: { type: 'string' } } } } },
        },
      },
      schemas: {
        Revocation: {
          type: 'object',
          required: ['kind'],
          properties: {
            kind: { type: 'string', enum: ['token', 'grant', 'user', 'client', 'jkt', 'before', 'pattern'] },
            token: { type: 'string', description: 'kind=token: an access or refresh token; its family is revoked' },
            grant_id: { type: 'string' },
            username: { type: 'string' },
            client_id: { type: 'string', description: 'kind=client, or a pattern criterion' },
            jkt: { type: 'string' },
            time: { type: 'string', description: 'kind=before: the kill switch time (ISO 8601 or epoch seconds)' },
            request_ip: { type: 'string', description: 'pattern: address or CIDR of the device authorization request' },
            approved_by: { type: 'string', description: 'pattern: approving user' },
            from: { type: 'string', description: 'pattern: requested at or after' },
            to: { type: 'string', description: 'pattern: requested before' },
            dry_run: { type: 'boolean', default: false },
            reason: { type: 'string' },
          },
        },
      },
    },
    paths: {
      '/openapi.json': { get: { summary: 'this document', responses: { '200': { description: 'OK' } } } },
      '/grants': { get: secured('token inventory, newest first', { parameters: [q('subject', 'only this user'), ...inventoryParams] }) },
      '/grants/{id}': { get: secured('one family with its lineage', { parameters: [p('id')] }) },
      '/users/{username}/grants': { get: secured("a user's families", { parameters: [p('username'), ...inventoryParams] }) },
      '/users': { get: secured('people (configured, signed in upstream, provisioned by SCIM)', { parameters: [q('status', 'active, disabled or deleted'), q('source', 'config, provider or scim')] }) },
      '/users/{id}': { get: secured('one person', { parameters: [p('id')] }) },
      '/users/{id}/password': { post: secured("change a person's local password ({password}); revokes their grants (RFC 6819 §5.2.2.4)", { parameters: [p('id')] }) },
      '/revocations': {
        post: secured('central revocation (or dry run)', { requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/Revocation' } } } } }),
      },
      '/anomalies': { get: secured('anomalies since a time', { parameters: [q('since', 'ISO 8601 or epoch seconds'), q('kind', 'detector name'), q('limit', '1–10000', { type: 'integer' })] }) },
      '/audit/events': {
        get: secured('audit events since a time or after a seq', { parameters: [q('since', 'ISO 8601 or epoch seconds'), q('after_seq', 'only seq greater than this', { type: 'integer' }), q('limit', '1–10000', { type: 'integer' })] }),
      },
      ...Object.fromEntries(
        (['disable', 'delete', 'enable'] as const).flatMap((verb) => [
          [`/users/{username}/${verb}`, { post: secured(`${verb} a configured user (disable/delete revoke their families at once)`, { parameters: [p('username')] }) }],
          [`/clients/{client_id}/${verb}`, { post: secured(`${verb} a configured client (disable/delete revoke its families at once)`, { parameters: [p('client_id')] }) }],
        ]),
      ),
      '/devices': { get: secured('trusted devices', { parameters: [q('include_retired', 'true to list retired ones too')] }), post: secured('register a device ({jkt|jwk, label})') },
      '/devices/{jkt}': { get: secured('one device with its token families', { parameters: [p('jkt')] }) },
      '/devices/{jkt}/label': { post: secured('relabel a device ({label})', { parameters: [p('jkt')] }) },
      '/devices/{jkt}/retire': { post: secured("retire a device and revoke its key's tokens", { parameters: [p('jkt')] }) },
    },
  }
}
