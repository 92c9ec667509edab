/**
 * Central revocation: by token, grant (token family), user, client, DPoP key
 * thumbprint (RFC 7638 `jkt`), everything issued before a time (the kill switch), and phishing
 * remediation — every family minted from approvals matching a pattern (requesting IP or CIDR,
 * client, approving user, time window). Every kind has a dry run that counts and lists what
 * would be revoked and changes nothing.
 *
 * Revocation is one conditional UPDATE of `grants.revoked_at` (chunked only for id lists): access
 * and refresh tokens are judged through the join on `grants`, so it takes effect at once for
 * introspection, refresh and the revocation feed, on every instance. Device authorizations that
 * are still open (pending, or approved and not yet redeemed) and match are denied as well, so
 * they can never turn into tokens afterwards.
 */
import type { EventSink } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import { findToken } from '../protocol/token-lookup.js'
import type { DeviceGrantFilter, GrantFilter, GrantSummary, Store } from '../storage/store.js'
import { cidrMatcher } from './network.js'

/** Which approvals phishing remediation matches; all given criteria must hold. */
export interface ApprovalPattern {
  /** Address or CIDR the device authorization was requested from. */
  requestIp?: string
  clientId?: string
  /** The user who approved. */
  approvedBy?: string
  /** Device authorizations requested at or after this time (epoch seconds). */
  from?: number
  /** … and before this time (epoch seconds). */
  to?: number
}

/** What to revoke. */
export type RevocationTarget =
  | { kind: 'token'; token: string }
  | { kind: 'grant'; grantId: string }
  | { kind: 'user'; subject: string }
  | { kind: 'client'; clientId: string }
  | { kind: 'jkt'; jkt: string }
  | { kind: 'before'; time: number }
  | { kind: 'pattern'; pattern: ApprovalPattern }

export type RevocationKind = RevocationTarget['kind']

/** Outcome of {@link RevocationService.revoke}. */
export interface RevocationResult {
  kind: RevocationKind
  dryRun: boolean
  /** Families revoked (or, in a dry run, that would be). */
  grants: number
  /** Open device authorizations denied (or that would be). */
  deviceAuthorizations: number
  /** Up to `listLimit` of the families concerned, newest first (listed before revoking). */
  listed: GrantSummary[]
}

/** Who asked and why, for the audit record. */
export interface RevocationContext {
  dryRun?: boolean
  /** `admin:<client id>`, `cli:<os user>`, `system`, … */
  actor: string
  reason?: string
  ip?: string | null
  /** Families listed in the result. Default: 100. */
  listLimit?: number
}

/** Most device authorizations one pattern may match (a bigger net needs a narrower pattern). */
export const PATTERN_MATCH_LIMIT = 100_000

/** Thrown for a target that names nothing usable (empty pattern, bad CIDR). */
export class RevocationTargetError extends Error {
  override readonly name = 'RevocationTargetError'
  readonly code = 'ERR_REVOCATION_TARGET'
}

export class RevocationService {
  readonly #store: Store
  readonly #clock: Clock
  readonly #events: EventSink | undefined

  constructor(store: Store, clock: Clock, events?: EventSink) {
    this.#store = store
    this.#clock = clock
    this.#events = events
  }

  /**
   * Revokes (or, with `dryRun`, counts and lists) the families a target names and denies open
   * device authorizations it names. Writes one `token.revoked` audit event per call that changed
   * something.
   * @throws {RevocationTargetError} for an empty pattern or a malformed CIDR.
   */
  async revoke(target: RevocationTarget, ctx: RevocationContext): Promise<RevocationResult> {
    const now = this.#clock.nowSeconds()
    const dryRun = ctx.dryRun ?? false
    const { grants: filter, devices, openDevices } = await this.#resolve(target)
    const listLimit = ctx.listLimit ?? 100
    const listed = filter === undefined ? [] : await this.#list(filter, listLimit)
    let grants: number
    let deviceAuthorizations = 0
    if (dryRun) {
      grants = filter === undefined ? 0 : await this.#count(filter)
      if (openDevices !== undefined) deviceAuthorizations = openDevices
      else if (devices !== undefined) deviceAuthorizations = (await this.#store.listDeviceGrants(devices, PATTERN_MATCH_LIMIT)).filter(isOpen).length
    } else {
      grants = filter === undefined ? 0 : target.kind === 'jkt' ? await this.#store.revokeGrantsByDpopJkt(target.jkt, now) : await this.#store.revokeGrantsWhere(filter, now)
      if (devices !== undefined) deviceAuthorizations = await this.#store.denyOpenDeviceGrants(devices, now)
      if (grants > 0 || deviceAuthorizations > 0) {
        await this.#events?.record({
          type: 'token.revoked',
          actor: ctx.actor,
          ip: ctx.ip ?? null,
          subject: target.kind === 'user' ? target.subject : null,
          clientId: target.kind === 'client' ? target.clientId : null,
          grantId: target.kind === 'grant' ? target.grantId : listed.length === 1 ? listed[0]!.id : null,
          details: { via: 'central', target: describeTarget(target), grants, deviceAuthorizations, reason: ctx.reason ?? null },
        })
      }
    }
    return { kind: target.kind, dryRun, grants, deviceAuthorizations, listed }
  }

  async #list(filter: GrantFilter, limit: number): Promise<GrantSummary[]> {
    if (limit <= 0) return []
    const ids = filter.ids ?? filter.deviceGrantIds
    if (ids !== undefined && ids.length > 500) {
      const key = filter.ids !== undefined ? 'ids' : 'deviceGrantIds'
      return this.#store.listGrantSummaries({ ...filter, [key]: ids.slice(0, 500) }, { limit })
    }
    return this.#store.listGrantSummaries(filter, { limit })
  }

  #count(filter: GrantFilter): Promise<number> {
    return this.#store.countGrants(filter)
  }

  /** Turns a target into a family filter (live families only) and a device-authorization filter. */
  async #resolve(target: RevocationTarget): Promise<{ grants?: GrantFilter; devices?: DeviceGrantFilter; openDevices?: number }> {
    const live = { revoked: false } as const
    switch (target.kind) {
      case 'token': {
        const found = await findToken(this.#store, target.token, undefined)
        return found === undefined ? {} : { grants: { ...live, ids: [found.record.grantId] } }
      }
      case 'grant':
        return { grants: { ...live, ids: [target.grantId] } }
      case 'user':
        return { grants: { ...live, subject: target.subject }, devices: { subject: target.subject } }
      case 'client':
        return { grants: { ...live, clientId: target.clientId }, devices: { clientId: target.clientId } }
      case 'jkt':
        return { grants: { ...live, dpopJkt: target.jkt } }
      case 'before':
        return { grants: { ...live, createdBefore: target.time } }
      case 'pattern': {
        const p = target.pattern
        if ([p.requestIp, p.clientId, p.approvedBy, p.from, p.to].every((v) => v === undefined))
          throw new RevocationTargetError('a pattern needs at least one of request_ip, client_id, approved_by, from, to')
        let matches: (ip: string) => boolean = () => true
        if (p.requestIp !== undefined) {
          try {
            matches = cidrMatcher(p.requestIp)
          } catch (err) {
            throw new RevocationTargetError((err as Error).message)
          }
        }
        const devices: DeviceGrantFilter = {
          ...(p.clientId !== undefined ? { clientId: p.clientId } : {}),
          ...(p.approvedBy !== undefined ? { subject: p.approvedBy } : {}),
          ...(p.from !== undefined ? { createdFrom: p.from } : {}),
          ...(p.to !== undefined ? { createdTo: p.to } : {}),
        }
        const hasSqlCriterion = Object.keys(devices).length > 0
        const found = (await this.#store.listDeviceGrants(hasSqlCriterion ? devices : { createdFrom: 0 }, PATTERN_MATCH_LIMIT)).filter((d) => matches(d.requestIp))
        const ids = found.map((d) => d.id)
        return { grants: { ...live, deviceGrantIds: ids }, devices: { ids }, openDevices: found.filter(isOpen).length }
      }
    }
  }
}

function isOpen(d: { status: string }): boolean {
  return d.status === 'pending' || d.status === 'approved'
}

/** A compact, secret-free description of a target for the audit record. */
export function describeTarget(target: RevocationTarget): Record<string, unknown> {
  switch (target.kind) {
    case 'token':
      return { kind: 'token' }
    case 'grant':
      return { kind: 'grant', grantId: target.grantId }
    case 'user':
      return { kind: 'user', subject: target.subject }
    case 'client':
      return { kind: 'client', clientId: target.clientId }
    case 'jkt':
      return { kind: 'jkt', jkt: target.jkt }
    case 'before':
      return { kind: 'before', time: target.time }
    case 'pattern':
      return { kind: 'pattern', ...target.pattern }
  }
}
