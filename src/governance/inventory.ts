/**
 * Token inventory: every token family with its lineage (device authorization →
 * approval → access and refresh tokens → each refresh), subject, client, scopes, requesting
 * address, issue time, expiry, last use and where from; filters and keyset paging. Also the
 * last-use tracker that keeps `grants.last_used_at` / `last_used_ip` current cheaply.
 */
import type { DomainEvent } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import type { StorageClass } from '../core/storage-class.js'
import type { DeviceAuthorizationFilter, DeviceAuthorizationSummary, GrantFilter, GrantLineage, GrantSummary, StorageClassRecord, Store } from '../storage/store.js'

/** Inventory query (wire names in the admin API map onto these). */
export interface InventoryQuery {
  subject?: string
  clientId?: string
  dpopJkt?: string
  /** Exact address of the device authorization request. */
  requestIp?: string
  /** `active` (not revoked, not past end of life), `revoked`, or any. */
  status?: 'active' | 'revoked'
  /** Families created at or after this time (epoch seconds). */
  createdFrom?: number
  /** Families created before this time (epoch seconds). */
  createdBefore?: number
  /** Page size, 1–1000. Default: 100. */
  limit?: number
  /** Opaque cursor from the previous page's `next_cursor`. */
  cursor?: string
}

/** One inventory row as the admin API and `devicegate tokens list` show it (times: epoch seconds). */
export interface InventoryItem {
  grant_id: string
  status: 'active' | 'revoked' | 'expired'
  subject: string | null
  client_id: string
  scope: string
  created_at: number
  expires_at: number | null
  revoked_at: number | null
  dpop_jkt: string | null
  device_authorization: {
    id: string
    request_ip: string | null
    user_agent: string | null
    /** Country and network of the requesting address, as the policy saw them at approval. */
    request_location: NetworkLocation | null
    requested_at: number | null
    approved_at: number | null
    /** Where the approval came from (the approver's browser), beside the request's. */
    approval: (NetworkLocation & { ip: string }) | null
  } | null
  last_used_at: number | null
  last_used_ip: string | null
  /**
   * Where the client declared it keeps this family's tokens (`storage_class`: keyring,
   * encrypted_file, memory, plaintext, unknown); null for families not from the device flow.
   */
  storage_class: StorageClass | null
}

/** Country (ISO 3166-1 alpha-2) and network (ASN, organisation) of an address, when known. */
export interface NetworkLocation {
  country: string | null
  asn: number | null
  as_org: string | null
}

/** Request and approver sides of a recorded policy decision (its `facts`). */
function sidesOf(explanationJson: string | null): { request: NetworkLocation | null; approval: (NetworkLocation & { ip: string }) | null } {
  if (explanationJson === null) return { request: null, approval: null }
  try {
    const facts = (JSON.parse(explanationJson) as { facts?: { request?: NetworkFacts | null; approver?: NetworkFacts | null } }).facts
    const loc = (n: NetworkFacts) => ({ country: n.country ?? null, asn: n.asn ?? null, as_org: n.asOrg ?? null })
    return {
      request: facts?.request ? loc(facts.request) : null,
      approval: facts?.approver?.ip ? { ip: facts.approver.ip, ...loc(facts.approver) } : null,
    }
  } catch {
    return { request: null, approval: null }
  }
}

interface NetworkFacts {
  ip: string
  country?: string | null
  asn?: number | null
  asOrg?: string | null
}

/** Thrown for a cursor that was not produced by this server. */
export class InvalidCursorError extends Error {
  override readonly name = 'InvalidCursorError'
  readonly code = 'ERR_INVALID_CURSOR'
}

function encodeCursor(g: { createdAt: number; id: string }): string {
  return Buffer.from(JSON.stringify([g.createdAt, g.id])).toString('base64url')
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  const decoded = readCursor(cursor)
  if (decoded === undefined) throw new InvalidCursorError('invalid cursor')
  return decoded
}

/** Reads a `next_cursor`; undefined unless it is exactly what {@link encodeCursor} produces. */
function readCursor(cursor: string): { createdAt: number; id: string } | undefined {
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(cursor)) return undefined
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (!Array.isArray(parsed) || parsed.length !== 2) return undefined
    const [createdAt, id] = parsed as [unknown, unknown]
    // Bounded like every stored value: a safe non-negative integer and a short id without NUL.
    if (Number.isSafeInteger(createdAt) && (createdAt as number) >= 0 && typeof id === 'string' && id.length > 0 && id.length <= 200 && !id.includes('\u0000'))
      return { createdAt: createdAt as number, id }
  } catch {
    // not JSON
  }
  return undefined
}

/** Whether `cursor` is a well-formed inventory cursor (admin API input validation). */
export function isInventoryCursor(cursor: string): boolean {
  return readCursor(cursor) !== undefined
}

/**
 * Maps a family to its inventory row.
 * @param storage Declared storage by device grant id (see {@link storageClassesOf}); absent: unknown.
 */
export function toInventoryItem(g: GrantSummary, now: number, storage?: ReadonlyMap<string, StorageClassRecord>): InventoryItem {
  return {
    grant_id: g.id,
    status: g.revokedAt !== null ? 'revoked' : g.expiresAt !== null && g.expiresAt <= now ? 'expired' : 'active',
    subject: g.subject,
    client_id: g.clientId,
    scope: g.scope,
    created_at: g.createdAt,
    expires_at: g.expiresAt,
    revoked_at: g.revokedAt,
    dpop_jkt: g.dpopJkt,
    device_authorization:
      g.deviceGrantId === null
        ? null
        : (() => {
            const sides = sidesOf(g.policyExplanationJson)
            return {
              id: g.deviceGrantId,
              request_ip: g.requestIp,
              user_agent: g.requestUserAgent,
              request_location: sides.request,
              requested_at: g.requestedAt,
              approved_at: g.approvedAt,
              approval: sides.approval,
            }
          })(),
    last_used_at: g.lastUsedAt,
    last_used_ip: g.lastUsedIp,
    storage_class: g.deviceGrantId === null ? null : (storage?.get(g.deviceGrantId)?.storageClass ?? 'unknown'),
  }
}

/** The storage declarations of these families' device authorizations, by device grant id. */
export function storageClassesOf(store: Pick<Store, 'findStorageClasses'>, grants: readonly GrantSummary[]): Promise<Map<string, StorageClassRecord>> {
  return store.findStorageClasses(grants.flatMap((g) => (g.deviceGrantId === null ? [] : [g.deviceGrantId])))
}

/**
 * One page of the inventory, newest first.
 * @throws {InvalidCursorError} for a cursor that does not decode.
 */
export async function listInventory(store: Store, clock: Clock, q: InventoryQuery): Promise<{ items: InventoryItem[]; next_cursor: string | null }> {
  const now = clock.nowSeconds()
  const limit = Math.min(1000, Math.max(1, q.limit ?? 100))
  const filter: GrantFilter = {
    ...(q.subject !== undefined ? { subject: q.subject } : {}),
    ...(q.clientId !== undefined ? { clientId: q.clientId } : {}),
    ...(q.dpopJkt !== undefined ? { dpopJkt: q.dpopJkt } : {}),
    ...(q.requestIp !== undefined ? { requestIp: q.requestIp } : {}),
    ...(q.createdFrom !== undefined ? { createdFrom: q.createdFrom } : {}),
    ...(q.createdBefore !== undefined ? { createdBefore: q.createdBefore } : {}),
    ...(q.status === 'active' ? { revoked: false, unexpiredAt: now } : q.status === 'revoked' ? { revoked: true } : {}),
  }
  const rows = await store.listGrantSummaries(filter, { limit: limit + 1, ...(q.cursor !== undefined ? { after: decodeCursor(q.cursor) } : {}) })
  const page = rows.slice(0, limit)
  const storage = await storageClassesOf(store, page)
  return { items: page.map((g) => toInventoryItem(g, now, storage)), next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!) : null }
}

/**
 * Outcome of a device authorization in the flow inventory: `pending`, `approved` (not yet
 * redeemed), `redeemed` (tokens issued), `denied` (the person pressed Deny), `refused` (the
 * policy forbade the approval), or `expired` (undecided, or approved but never redeemed, past
 * its `expires_in`).
 */
export type FlowStatus = 'pending' | 'approved' | 'redeemed' | 'denied' | 'refused' | 'expired'
export const FLOW_STATUSES = ['pending', 'approved', 'redeemed', 'denied', 'refused', 'expired'] as const satisfies readonly FlowStatus[]

/** One device authorization as the flow inventory shows it (times: epoch seconds). */
export interface FlowItem {
  id: string
  status: FlowStatus
  client_id: string
  /** The approving or denying user; null while undecided. */
  subject: string | null
  scope: string
  requested_at: number
  decided_at: number | null
  request: { ip: string | null; user_agent: string | null } & NetworkLocation
  approval: (NetworkLocation & { ip: string }) | null
  /** The policy's decision at approval (`allow`, `deny`, `step_up`), or null. */
  policy_decision: 'allow' | 'deny' | 'step_up' | null
  /** Reason codes of that decision. */
  reasons: string[]
  /** The token family issued from it, once redeemed. */
  grant_id: string | null
}

/** Inventory of device authorizations, every outcome (admin API `GET /flows`, `devicegate flows list`). */
export interface FlowQuery {
  status?: FlowStatus
  clientId?: string
  subject?: string
  createdFrom?: number
  createdBefore?: number
  /** Page size, 1–1000. Default: 100. */
  limit?: number
  cursor?: string
}

function flowStatusOf(d: DeviceAuthorizationSummary, now: number): FlowStatus {
  if (d.status === 'denied') return d.policyDecision === 'deny' ? 'refused' : 'denied'
  if ((d.status === 'pending' || d.status === 'approved') && d.expiresAt <= now) return 'expired'
  return d.status
}

/**
 * One page of device authorizations, newest first, with both sides' address and location and
 * the policy's reasons: the flows that were denied or refused as well as those that issued tokens.
 * @throws {InvalidCursorError} for a cursor that does not decode.
 */
export async function listFlows(store: Store, clock: Clock, q: FlowQuery): Promise<{ items: FlowItem[]; next_cursor: string | null }> {
  const now = clock.nowSeconds()
  const limit = Math.min(1000, Math.max(1, q.limit ?? 100))
  const byStatus: Omit<DeviceAuthorizationFilter, 'clientId' | 'subject' | 'createdFrom' | 'createdBefore'> =
    q.status === 'refused' ? { statuses: ['denied'], policy: 'deny' }
    : q.status === 'denied' ? { statuses: ['denied'], policy: 'not_deny' }
    : q.status === 'expired' ? { statuses: ['pending', 'approved'], expiredBy: now }
    : q.status === 'pending' || q.status === 'approved' ? { statuses: [q.status], expiresAfter: now }
    : q.status === 'redeemed' ? { statuses: ['redeemed'] }
    : {}
  const filter: DeviceAuthorizationFilter = {
    ...byStatus,
    ...(q.clientId !== undefined ? { clientId: q.clientId } : {}),
    ...(q.subject !== undefined ? { subject: q.subject } : {}),
    ...(q.createdFrom !== undefined ? { createdFrom: q.createdFrom } : {}),
    ...(q.createdBefore !== undefined ? { createdBefore: q.createdBefore } : {}),
  }
  const rows = await store.listDeviceAuthorizations(filter, { limit: limit + 1, ...(q.cursor !== undefined ? { after: decodeCursor(q.cursor) } : {}) })
  const page = rows.slice(0, limit)
  return {
    items: page.map((d) => toFlowItem(d, flowStatusOf(d, now))),
    next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!) : null,
  }
}

function toFlowItem(d: DeviceAuthorizationSummary, status: FlowStatus): FlowItem {
  const sides = sidesOf(d.policyExplanationJson)
  let reasons: string[] = []
  try {
    const parsed = d.policyExplanationJson === null ? undefined : (JSON.parse(d.policyExplanationJson) as { reasons?: { code?: string }[] })
    reasons = (parsed?.reasons ?? []).map((r) => r.code).filter((c): c is string => typeof c === 'string')
  } catch {
    // unreadable explanation: no reasons
  }
  return {
    id: d.id,
    status,
    client_id: d.clientId,
    subject: d.subject,
    scope: d.scope,
    requested_at: d.createdAt,
    decided_at: d.decidedAt,
    request: { ip: d.requestIp, user_agent: d.requestUserAgent, ...(sides.request ?? { country: null, asn: null, as_org: null }) },
    approval: sides.approval,
    policy_decision: d.policyDecision,
    reasons,
    grant_id: d.grantId,
  }
}

/** A family's lineage in wire shape, or undefined when unknown. */
export async function describeLineage(store: Store, clock: Clock, grantId: string): Promise<Record<string, unknown> | undefined> {
  const lineage: GrantLineage | undefined = await store.findGrantLineage(grantId)
  if (lineage === undefined) return undefined
  const d = lineage.deviceGrant
  return {
    ...toInventoryItem(lineage.grant, clock.nowSeconds(), await storageClassesOf(store, [lineage.grant])),
    lineage: {
      device_authorization:
        d === undefined
          ? null
          : { id: d.id, client_id: d.clientId, scope: d.scope, request_ip: d.requestIp, user_agent: d.requestUserAgent, requested_at: d.createdAt, status: d.status, dpop_jkt: d.dpopJkt },
      approval: d === undefined || d.decidedAt === null ? null : { subject: d.subject, decided_at: d.decidedAt },
      access_tokens: lineage.accessTokens.map((a) => ({ jti: a.jti, issued_at: a.issuedAt, expires_at: a.expiresAt, revoked_at: a.revokedAt, dpop_jkt: a.dpopJkt })),
      refresh_tokens: lineage.refreshTokens.map((r) => ({ id: r.id, issued_at: r.issuedAt, expires_at: r.expiresAt, rotated_at: r.rotatedAt, revoked_at: r.revokedAt })),
    },
  }
}

/**
 * Listener that records a family's last use from `token.used` (introspection) and
 * `token.refreshed` events. Cheap on the hot path: an in-memory map skips families written less
 * than `everySeconds` ago by this process (unless the address changed), and the store's
 * conditional UPDATE skips those another instance wrote; so at most one write per family per
 * interval and instance. The map is bounded (cleared at 100,000 entries).
 */
export function createLastUseTracker(store: Store, clock: Clock, everySeconds: number): (event: DomainEvent) => Promise<unknown> | undefined {
  const written = new Map<string, { at: number; ip: string | null }>()
  // Not async: most events need no write, and those answer without a promise (see GovernanceEvents.record).
  return (event) => {
    if ((event.type !== 'token.used' && event.type !== 'token.refreshed') || !event.grantId) return undefined
    const now = clock.nowSeconds()
    const ip = event.ip ?? null
    const last = written.get(event.grantId)
    if (last !== undefined && now - last.at < everySeconds && (ip === null || ip === last.ip)) return undefined
    if (written.size >= 100_000) written.clear()
    written.set(event.grantId, { at: now, ip })
    // A changed address is worth a write even inside the interval (the detectors compare it).
    return store.touchGrant(event.grantId, now, ip, last !== undefined && ip !== last.ip ? 0 : everySeconds)
  }
}
