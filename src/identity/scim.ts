/**
 * SCIM 2.0 provisioning of people and groups (RFC 7643 resources, RFC 7644 protocol): the
 * operations on Users and Groups, applied to devicegate's people and groups.
 *
 * Framework-free: each operation takes parsed input and returns `{ status, body, etag? }` or
 * throws {@link ScimError} (RFC 7644 §3.12 error JSON with `scimType`). Three rooms:
 * `scim-protocol.ts` (errors, filters with `scim2-parse-filter`, paging, PATCH with `scim-patch`,
 * ETags), `scim-resources.ts` (User and Group resources ↔ people and groups), `scim-discovery.ts`
 * (ServiceProviderConfig, ResourceTypes, Schemas); this module decides what each operation does.
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
import type { Clock } from '../core/ports.js'
import type { EventSink } from '../core/events.js'
import { StoreConflictError } from '../storage/store.js'
import type { GroupRecord, PeopleStore, PersonRecord } from '../storage/store.js'
import { newPerson, PeopleError, type Person, type PeopleService } from './people.js'
import { resourceTypes, schemas, serviceProviderConfig } from './scim-discovery.js'
import { applyPatch, attr, checkIfMatch, listResponse, projectAttributes, readPatch, refuseReadOnlyPatch, SCHEMA, ScimError, weakEtag, type ListQuery, type ScimResult } from './scim-protocol.js'
import { asBoolean, groupResource, readGroup, readUser, userResource, type GroupFields, type UserFields } from './scim-resources.js'

export { SCHEMA, ScimError, type ListQuery, type ScimResult } from './scim-protocol.js'

/** readOnly attributes of a User (RFC 7643 §3.1 `id`, `meta`; §4.1.2 `groups`): PATCH may not modify them. */
const USER_READ_ONLY = ['id', 'meta', 'groups'] as const
/** readOnly attributes of a Group (RFC 7643 §3.1). */
const GROUP_READ_ONLY = ['id', 'meta'] as const

/** What {@link ScimService} needs. */
export interface ScimDeps {
  people: PeopleService
  store: PeopleStore
  clock: Clock
  events: EventSink
  /** Base URL of the SCIM endpoint (`<issuer>/scim/v2`) for `meta.location`. */
  baseUrl: string
}

/**
 * The operations of one resource endpoint (`/Users` or `/Groups`, RFC 7644 §3.2–3.6), the same
 * shape for both so the routes serve them alike. `actor` is `scim:<client id>` for the audit log;
 * `ifMatch` is the request's `If-Match` header (412 `invalidVers` when it names another version).
 */
export interface ScimResourceOperations {
  list(q: ListQuery): Promise<ScimResult>
  get(id: string, q: ListQuery): Promise<ScimResult>
  create(body: unknown, actor: string): Promise<ScimResult>
  replace(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult>
  patch(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult>
  remove(id: string, actor: string, ifMatch?: string): Promise<ScimResult>
}

/** The SCIM service provider. */
export class ScimService {
  constructor(private readonly deps: ScimDeps) {}

  /** `/Users`. */
  readonly users: ScimResourceOperations = {
    list: (q) => this.listUsers(q),
    get: (id, q) => this.getUser(id, q),
    create: (body, actor) => this.createUser(body, actor),
    replace: (id, body, actor, ifMatch) => this.replaceUser(id, body, actor, ifMatch),
    patch: (id, body, actor, ifMatch) => this.patchUser(id, body, actor, ifMatch),
    remove: (id, actor, ifMatch) => this.deleteUser(id, actor, ifMatch),
  }

  /** `/Groups`. */
  readonly groups: ScimResourceOperations = {
    list: (q) => this.listGroups(q),
    get: (id, q) => this.getGroup(id, q),
    create: (body, actor) => this.createGroup(body, actor),
    replace: (id, body, actor, ifMatch) => this.replaceGroup(id, body, actor, ifMatch),
    patch: (id, body, actor, ifMatch) => this.patchGroup(id, body, actor, ifMatch),
    remove: (id, actor, ifMatch) => this.deleteGroup(id, actor, ifMatch),
  }

  #visible(p: Person | undefined): p is Person {
    return p !== undefined && p.status !== 'deleted' && p.source !== 'config'
  }

  /** The person behind a User id, checked against `If-Match` when one is given. */
  #person(id: string, ifMatch?: string): Person {
    const p = this.deps.people.directory.person(id)
    if (!this.#visible(p)) throw new ScimError(404, `no User "${id}"`)
    checkIfMatch(p.version, ifMatch)
    return p
  }

  /** The group behind a Group id, checked against `If-Match` when one is given. */
  async #group(id: string, ifMatch?: string): Promise<GroupRecord> {
    const g = await this.deps.store.findGroup(id)
    if (g === undefined) throw new ScimError(404, `no Group "${id}"`)
    checkIfMatch(g.version, ifMatch)
    return g
  }

  #userResource(p: Person, groups: ReadonlyMap<string, GroupRecord>): Record<string, unknown> {
    return userResource(p, groups, this.deps.baseUrl)
  }

  #groupResource(g: GroupRecord): Record<string, unknown> {
    return groupResource(g, (id) => this.deps.people.directory.person(id), this.deps.baseUrl)
  }

  async #groups(): Promise<Map<string, GroupRecord>> {
    return new Map((await this.deps.store.listGroups()).map((g) => [g.id, g]))
  }

  // --- Users ----------------------------------------------------------------------------------

  async listUsers(q: ListQuery): Promise<ScimResult> {
    const groups = await this.#groups()
    const users = this.deps.people.directory.all().filter((p) => this.#visible(p)).map((p) => this.#userResource(p, groups))
    return listResponse(users, q)
  }

  async getUser(id: string, q: ListQuery = {}): Promise<ScimResult> {
    const p = this.#person(id)
    return { status: 200, body: projectAttributes(this.#userResource(p, await this.#groups()), q), etag: weakEtag(p.version) }
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
    const p = this.#person(id, ifMatch)
    await this.#applyUser(p, readUser(body), actor)
    return this.getUser(id)
  }

  /** PATCH /Users/:id (RFC 7644 §3.5.2), operations applied by scim-patch to the current resource. */
  async patchUser(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult> {
    const p = this.#person(id, ifMatch)
    const ops = readPatch(body)
    const current = this.#userResource(p, await this.#groups())
    refuseReadOnlyPatch(ops, current, USER_READ_ONLY)
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
    this.#person(id, ifMatch)
    await this.deps.people.setStatus(id, 'deleted', actor, null, 'scim')
    return { status: 204 }
  }

  // --- Groups ---------------------------------------------------------------------------------

  async listGroups(q: ListQuery): Promise<ScimResult> {
    const groups = (await this.deps.store.listGroups()).map((g) => this.#groupResource(g))
    return listResponse(groups, q)
  }

  async getGroup(id: string, q: ListQuery = {}): Promise<ScimResult> {
    const g = await this.#group(id)
    return { status: 200, body: projectAttributes(this.#groupResource(g), q), etag: weakEtag(g.version) }
  }

  #readGroup(body: unknown): GroupFields {
    return readGroup(body, (id) => this.#visible(this.deps.people.directory.person(id)))
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
    return { status: 201, body: this.#groupResource(record), etag: weakEtag(1) }
  }

  async replaceGroup(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult> {
    const current = await this.#group(id, ifMatch)
    return this.#saveGroup(current, this.#readGroup(body), actor)
  }

  /** PATCH /Groups/:id: member add/remove (also `members[value eq "…"]` paths) and renames, as Entra ID and Okta send them. */
  async patchGroup(id: string, body: unknown, actor: string, ifMatch?: string): Promise<ScimResult> {
    const current = await this.#group(id, ifMatch)
    const ops = readPatch(body)
    const resource = this.#groupResource(current)
    refuseReadOnlyPatch(ops, resource, GROUP_READ_ONLY)
    const { meta: _m, ...patchable } = resource
    const patched = applyPatch(patchable, ops)
    return this.#saveGroup(current, this.#readGroup({ ...patched, schemas: [SCHEMA.group] }), actor)
  }

  async #saveGroup(current: GroupRecord, g: GroupFields, actor: string): Promise<ScimResult> {
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
    return { status: 200, body: this.#groupResource(next), etag: weakEtag(next.version) }
  }

  async deleteGroup(id: string, actor: string, ifMatch?: string): Promise<ScimResult> {
    const current = await this.#group(id, ifMatch)
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

  // --- discovery (RFC 7644 §4) ------------------------------------------------------------------

  serviceProviderConfig(): ScimResult {
    return serviceProviderConfig(this.deps.baseUrl)
  }

  resourceTypes(): Record<string, unknown>[] {
    return resourceTypes(this.deps.baseUrl)
  }

  schemas(): Record<string, unknown>[] {
    return schemas(this.deps.baseUrl)
  }
}
