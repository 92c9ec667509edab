/**
 * SCIM 2.0 provisioning of people and groups (RFC 7643 resources, RFC 7644 protocol).
 *
 * Framework-free: each operation takes parsed input and returns `{ status, body, etag? }` or
 * throws {@link ScimError} (RFC 7644 §3.12 error JSON with `scimType`). Filters are parsed and
 * evaluated by `scim2-parse-filter`, PATCH operations applied by `scim-patch`; devicegate maps the
 * resulting resource onto its people and groups.
 *
 * - Users are the people whose source is `scim` or `provider` (people who signed in upstream
 *   before provisioning started can be found and claimed); configured people are not exposed.
 * - `active: false` disables the person and DELETE deletes them: either revokes every grant of
 *   theirs at once (`orphaned_token`, audited with the SCIM client as actor).
 * - Group memberships are what policy sees as the person's groups (with configured/upstream ones).
 * - `password` is never stored: devicegate does not take local passwords from provisioning.
 * - Attribute names are case-insensitive (RFC 7643 §2.1); string comparisons in filters are too,
 *   except for `id`, `externalId` and `meta.version`, which are case-exact (RFC 7643 §3.1).
 * - Versions: `meta.version` is a weak ETag; `If-Match` on PUT, PATCH and DELETE is honoured
 *   (412 on mismatch, RFC 7644 §3.14).
 */
import { randomUUID } from 'node:crypto'
import { scimPatch, ScimError as PatchLibraryError, type ScimPatchOperation } from 'scim-patch'
import { parse as parseFilter, Tester, type Filter } from 'scim2-parse-filter'
import type { Clock } from '../core/ports.js'
import type { EventSink } from '../core/events.js'
import { StoreConflictError } from '../storage/store.js'
import type { GroupRecord, PeopleStore, PersonRecord } from '../storage/store.js'
import { newPerson, PeopleError, type Person, type PeopleService } from './people.js'

export const SCHEMA = {
  user: 'urn:ietf:params:scim:schemas:core:2.0:User',
  enterprise: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User',
  group: 'urn:ietf:params:scim:schemas:core:2.0:Group',
  list: 'urn:ietf:params:scim:api:messages:2.0:ListResponse',
  error: 'urn:ietf:params:scim:api:messages:2.0:Error',
  patch: 'urn:ietf:params:scim:api:messages:2.0:PatchOp',
  spc: 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig',
  resourceType: 'urn:ietf:params:scim:schemas:core:2.0:ResourceType',
  schema: 'urn:ietf:params:scim:schemas:core:2.0:Schema',
} as const

/** RFC 7644 §3.12 `scimType` values used here. */
export type ScimType = 'invalidFilter' | 'tooMany' | 'uniqueness' | 'mutability' | 'invalidSyntax' | 'invalidPath' | 'noTarget' | 'invalidValue' | 'invalidVers'

/** A SCIM error response (RFC 7644 §3.12). */
export class ScimError extends Error {
  override readonly name = 'ScimError'
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly scimType?: ScimType,
  ) {
    super(detail)
  }

  /** The error body. */
  toJSON(): Record<string, unknown> {
    return { schemas: [SCHEMA.error], status: String(this.status), ...(this.scimType ? { scimType: this.scimType } : {}), detail: this.detail }
  }
}

/** A successful SCIM answer. */
export interface ScimResult {
  status: number
  body?: Record<string, unknown>
  /** Weak ETag of the single resource returned. */
  etag?: string
}

/** Most resources returned in one page (ServiceProviderConfig `filter.maxResults`). */
export const MAX_RESULTS = 1000

/** Attributes whose string comparisons are case-exact (RFC 7643 §3.1, §4.1). */
const CASE_EXACT = new Set(['id', 'externalid', 'meta.version', 'members.value', 'groups.value'])

/** scim2-parse-filter's evaluator with RFC 7643 case rules: strings compare case-insensitively unless the attribute is case-exact. */
class CaseAwareTester extends Tester {
  #exact = false
  override test(r: unknown, f: Filter): boolean {
    if ('attrPath' in f && f.op !== '[]') {
      const path = f.attrPath.toLowerCase().replace(/^urn:[^ ]*:/, '')
      this.#exact = CASE_EXACT.has(path)
    }
    return super.test(r, f)
  }
  #norm(v: unknown): never {
    return (!this.#exact && typeof v === 'string' ? v.toLowerCase() : v) as never
  }
  override eq(r: unknown, v: unknown): boolean {
    return super.eq(this.#norm(r), this.#norm(v))
  }
  override ne(r: unknown, v: unknown): boolean {
    return super.ne(this.#norm(r), this.#norm(v))
  }
  override co(r: unknown, v: unknown): boolean {
    return super.co(this.#norm(r), this.#norm(v))
  }
  override sw(r: unknown, v: unknown): boolean {
    return super.sw(this.#norm(r), this.#norm(v))
  }
  override ew(r: unknown, v: unknown): boolean {
    return super.ew(this.#norm(r), this.#norm(v))
  }
}

/**
 * Parses a SCIM filter (RFC 7644 §3.4.2.2) into a predicate over resources.
 * @throws {ScimError} 400 `invalidFilter`.
 */
export function compileFilter(text: string): (resource: Record<string, unknown>) => boolean {
  let ast: Filter
  try {
    ast = parseFilter(text)
  } catch (err) {
    throw new ScimError(400, `invalid filter: ${(err as Error).message.slice(0, 200)}`, 'invalidFilter')
  }
  const tester = new CaseAwareTester()
  return (resource) => tester.test(resource, ast)
}

/** List query parameters (RFC 7644 §3.4.2). */
export interface ListQuery {
  filter?: string
  /** 1-based. Default: 1. */
  startIndex?: string
  /** Default: 100; at most {@link MAX_RESULTS}. */
  count?: string
  attributes?: string
  excludedAttributes?: string
}

function pageOf(q: ListQuery): { start: number; count: number } {
  const start = q.startIndex === undefined ? 1 : Number(q.startIndex)
  const count = q.count === undefined ? 100 : Number(q.count)
  if (!Number.isInteger(start) || !Number.isInteger(count)) throw new ScimError(400, '"startIndex" and "count" must be integers', 'invalidValue')
  // RFC 7644 §3.4.2.4: values below 1 are 1 (startIndex) and 0 (count).
  return { start: Math.max(1, start), count: Math.min(MAX_RESULTS, Math.max(0, count)) }
}

/** Applies `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) to top-level attributes; `id` and `schemas` are always returned. */
export function projectAttributes(resource: Record<string, unknown>, q: Pick<ListQuery, 'attributes' | 'excludedAttributes'>): Record<string, unknown> {
  const names = (s: string) => s.split(',').map((a) => a.trim().replace(/^urn:.*:(?=[^:]+$)/, '').split('.')[0]!.toLowerCase()).filter(Boolean)
  const always = new Set(['id', 'schemas'])
  if (q.attributes) {
    const keep = new Set(names(q.attributes))
    return Object.fromEntries(Object.entries(resource).filter(([k]) => always.has(k) || keep.has(k.toLowerCase()) || (k.startsWith('urn:') && keep.has('manager'))))
  }
  if (q.excludedAttributes) {
    const drop = new Set(names(q.excludedAttributes))
    return Object.fromEntries(Object.entries(resource).filter(([k]) => always.has(k) || !drop.has(k.toLowerCase())))
  }
  return resource
}

/** Case-insensitive attribute read (RFC 7643 §2.1). */
function attr(obj: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(obj).find((k) => k.toLowerCase() === name.toLowerCase())
  return key === undefined ? undefined : obj[key]
}

/** Entra ID has sent booleans as "True"/"False" strings; RFC 7643 §2.3.2 says boolean. */
function asBoolean(v: unknown, name: string): boolean | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'boolean') return v
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true'
  throw new ScimError(400, `"${name}" must be a boolean`, 'invalidValue')
}

function optionalString(v: unknown, name: string, max = 256): string | null {
  if (v === undefined || v === null) return null
  if (typeof v !== 'string' || v.length > max) throw new ScimError(400, `"${name}" must be a string of at most ${max} characters`, 'invalidValue')
  return v
}

/** What a SCIM User body says, mapped onto a person's columns. */
interface UserFields {
  userName: string
  displayName: string | null
  externalId: string | null
  email: string | null
  manager: string | null
  active: boolean
  /** The other attributes, kept as written (name, emails, title, …). */
  extra: Record<string, unknown>
}

const MANAGED = new Set(['schemas', 'id', 'meta', 'username', 'displayname', 'externalid', 'active', 'groups', 'password'])

/**
 * Reads a User resource (RFC 7643 §4.1) from a request body.
 * @throws {ScimError} 400 `invalidValue` / `invalidSyntax`.
 */
export function readUser(body: unknown): UserFields {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ScimError(400, 'the body must be a JSON object', 'invalidSyntax')
  const b = body as Record<string, unknown>
  const schemas = attr(b, 'schemas')
  if (!Array.isArray(schemas) || !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === SCHEMA.user.toLowerCase()))
    throw new ScimError(400, `"schemas" must include ${SCHEMA.user}`, 'invalidSyntax')
  const userName = attr(b, 'userName')
  if (typeof userName !== 'string' || userName.trim() === '' || userName.length > 256) throw new ScimError(400, '"userName" is required (a string of at most 256 characters)', 'invalidValue')
  const emails = attr(b, 'emails')
  if (emails !== undefined && !Array.isArray(emails)) throw new ScimError(400, '"emails" must be an array', 'invalidValue')
  const list = (emails ?? []) as Record<string, unknown>[]
  const primary = list.find((e) => e && typeof e === 'object' && asBoolean(attr(e, 'primary'), 'emails.primary') === true) ?? list.find((e) => e && typeof e === 'object' && attr(e, 'type') === 'work') ?? list[0]
  const email = primary && typeof primary === 'object' ? optionalString(attr(primary, 'value'), 'emails.value') : null
  const ent = attr(b, SCHEMA.enterprise)
  const managerValue = ent && typeof ent === 'object' ? attr(ent as Record<string, unknown>, 'manager') : undefined
  const manager = managerValue && typeof managerValue === 'object' ? optionalString(attr(managerValue as Record<string, unknown>, 'value'), 'manager.value') : typeof managerValue === 'string' ? managerValue : null
  const extra = Object.fromEntries(Object.entries(b).filter(([k]) => !MANAGED.has(k.toLowerCase())))
  return {
    userName,
    displayName: optionalString(attr(b, 'displayName'), 'displayName'),
    externalId: optionalString(attr(b, 'externalId'), 'externalId'),
    email: email?.toLowerCase() ?? null,
    manager,
    active: asBoolean(attr(b, 'active'), 'active') ?? true,
    extra,
  }
}

/** What {@link ScimService} needs. */
export interface ScimDeps {
  people: PeopleService
  store: PeopleStore
  clock: Clock
  events: EventSink
  /** Base URL of the SCIM endpoint (`<issuer>/scim/v2`) for `meta.location`. */
  baseUrl: string
}

const iso = (t: number) => new Date(t * 1000).toISOString()
const weak = (v: number) => `W/"${v}"`

/** The SCIM service provider. `actor` is `scim:<client id>` for the audit log. */
export class ScimService {
  constructor(private readonly deps: ScimDeps) {}

  #visible(p: Person | undefined): p is Person {
    return p !== undefined && p.status !== 'deleted' && p.source !== 'config'
  }

  #person(id: string): Person {
    const p = this.deps.people.directory.person(id)
    if (!this.#visible(p)) throw new ScimError(404, `no User "${id}"`)
    return p
  }

  /** The User resource of a person (RFC 7643 §4.1). */
  userResource(p: Person, groups: ReadonlyMap<string, GroupRecord>): Record<string, unknown> {
    const extra = p.scimJson === null ? {} : (JSON.parse(p.scimJson) as Record<string, unknown>)
    const memberOf = [...groups.values()].filter((g) => g.members.includes(p.id)).map((g) => ({ value: g.id, display: g.displayName, $ref: `${this.deps.baseUrl}/Groups/${g.id}` }))
    const hasEnterprise = Object.keys(extra).some((k) => k.toLowerCase() === SCHEMA.enterprise.toLowerCase())
    return {
      schemas: hasEnterprise ? [SCHEMA.user, SCHEMA.enterprise] : [SCHEMA.user],
      id: p.id,
      ...(p.externalId !== null ? { externalId: p.externalId } : {}),
      userName: p.userName,
      ...(p.displayName !== null ? { displayName: p.displayName } : {}),
      ...(p.email !== null && attr(extra, 'emails') === undefined ? { emails: [{ value: p.email, type: 'work', primary: true }] } : {}),
      ...extra,
      active: p.status === 'active',
      groups: memberOf,
      meta: { resourceType: 'User', created: iso(p.createdAt), lastModified: iso(p.updatedAt), version: weak(p.version), location: `${this.deps.baseUrl}/Users/${p.id}` },
    }
  }

  /** The Group resource (RFC 7643 §4.2). */
  groupResource(g: GroupRecord): Record<string, unknown> {
    const dir = this.deps.people.directory
    return {
      schemas: [SCHEMA.group],
      id: g.id,
      ...(g.externalId !== null ? { externalId: g.externalId } : {}),
      displayName: g.displayName,
      members: g.members.flatMap((id) => {
        const p = dir.person(id)
        return p === undefined || p.status === 'deleted' ? [] : [{ value: id, display: p.displayName ?? p.userName, type: 'User', $ref: `${this.deps.baseUrl}/Users/${id}` }]
      }),
      meta: { resourceType: 'Group', created: iso(g.createdAt), lastModified: iso(g.updatedAt), version: weak(g.version), location: `${this.deps.baseUrl}/Groups/${g.id}` },
    }
  }

  async #groups(): Promise<Map<string, GroupRecord>> {
    return new Map((await this.deps.store.listGroups()).map((g) => [g.id, g]))
  }

  #list(resources: Record<string, unknown>[], q: ListQuery): ScimResult {
    const match = q.filter === undefined || q.filter.trim() === '' ? () => true : compileFilter(q.filter)
    const { start, count } = pageOf(q)
    const all = resources.filter(match)
    const page = all.slice(start - 1, start - 1 + count).map((r) => projectAttributes(r, q))
    return { status: 200, body: { schemas: [SCHEMA.list], totalResults: all.length, startIndex: start, itemsPerPage: page.length, Resources: page } }
  }

  // --- Users ----------------------------------------------------------------------------------

  async listUsers(q: ListQuery): Promise<ScimResult> {
    const groups = await this.#groups()
    const users = this.deps.people.directory.all().filter((p) => this.#visible(p)).map((p) => this.userResource(p, groups))
    return this.#list(users, q)
  }

  async getUser(id: string, q: ListQuery = {}): Promise<ScimResult> {
    const p = this.#person(id)
    return { status: 200, body: projectAttributes(this.userResource(p, await this.#groups()), q), etag: weak(p.version) }
  }

  /** POST /Users (RFC 7644 §3.3): 201, or 409 `uniqueness` when the userName is taken. */
  async createUser(body: unknown, actor: string): Promise<ScimResult> {
    const u = readUser(body)
    if (this.deps.people.directory.byUserName(u.userName) !== undefined) throw new ScimError(409, `userName "${u.userName}" is taken`, 'uniqueness')
    const now = this.deps.clock.nowSeconds()
    const record = newPerson(randomUUID(), now, {
      userName: u.userName,
      displayName: u.displayName,
      externalId: u.externalId,
      email: u.email,
      manager: u.manager,
      source: 'scim',
      status: u.active ? 'active' : 'disabled',
      scimJson: JSON.stringify(u.extra),
    })
    try {
      await this.deps.people.create(record, actor, 'scim')
    } catch (err) {
      if (err instanceof PeopleError && err.code === 'conflict') throw new ScimError(409, err.message, 'uniqueness')
      throw err
    }
    return this.getUser(record.id).then((r) => ({ ...r, status: 201 }))
  }

  /** PUT /Users/:id (RFC 7644 §3.5.1): replaces the attributes; `active` applies the status. */
  async replaceUser(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult> {
    const p = this.#person(id)
    this.#checkVersion(p.version, ifMatch)
    const u = readUser(body)
    await this.#applyUser(p, u, actor)
    return this.getUser(id)
  }

  /** PATCH /Users/:id (RFC 7644 §3.5.2), operations applied by scim-patch to the current resource. */
  async patchUser(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult> {
    const p = this.#person(id)
    this.#checkVersion(p.version, ifMatch)
    const ops = readPatch(body)
    const current = this.userResource(p, await this.#groups())
    const { groups: _g, meta: _m, ...patchable } = current
    const patched = applyPatch(patchable, ops)
    if (asBoolean(attr(patched, 'active'), 'active') === undefined) patched.active = p.status === 'active'
    await this.#applyUser(p, readUser({ ...patched, schemas: [SCHEMA.user, ...(Array.isArray(patched.schemas) ? patched.schemas : [])] }), actor)
    return this.getUser(id)
  }

  async #applyUser(p: Person, u: UserFields, actor: string): Promise<void> {
    const next: PersonRecord = {
      ...p,
      userName: u.userName,
      displayName: u.displayName,
      externalId: u.externalId,
      email: u.email,
      manager: u.manager,
      scimJson: JSON.stringify(u.extra),
    }
    try {
      await this.deps.people.update(next, actor, 'scim')
    } catch (err) {
      if (err instanceof PeopleError && err.code === 'conflict') throw new ScimError(409, err.message, 'uniqueness')
      throw err
    }
    const status = u.active ? 'active' : 'disabled'
    if (status !== p.status) await this.deps.people.setStatus(p.id, status, actor, null, 'scim')
  }

  /** DELETE /Users/:id (RFC 7644 §3.6): 204; the person is deleted and every grant revoked. */
  async deleteUser(id: string, actor: string, ifMatch?: string): Promise<ScimResult> {
    const p = this.#person(id)
    this.#checkVersion(p.version, ifMatch)
    await this.deps.people.setStatus(id, 'deleted', actor, null, 'scim')
    return { status: 204 }
  }

  // --- Groups ---------------------------------------------------------------------------------

  async #group(id: string): Promise<GroupRecord> {
    const g = await this.deps.store.findGroup(id)
    if (g === undefined) throw new ScimError(404, `no Group "${id}"`)
    return g
  }

  async listGroups(q: ListQuery): Promise<ScimResult> {
    const groups = (await this.deps.store.listGroups()).map((g) => this.groupResource(g))
    return this.#list(groups, q)
  }

  async getGroup(id: string, q: ListQuery = {}): Promise<ScimResult> {
    const g = await this.#group(id)
    return { status: 200, body: projectAttributes(this.groupResource(g), q), etag: weak(g.version) }
  }

  #readGroup(body: unknown): { displayName: string; externalId: string | null; members: string[] } {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ScimError(400, 'the body must be a JSON object', 'invalidSyntax')
    const b = body as Record<string, unknown>
    const schemas = attr(b, 'schemas')
    if (!Array.isArray(schemas) || !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === SCHEMA.group.toLowerCase()))
      throw new ScimError(400, `"schemas" must include ${SCHEMA.group}`, 'invalidSyntax')
    const displayName = attr(b, 'displayName')
    if (typeof displayName !== 'string' || displayName.trim() === '' || displayName.length > 256) throw new ScimError(400, '"displayName" is required', 'invalidValue')
    const members = attr(b, 'members') ?? []
    if (!Array.isArray(members)) throw new ScimError(400, '"members" must be an array', 'invalidValue')
    const ids = members.map((m) => {
      const value = m && typeof m === 'object' ? attr(m as Record<string, unknown>, 'value') : undefined
      if (typeof value !== 'string') throw new ScimError(400, '"members[].value" must be a User id', 'invalidValue')
      if (!this.#visible(this.deps.people.directory.person(value))) throw new ScimError(400, `member "${value}" is not a User here (nested groups are not supported)`, 'invalidValue')
      return value
    })
    return { displayName, externalId: optionalString(attr(b, 'externalId'), 'externalId'), members: [...new Set(ids)] }
  }

  async createGroup(body: unknown, actor: string): Promise<ScimResult> {
    const g = this.#readGroup(body)
    const now = this.deps.clock.nowSeconds()
    const record: GroupRecord = { id: randomUUID(), ...g, version: 1, createdAt: now, updatedAt: now }
    try {
      await this.deps.store.insertGroup(record)
    } catch (err) {
      if (err instanceof StoreConflictError) throw new ScimError(409, `a Group named "${g.displayName}" exists`, 'uniqueness')
      throw err
    }
    await this.#membershipsChanged('group.created', record, [], actor)
    return { status: 201, body: this.groupResource(record), etag: weak(1) }
  }

  async replaceGroup(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult> {
    const current = await this.#group(id)
    this.#checkVersion(current.version, ifMatch)
    return this.#saveGroup(current, this.#readGroup(body), actor)
  }

  /** PATCH /Groups/:id: member add/remove (also `members[value eq "…"]` paths) and renames, as Entra ID and Okta send them. */
  async patchGroup(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult> {
    const current = await this.#group(id)
    this.#checkVersion(current.version, ifMatch)
    const ops = readPatch(body)
    const { meta: _m, ...patchable } = this.groupResource(current)
    const patched = applyPatch(patchable, ops)
    return this.#saveGroup(current, this.#readGroup({ ...patched, schemas: [SCHEMA.group] }), actor)
  }

  async #saveGroup(current: GroupRecord, g: { displayName: string; externalId: string | null; members: string[] }, actor: string): Promise<ScimResult> {
    const now = this.deps.clock.nowSeconds()
    const next: GroupRecord = { ...current, ...g, version: current.version + 1, updatedAt: now }
    let ok: boolean
    try {
      ok = await this.deps.store.updateGroup(next, current.version)
    } catch (err) {
      if (err instanceof StoreConflictError) throw new ScimError(409, `a Group named "${g.displayName}" exists`, 'uniqueness')
      throw err
    }
    if (!ok) throw new ScimError(412, 'the Group was changed meanwhile; retry', 'invalidVers')
    await this.#membershipsChanged('group.updated', next, current.members, actor)
    return { status: 200, body: this.groupResource(next), etag: weak(next.version) }
  }

  async deleteGroup(id: string, actor: string, ifMatch?: string): Promise<ScimResult> {
    const current = await this.#group(id)
    this.#checkVersion(current.version, ifMatch)
    await this.deps.store.deleteGroup(id)
    await this.#membershipsChanged('group.deleted', { ...current, members: [] }, current.members, actor)
    return { status: 204 }
  }

  /** Group changes reach policy now on this instance (other instances at their next refresh). */
  async #membershipsChanged(type: 'group.created' | 'group.updated' | 'group.deleted', g: GroupRecord, before: string[], actor: string): Promise<void> {
    await this.deps.people.directory.refreshMemberships()
    const added = g.members.filter((m) => !before.includes(m))
    const removed = before.filter((m) => !g.members.includes(m))
    await this.deps.events.record({ type, actor, details: { via: 'scim', groupId: g.id, displayName: g.displayName, added, removed } })
  }

  #checkVersion(version: number, ifMatch: string | undefined): void {
    if (ifMatch === undefined || ifMatch.trim() === '*') return
    const tags = ifMatch.split(',').map((t) => t.trim())
    if (!tags.includes(weak(version)) && !tags.includes(`"${version}"`)) throw new ScimError(412, 'the resource changed (If-Match)', 'invalidVers')
  }

  // --- discovery (RFC 7644 §4) ------------------------------------------------------------------

  serviceProviderConfig(): ScimResult {
    return {
      status: 200,
      body: {
        schemas: [SCHEMA.spc],
        documentationUri: 'https://www.rfc-editor.org/rfc/rfc7644',
        patch: { supported: true },
        bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
        filter: { supported: true, maxResults: MAX_RESULTS },
        changePassword: { supported: false },
        sort: { supported: false },
        etag: { supported: true },
        authenticationSchemes: [
          { type: 'oauthbearertoken', name: 'OAuth Bearer Token', description: 'An access token from this server (client_credentials) with the scim scope (RFC 6750)', specUri: 'https://www.rfc-editor.org/rfc/rfc6750', primary: true },
        ],
        meta: { resourceType: 'ServiceProviderConfig', location: `${this.deps.baseUrl}/ServiceProviderConfig` },
      },
    }
  }

  resourceTypes(): Record<string, unknown>[] {
    return [
      {
        schemas: [SCHEMA.resourceType],
        id: 'User',
        name: 'User',
        endpoint: '/Users',
        schema: SCHEMA.user,
        schemaExtensions: [{ schema: SCHEMA.enterprise, required: false }],
        meta: { resourceType: 'ResourceType', location: `${this.deps.baseUrl}/ResourceTypes/User` },
      },
      { schemas: [SCHEMA.resourceType], id: 'Group', name: 'Group', endpoint: '/Groups', schema: SCHEMA.group, meta: { resourceType: 'ResourceType', location: `${this.deps.baseUrl}/ResourceTypes/Group` } },
    ]
  }

  schemas(): Record<string, unknown>[] {
    const a = (name: string, extra: Record<string, unknown> = {}) => ({ name, type: 'string', multiValued: false, required: false, caseExact: false, mutability: 'readWrite', returned: 'default', uniqueness: 'none', ...extra })
    const meta = (id: string) => ({ resourceType: 'Schema', location: `${this.deps.baseUrl}/Schemas/${id}` })
    const complex = (name: string, sub: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({ ...a(name), type: 'complex', multiValued: true, subAttributes: sub, ...extra })
    return [
      {
        schemas: [SCHEMA.schema],
        id: SCHEMA.user,
        name: 'User',
        description: 'A person who may approve device sign-ins',
        attributes: [
          a('userName', { required: true, uniqueness: 'server' }),
          a('displayName'),
          a('externalId', { caseExact: true }),
          { ...a('name'), type: 'complex', subAttributes: [a('formatted'), a('familyName'), a('givenName')] },
          complex('emails', [a('value'), a('type'), { ...a('primary'), type: 'boolean' }]),
          { ...a('active'), type: 'boolean' },
          { ...a('password'), mutability: 'writeOnly', returned: 'never', description: 'Not stored: devicegate does not take passwords from provisioning' },
          complex('groups', [a('value', { mutability: 'readOnly' }), a('display', { mutability: 'readOnly' })], { mutability: 'readOnly' }),
        ],
        meta: meta(SCHEMA.user),
      },
      {
        schemas: [SCHEMA.schema],
        id: SCHEMA.enterprise,
        name: 'EnterpriseUser',
        description: 'Enterprise User',
        attributes: [a('employeeNumber'), a('department'), { ...a('manager'), type: 'complex', subAttributes: [a('value'), a('displayName', { mutability: 'readOnly' })] }],
        meta: meta(SCHEMA.enterprise),
      },
      {
        schemas: [SCHEMA.schema],
        id: SCHEMA.group,
        name: 'Group',
        description: 'A group; its members\' policy groups include its displayName',
        attributes: [a('displayName', { required: true, uniqueness: 'server' }), a('externalId', { caseExact: true }), complex('members', [a('value', { caseExact: true, mutability: 'immutable' }), a('display', { mutability: 'readOnly' }), a('type')])],
        meta: meta(SCHEMA.group),
      },
    ]
  }
}

/**
 * Reads a PatchOp body (RFC 7644 §3.5.2). Operation names are case-insensitive (Entra ID sends
 * `Replace`, `Add`).
 * @throws {ScimError} 400 `invalidSyntax`.
 */
export function readPatch(body: unknown): ScimPatchOperation[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ScimError(400, 'the body must be a JSON object', 'invalidSyntax')
  const b = body as Record<string, unknown>
  const schemas = attr(b, 'schemas')
  if (!Array.isArray(schemas) || !schemas.includes(SCHEMA.patch)) throw new ScimError(400, `"schemas" must be [${SCHEMA.patch}]`, 'invalidSyntax')
  const ops = attr(b, 'Operations')
  if (!Array.isArray(ops) || ops.length === 0) throw new ScimError(400, '"Operations" must be a non-empty array', 'invalidSyntax')
  if (ops.length > 1000) throw new ScimError(400, 'too many operations', 'tooMany')
  return ops.map((o) => {
    if (o === null || typeof o !== 'object') throw new ScimError(400, 'each operation must be an object', 'invalidSyntax')
    const op = attr(o as Record<string, unknown>, 'op')
    if (typeof op !== 'string' || !['add', 'remove', 'replace'].includes(op.toLowerCase())) throw new ScimError(400, '"op" must be add, remove or replace', 'invalidSyntax')
    const path = attr(o as Record<string, unknown>, 'path')
    if (path !== undefined && typeof path !== 'string') throw new ScimError(400, '"path" must be a string', 'invalidPath')
    const value = attr(o as Record<string, unknown>, 'value')
    return { op: op.toLowerCase(), ...(path !== undefined ? { path } : {}), ...(value !== undefined ? { value } : {}) } as ScimPatchOperation
  })
}

/** Applies operations with scim-patch; its errors become SCIM errors with their `scimType`. */
function applyPatch(resource: Record<string, unknown>, ops: ScimPatchOperation[]): Record<string, unknown> {
  try {
    return scimPatch(structuredClone(resource) as never, ops, { mutateDocument: false, treatMissingAsAdd: true }) as unknown as Record<string, unknown>
  } catch (err) {
    if (err instanceof PatchLibraryError) {
      const code = (err as { scimCode?: string }).scimCode
      const scimType = code === 'noTarget' || code === 'invalidPath' || code === 'invalidValue' || code === 'invalidSyntax' || code === 'mutability' ? code : 'invalidValue'
      throw new ScimError(400, err.message.slice(0, 300), scimType)
    }
    if (err instanceof ScimError) throw err
    throw new ScimError(400, `the patch cannot be applied: ${(err as Error).message.slice(0, 200)}`, 'invalidValue')
  }
}
