/**
 * The mapping between SCIM resources and devicegate's people and groups (RFC 7643): reading a
 * User or Group body into the columns devicegate keeps, and rendering a person or group as its
 * User (§4.1, with the enterprise extension §4.3) or Group (§4.2) resource. Framework-free; the
 * protocol mechanics (errors, filters, PATCH, versions) are in `scim-protocol.ts`.
 *
 * - A User's `userName`, `displayName`, `externalId`, primary email, enterprise `manager.value`
 *   (the manager's SCIM `id`) and `active` are columns; every other attribute is kept as written
 *   and returned as it was. `password` is never stored.
 * - A Group's `members[].value` must name Users of this server (no nested groups).
 */
import type { GroupRecord } from '../storage/store.js'
import type { Person } from './people.js'
import { attr, SCHEMA, ScimError, weakEtag } from './scim-protocol.js'

/** Entra ID has sent booleans as "True"/"False" strings; RFC 7643 §2.3.2 says boolean. */
export function asBoolean(v: unknown, name: string): boolean | undefined {
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

/**
 * A request body that is a JSON object whose `schemas` include `schema` (RFC 7643 §3).
 * @throws {ScimError} 400 `invalidSyntax`.
 */
function resourceBody(body: unknown, schema: string): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ScimError(400, 'the body must be a JSON object', 'invalidSyntax')
  const b = body as Record<string, unknown>
  const schemas = attr(b, 'schemas')
  if (!Array.isArray(schemas) || !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === schema.toLowerCase()))
    throw new ScimError(400, `"schemas" must include ${schema}`, 'invalidSyntax')
  return b
}

/** What a SCIM User body says, mapped onto a person's columns. */
export interface UserFields {
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
  const b = resourceBody(body, SCHEMA.user)
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

const iso = (t: number) => new Date(t * 1000).toISOString()

/**
 * The User resource of a person (RFC 7643 §4.1): its columns, the attributes kept as written, its
 * groups, and `meta` with the weak ETag of its version.
 * @param baseUrl The SCIM endpoint (`<issuer>/scim/v2`) for `meta.location` and `$ref`.
 */
export function userResource(p: Person, groups: ReadonlyMap<string, GroupRecord>, baseUrl: string): Record<string, unknown> {
  const extra = p.scimJson === null ? {} : (JSON.parse(p.scimJson) as Record<string, unknown>)
  const memberOf = [...groups.values()].filter((g) => g.members.includes(p.id)).map((g) => ({ value: g.id, display: g.displayName, $ref: `${baseUrl}/Groups/${g.id}` }))
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
    meta: { resourceType: 'User', created: iso(p.createdAt), lastModified: iso(p.updatedAt), version: weakEtag(p.version), location: `${baseUrl}/Users/${p.id}` },
  }
}

/**
 * The Group resource (RFC 7643 §4.2); members no longer here (deleted people) are left out.
 * @param personOf Looks a member up (`display` is their display name, else user name).
 */
export function groupResource(g: GroupRecord, personOf: (id: string) => Person | undefined, baseUrl: string): Record<string, unknown> {
  return {
    schemas: [SCHEMA.group],
    id: g.id,
    ...(g.externalId !== null ? { externalId: g.externalId } : {}),
    displayName: g.displayName,
    members: g.members.flatMap((id) => {
      const p = personOf(id)
      return p === undefined || p.status === 'deleted' ? [] : [{ value: id, display: p.displayName ?? p.userName, type: 'User', $ref: `${baseUrl}/Users/${id}` }]
    }),
    meta: { resourceType: 'Group', created: iso(g.createdAt), lastModified: iso(g.updatedAt), version: weakEtag(g.version), location: `${baseUrl}/Groups/${g.id}` },
  }
}

/** What a SCIM Group body says: its columns. */
export interface GroupFields {
  displayName: string
  externalId: string | null
  /** Person ids, each once. */
  members: string[]
}

/**
 * Reads a Group resource (RFC 7643 §4.2) from a request body.
 * @param isUser Whether an id names a User of this server (members must).
 * @throws {ScimError} 400 `invalidSyntax` / `invalidValue`.
 */
export function readGroup(body: unknown, isUser: (id: string) => boolean): GroupFields {
  const b = resourceBody(body, SCHEMA.group)
  const displayName = attr(b, 'displayName')
  if (typeof displayName !== 'string' || displayName.trim() === '' || displayName.length > 256) throw new ScimError(400, '"displayName" is required', 'invalidValue')
  const members = attr(b, 'members') ?? []
  if (!Array.isArray(members)) throw new ScimError(400, '"members" must be an array', 'invalidValue')
  const ids = members.map((m) => {
    const value = m && typeof m === 'object' ? attr(m as Record<string, unknown>, 'value') : undefined
    if (typeof value !== 'string') throw new ScimError(400, '"members[].value" must be a User id', 'invalidValue')
    if (!isUser(value)) throw new ScimError(400, `member "${value}" is not a User here (nested groups are not supported)`, 'invalidValue')
    return value
  })
  return { displayName, externalId: optionalString(attr(b, 'externalId'), 'externalId'), members: [...new Set(ids)] }
}
