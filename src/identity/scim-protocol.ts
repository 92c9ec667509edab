/**
 * The SCIM 2.0 protocol mechanics devicegate's resources share (RFC 7644), apart from what the
 * resources mean: the schema URNs, the error model (§3.12, `scimType`), filters (§3.4.2.2,
 * parsed and evaluated by `scim2-parse-filter` with RFC 7643's case rules), paging (§3.4.2.4),
 * attribute projection (§3.4.2.5), PATCH operations (§3.5.2, applied by `scim-patch`), and
 * versions (`meta.version` as a weak ETag, `If-Match`, §3.14). Framework-free.
 */
import { scimPatch, ScimError as PatchLibraryError, type ScimPatchOperation } from 'scim-patch'
import { parse as parseFilter, Tester, type Filter } from 'scim2-parse-filter'

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

  /**
   * The HTTP status, under the name fastify and the request metrics read on a thrown error (a
   * SCIM 4xx is then counted as the request's fault, not as a `server_error`).
   */
  get statusCode(): number {
    return this.status
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

/**
 * A SCIM Integer (RFC 7643 §2.3.4: a decimal number with no fractional digits and no exponent),
 * within the range a number holds exactly.
 * @throws {ScimError} 400 `invalidValue` naming the parameter (`1e23`, `1.5`, `0x10`, `ten`, and
 *   integers beyond 2^53 - 1).
 */
function integerParameter(value: string, name: string): number {
  const n = Number(value)
  if (!/^\s*[+-]?\d+\s*$/.test(value) || !Number.isSafeInteger(n))
    throw new ScimError(400, `"${name}" must be an integer (decimal digits, at most ${Number.MAX_SAFE_INTEGER})`, 'invalidValue')
  return n
}

function pageOf(q: ListQuery): { start: number; count: number } {
  const start = q.startIndex === undefined ? 1 : integerParameter(q.startIndex, 'startIndex')
  const count = q.count === undefined ? 100 : integerParameter(q.count, 'count')
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
export function attr(obj: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(obj).find((k) => k.toLowerCase() === name.toLowerCase())
  return key === undefined ? undefined : obj[key]
}

/**
 * A ListResponse (RFC 7644 §3.4.2): `resources` filtered by `q.filter`, paged by `startIndex` and
 * `count`, each projected by `attributes` / `excludedAttributes`.
 * @throws {ScimError} 400 `invalidFilter` or `invalidValue`.
 */
export function listResponse(resources: Record<string, unknown>[], q: ListQuery): ScimResult {
  const match = q.filter === undefined || q.filter.trim() === '' ? () => true : compileFilter(q.filter)
  const { start, count } = pageOf(q)
  const all = resources.filter(match)
  const page = all.slice(start - 1, start - 1 + count).map((r) => projectAttributes(r, q))
  return { status: 200, body: { schemas: [SCHEMA.list], totalResults: all.length, startIndex: start, itemsPerPage: page.length, Resources: page } }
}

/** The weak ETag of a resource version (`meta.version` and the `ETag` header, RFC 7644 §3.14). */
export const weakEtag = (version: number): string => `W/"${version}"`

/**
 * Checks a request's `If-Match` (RFC 7644 §3.14, RFC 9110 §13.1.1) against the resource's
 * version: absent or `*` passes; otherwise one of the listed tags must be this version's (weak
 * or strong spelling).
 * @throws {ScimError} 412 `invalidVers`.
 */
export function checkIfMatch(version: number, ifMatch: string | undefined): void {
  if (ifMatch === undefined || ifMatch.trim() === '*') return
  const tags = ifMatch.split(',').map((t) => t.trim())
  if (!tags.includes(weakEtag(version)) && !tags.includes(`"${version}"`)) throw new ScimError(412, 'the resource changed (If-Match)', 'invalidVers')
}

/**
 * A path segment naming a JavaScript prototype link (`__proto__`, `constructor`, `prototype`), as
 * an attribute, a sub-attribute or after a schema URN. No SCIM schema (RFC 7643) has such an
 * attribute, and scim-patch (0.8.3, the latest) follows these names into `Object.prototype`:
 * `{"op":"add","path":"__proto__.x","value":1}` set `x` on every object of the server process.
 */
const PROTOTYPE_PATH_SEGMENT = /(?:^|[.:\]\s])(?:__proto__|constructor|prototype)(?=$|[.[\]\s])/i

/** Whether a member name anywhere in `value` names a prototype link (scim-patch reads the names of a path-less value as paths). */
function namesPrototypeLink(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  if (Array.isArray(value)) return value.some((member) => namesPrototypeLink(member))
  return Object.entries(value).some(([name, member]) => PROTOTYPE_PATH_SEGMENT.test(name) || namesPrototypeLink(member))
}

/**
 * Reads a PatchOp body (RFC 7644 §3.5.2). Operation names are case-insensitive (Entra ID sends
 * `Replace`, `Add`). A path, or a member name in a value, through a prototype link (see
 * {@link PROTOTYPE_PATH_SEGMENT}) is refused, as an attribute no schema defines.
 * @throws {ScimError} 400 `invalidSyntax`; 400 `invalidPath` for a path that is not a string or
 * names a prototype link; 400 `invalidValue` for a value whose member names one.
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
    if (path !== undefined && PROTOTYPE_PATH_SEGMENT.test(path)) throw new ScimError(400, '"path" names no attribute of the schema', 'invalidPath')
    const value = attr(o as Record<string, unknown>, 'value')
    if (namesPrototypeLink(value)) throw new ScimError(400, '"value" names no attribute of the schema', 'invalidValue')
    return { op: op.toLowerCase(), ...(path !== undefined ? { path } : {}), ...(value !== undefined ? { value } : {}) } as ScimPatchOperation
  })
}


/** The top-level attribute a PATCH path names: `id` for `id`, `meta.created` and `urn:…:User:id`. */
function pathAttribute(path: string): string {
  const beforeFilter = path.split('[')[0]!
  const local = /^urn:/i.test(beforeFilter) ? beforeFilter.slice(beforeFilter.lastIndexOf(':') + 1) : beforeFilter
  return local.split('.')[0]!.trim().toLowerCase()
}

/**
 * Refuses PATCH operations that would modify a readOnly attribute: RFC 7644 §3.5.2 ("a client MUST
 * NOT modify an attribute that has mutability readOnly"; an incompatible operation gets the §3.12
 * error) with scimType `mutability`. An operation whose `path` names one (`id`, `meta.created`,
 * `urn:ietf:params:scim:schemas:core:2.0:User:id`) is refused whatever its value; a path-less
 * `add`/`replace` is refused when its value carries one with a value other than the current one
 * (a client that echoes the resource's own `id` modifies nothing). Unlike PATCH, PUT ignores
 * readOnly values (RFC 7644 §3.5.1).
 *
 * @param current The resource as served (with its readOnly attributes).
 * @param readOnly Lower-case names of its readOnly top-level attributes (RFC 7643 §3.1, §4.1).
 * @throws {ScimError} 400 `mutability` naming the attribute.
 */
export function refuseReadOnlyPatch(ops: readonly ScimPatchOperation[], current: Record<string, unknown>, readOnly: readonly string[]): void {
  const refuse = (name: string) => new ScimError(400, `"${name}" is readOnly and cannot be modified`, 'mutability')
  for (const op of ops) {
    const path = (op as { path?: string }).path
    if (path !== undefined) {
      const name = pathAttribute(path)
      if (readOnly.includes(name)) throw refuse(name)
      continue
    }
    const value = (op as { value?: unknown }).value
    if (op.op === 'remove' || value === null || typeof value !== 'object' || Array.isArray(value)) continue
    for (const [key, given] of Object.entries(value)) {
      const name = key.toLowerCase()
      if (readOnly.includes(name) && JSON.stringify(given) !== JSON.stringify(attr(current, name))) throw refuse(name)
    }
  }
}

/** Applies operations with scim-patch; its errors become SCIM errors with their `scimType`. */
export function applyPatch(resource: Record<string, unknown>, ops: ScimPatchOperation[]): Record<string, unknown> {
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
