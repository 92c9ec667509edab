/**
 * Anomaly detectors (governance). Each has a stable name — used in `anomaly.raised` audit
 * events, the `anomalies` table, the admin API and the `devicegate_anomalies_total{kind}` metric —
 * and a configured action:
 *
 * - `alert`: record the anomaly (table + audit event + metric), change nothing.
 * - `revoke_grant`: also revoke the token family concerned; when there is none yet (a device
 *   authorization still open), deny that device authorization so it never yields tokens.
 * - `revoke_user`: also revoke every family of the user concerned (falls back to `revoke_grant`
 *   when no user is known, e.g. a burst of device authorizations).
 *
 * Detectors (devicegate has no geo or ASN database, so "network" means the same IPv4 /24 or
 * IPv6 /48, configurable; the names say so — `token_used_from_new_asn` and
 * `approval_country_mismatch` would need such a database and are not provided):
 *
 * | name | trigger |
 * |---|---|
 * | `refresh_token_reuse` | a rotated refresh token presented again (RFC 9700 §4.14.2) |
 * | `token_used_from_new_ip_range` | a family used (refresh, or introspection with `client_ip`) from another network than its device authorization request |
 * | `dpop_key_mismatch` | a DPoP-bound refresh token (RFC 9449 §5) or device code (devicegate extension) presented without a proof by its key |
 * | `slow_down_ignored` | a device code answered `slow_down` `threshold` times (RFC 8628 §3.5): counted from the interval growth stored with the code, no extra write per poll |
 * | `user_code_guessing` | `threshold` wrong user codes from one IP or one session in a window, or the server-wide budget of failed code entries spent (`source: server`; code entry then needs sign-in) (RFC 8628 §5.1) |
 * | `device_authorization_burst` | more than `per_ip` / `per_client` device authorizations in a window (counted per instance, in memory) |
 * | `approval_network_mismatch` | the approver's network differs from the device authorization request's (RFC 8628 §5.4 remote phishing), for approvals and for approvals the policy refused |
 * | `orphaned_token` | live families of a user disabled or deleted, or of a client disabled or removed — revoked when the change is made (admin API, CLI, SCIM, Shared Signals) and at start-up for configuration changes; the revocation happens even with the detector off (it then only records no anomaly) |
 * | `dormant_grant` | a live family unused for `after_seconds`, found by a periodic sweep |
 * | `device_flow_same_device` | `threshold` approvals of one client within `window_seconds` where the approving browser ran on the requesting machine (same IP and platform; RFC 10027, BCP 247): the tool would fit a browser-based flow |
 */
import type { AnomalyAction, GovernanceConfig } from '../config/governance.js'
import type { DomainEvent, EventSink } from '../core/events.js'
import type { Clock, Random } from '../core/ports.js'
import type { Store } from '../storage/store.js'
import { randomToken } from '../system.js'
import { isSameDevice, SAME_DEVICE_ADVICE } from '../policy/same-device.js'
import { networkOf } from './network.js'
import type { RevocationService } from './revocation.js'

/** Every detector name, stable. */
export const ANOMALY_KINDS = [
  'refresh_token_reuse',
  'token_used_from_new_ip_range',
  'dpop_key_mismatch',
  'slow_down_ignored',
  'user_code_guessing',
  'device_authorization_burst',
  'approval_network_mismatch',
  'orphaned_token',
  'dormant_grant',
  'device_flow_same_device',
] as const
export type AnomalyKind = (typeof ANOMALY_KINDS)[number]

/** One detection, before it is stored. */
export interface Detection {
  kind: AnomalyKind
  /** At most one anomaly per key (e.g. per grant and network); omit to record every time. */
  dedupeKey?: string
  clientId?: string | null
  subject?: string | null
  grantId?: string | null
  /** The open device authorization concerned, when there is no family yet. */
  deviceGrantId?: string | null
  ip?: string | null
  details?: Record<string, unknown>
}

/** What {@link AnomalyEngine.raise} did. */
export interface RaiseOutcome {
  /** False when the dedupe key had been seen (nothing recorded, nothing done). */
  raised: boolean
  action: AnomalyAction
  /** Families revoked and device authorizations denied by the action. */
  revokedGrants: number
  deniedDeviceAuthorizations: number
}

/** Bounded in-memory set/map: cleared when it reaches `max` entries (detectors only need recent keys). */
class Bounded<K, V> extends Map<K, V> {
  constructor(readonly max: number) {
    super()
  }
  override set(key: K, value: V): this {
    if (this.size >= this.max) this.clear()
    return super.set(key, value)
  }
}

export interface AnomalyEngineOptions {
  store: Store
  clock: Clock
  random: Random
  config: GovernanceConfig['anomalies']
  events: EventSink
  revocation: RevocationService
}

export class AnomalyEngine {
  readonly #o: AnomalyEngineOptions
  /** grantId → network of its device authorization request ('' when none). */
  readonly #issuedFrom = new Bounded<string, string>(100_000)
  /** dedupe keys already raised by this process (skips the database insert). */
  readonly #seen = new Bounded<string, true>(100_000)
  /** burst counters: key → [windowStart, count]. */
  readonly #bursts = new Bounded<string, [number, number]>(100_000)

  constructor(options: AnomalyEngineOptions) {
    this.#o = options
  }

  #settings(kind: AnomalyKind): { enabled: boolean; action: AnomalyAction } {
    const c = this.#o.config
    switch (kind) {
      case 'refresh_token_reuse':
        return c.refreshTokenReuse
      case 'token_used_from_new_ip_range':
        return c.tokenUsedFromNewIpRange
      case 'dpop_key_mismatch':
        return c.dpopKeyMismatch
      case 'slow_down_ignored':
        return c.slowDownIgnored
      case 'user_code_guessing':
        return c.userCodeGuessing
      case 'device_authorization_burst':
        return c.deviceAuthorizationBurst
      case 'approval_network_mismatch':
        return c.approvalNetworkMismatch
      case 'orphaned_token':
        return c.orphanedToken
      case 'dormant_grant':
        return c.dormantGrant
      case 'device_flow_same_device':
        return c.deviceFlowSameDevice
    }
  }

  /**
   * Records a detection (once per dedupe key), writes `anomaly.raised`, and takes the configured
   * action. Disabled detectors raise nothing.
   */
  async raise(d: Detection): Promise<RaiseOutcome> {
    const { enabled, action } = this.#settings(d.kind)
    const none: RaiseOutcome = { raised: false, action, revokedGrants: 0, deniedDeviceAuthorizations: 0 }
    if (!enabled) return none
    const dedupeKey = d.dedupeKey === undefined ? null : `${d.kind}:${d.dedupeKey}`
    if (dedupeKey !== null && this.#seen.has(dedupeKey)) return none
    const { store, clock, random, events, revocation } = this.#o
    const id = randomToken(random, 12)
    const inserted = await store.insertAnomaly({
      id,
      kind: d.kind,
      time: clock.nowSeconds(),
      dedupeKey,
      clientId: d.clientId ?? null,
      subject: d.subject ?? null,
      grantId: d.grantId ?? null,
      ip: d.ip ?? null,
      action,
      details: JSON.stringify({ ...d.details, ...(d.deviceGrantId ? { deviceGrantId: d.deviceGrantId } : {}) }),
    })
    if (dedupeKey !== null) this.#seen.set(dedupeKey, true)
    if (!inserted) return none
    let revokedGrants = 0
    let deniedDeviceAuthorizations = 0
    const ctx = { actor: `detector:${d.kind}`, reason: `anomaly ${id}` }
    if (action === 'revoke_user' && d.subject) {
      const r = await revocation.revoke({ kind: 'user', subject: d.subject }, { ...ctx, listLimit: 0 })
      revokedGrants = r.grants
      deniedDeviceAuthorizations = r.deviceAuthorizations
    } else if (action !== 'alert') {
      if (d.grantId) revokedGrants = (await revocation.revoke({ kind: 'grant', grantId: d.grantId }, { ...ctx, listLimit: 0 })).grants
      if (d.deviceGrantId) deniedDeviceAuthorizations = await store.denyOpenDeviceGrants({ ids: [d.deviceGrantId] }, clock.nowSeconds())
    }
    await events.record({
      type: 'anomaly.raised',
      actor: `detector:${d.kind}`,
      clientId: d.clientId ?? null,
      subject: d.subject ?? null,
      grantId: d.grantId ?? null,
      ip: d.ip ?? null,
      details: { kind: d.kind, anomalyId: id, action, revokedGrants, deniedDeviceAuthorizations, ...d.details },
    })
    return { raised: true, action, revokedGrants, deniedDeviceAuthorizations }
  }

  /**
   * The event listener that runs the event-driven detectors. Events no detector acts on — most
   * of them: every poll answered `slow_down` (RFC 8628 §3.5) while its code is below the
   * threshold or once its anomaly is raised, every introspection without `client_ip` — are passed
   * over without a promise, so the sink does not wait a turn for them (see GovernanceEvents.record).
   * @returns a promise while a detector acts on the event; undefined when none does.
   */
  readonly listener = (event: DomainEvent): Promise<void> | undefined => {
    switch (event.type) {
      case 'device_code.polled_too_fast':
        return this.#slowDownIgnoredDue(event) ? this.#detect(event) : undefined
      case 'refresh_token.reuse_detected':
      case 'dpop_proof.rejected':
      case 'user_code.looked_up':
      case 'user_code.entry_budget_exhausted':
      case 'device_authorization.requested':
      case 'device_code.approved':
      case 'device_code.denied':
        return this.#detect(event)
      case 'token.used':
      case 'token.refreshed': {
        // Only a use from a known address can be from a new network (introspection without `client_ip` is not).
        const c = this.#o.config.tokenUsedFromNewIpRange
        return c.enabled && event.ip && event.grantId ? this.#detect(event) : undefined
      }
      default:
        return undefined
    }
  }

  /**
   * Whether a `device_code.polled_too_fast` event reaches `slow_down_ignored`: the detector is on,
   * the code's `slow_down` count is at the threshold, and its anomaly has not been raised by this
   * process yet (the same checks {@link raise} makes first, without a promise).
   */
  #slowDownIgnoredDue(event: DomainEvent): boolean {
    const c = this.#o.config.slowDownIgnored
    return c.enabled && Number(event.details?.slowDowns) >= c.threshold && !this.#seen.has(`slow_down_ignored:${String(event.details?.deviceGrantId)}`)
  }

  /** Runs the detectors of `event` (the events {@link listener} passes on). */
  async #detect(event: DomainEvent): Promise<void> {
    const details = event.details ?? {}
    switch (event.type) {
      case 'refresh_token.reuse_detected':
        await this.raise({ kind: 'refresh_token_reuse', dedupeKey: `${event.grantId}:${String(details.refreshTokenId)}`, ...who(event), details: { refreshTokenId: details.refreshTokenId } })
        return
      case 'dpop_proof.rejected':
        if (details.reason === 'key_mismatch') {
          // A bound device code (before redemption there is no grant yet) or a bound refresh token.
          const deviceGrantId = typeof details.deviceGrantId === 'string' ? details.deviceGrantId : undefined
          await this.raise({
            kind: 'dpop_key_mismatch',
            dedupeKey: `${event.grantId ?? deviceGrantId}:${String(details.presentedJkt)}`,
            ...who(event),
            ...(deviceGrantId && !event.grantId ? { deviceGrantId } : {}),
            details: { boundJkt: details.boundJkt, presentedJkt: details.presentedJkt, tokenType: details.tokenType ?? 'refresh_token' },
          })
        }
        return
      case 'device_code.polled_too_fast': {
        const c = this.#o.config.slowDownIgnored
        const slowDowns = Number(details.slowDowns)
        if (c.enabled && slowDowns >= c.threshold)
          await this.raise({ kind: 'slow_down_ignored', dedupeKey: String(details.deviceGrantId), ...who(event), deviceGrantId: String(details.deviceGrantId), details: { slowDowns, intervalSeconds: details.intervalSeconds } })
        return
      }
      case 'user_code.looked_up':
        if (details.outcome !== 'found') await this.#userCodeGuessing(event)
        return
      case 'user_code.entry_budget_exhausted': {
        // Code entry now needs sign-in server-wide; once per budget window.
        const windowSeconds = Number(details.windowSeconds)
        const now = this.#o.clock.nowSeconds()
        const window = windowSeconds > 0 ? Math.floor(now / windowSeconds) * windowSeconds : now
        await this.raise({
          kind: 'user_code_guessing',
          dedupeKey: `server:${window}`,
          ip: event.ip ?? null,
          details: { source: 'server', limit: details.limit, windowSeconds: details.windowSeconds },
        })
        return
      }
      case 'device_authorization.requested':
        await this.#burst(event)
        return
      case 'device_code.approved':
        await this.#approvalNetwork(event)
        await this.#sameDevice(event)
        return
      case 'device_code.denied':
        // A refused approval (the policy denied it) from another network is the same warning sign.
        if (details.deniedByPolicy === true) await this.#approvalNetwork(event)
        return
      case 'token.used':
      case 'token.refreshed':
        await this.#newIpRange(event)
        return
      default:
        return
    }
  }

  async #userCodeGuessing(event: DomainEvent): Promise<void> {
    const c = this.#o.config.userCodeGuessing
    if (!c.enabled) return
    const now = this.#o.clock.nowSeconds()
    const window = Math.floor(now / c.windowSeconds) * c.windowSeconds
    const session = event.details?.session
    const sources: [string, string][] = []
    if (event.ip) sources.push(['ip', event.ip])
    if (typeof session === 'string') sources.push(['session', session])
    for (const [kind, value] of sources) {
      const count = await this.#o.store.incrementCounter(`anomaly:user_code_guessing:${kind}:${value}`, c.windowSeconds, now)
      if (count >= c.threshold) {
        await this.raise({
          kind: 'user_code_guessing',
          dedupeKey: `${kind}:${value}:${window}`,
          subject: event.subject ?? null,
          ip: event.ip ?? null,
          details: { source: kind, failures: count, windowSeconds: c.windowSeconds },
        })
      }
    }
  }

  async #burst(event: DomainEvent): Promise<void> {
    const c = this.#o.config.deviceAuthorizationBurst
    if (!c.enabled) return
    const now = this.#o.clock.nowSeconds()
    const window = Math.floor(now / c.windowSeconds) * c.windowSeconds
    const checks: [string, string | null | undefined, number][] = [
      ['ip', event.ip, c.perIp],
      ['client', event.clientId, c.perClient],
    ]
    for (const [kind, value, limit] of checks) {
      if (!value) continue
      const key = `${kind}:${value}`
      const entry = this.#bursts.get(key)
      const count = entry !== undefined && entry[0] === window ? entry[1] + 1 : 1
      this.#bursts.set(key, [window, count])
      if (count === limit + 1) {
        await this.raise({
          kind: 'device_authorization_burst',
          dedupeKey: `${key}:${window}`,
          clientId: event.clientId ?? null,
          ip: event.ip ?? null,
          deviceGrantId: typeof event.details?.deviceGrantId === 'string' ? event.details.deviceGrantId : null,
          details: { source: kind, count, limit, windowSeconds: c.windowSeconds },
        })
      }
    }
  }

  async #approvalNetwork(event: DomainEvent): Promise<void> {
    const c = this.#o.config.approvalNetworkMismatch
    const requestIp = event.details?.requestIp
    if (!c.enabled || !event.ip || typeof requestIp !== 'string') return
    const approvedFrom = networkOf(event.ip, c.ipv4Prefix, c.ipv6Prefix)
    const requestedFrom = networkOf(requestIp, c.ipv4Prefix, c.ipv6Prefix)
    if (approvedFrom === undefined || requestedFrom === undefined || approvedFrom === requestedFrom) return
    const deviceGrantId = String(event.details?.deviceGrantId)
    await this.raise({
      kind: 'approval_network_mismatch',
      dedupeKey: deviceGrantId,
      ...who(event),
      deviceGrantId,
      details: { approvedFrom, requestedFrom },
    })
  }

  async #sameDevice(event: DomainEvent): Promise<void> {
    const c = this.#o.config.deviceFlowSameDevice
    if (!c.enabled || !event.clientId || approvalSameDevice(event) !== true) return
    const now = this.#o.clock.nowSeconds()
    const window = Math.floor(now / c.windowSeconds) * c.windowSeconds
    const count = await this.#o.store.incrementCounter(`anomaly:device_flow_same_device:${event.clientId}`, c.windowSeconds, now)
    if (count < c.threshold) return
    await this.raise({
      kind: 'device_flow_same_device',
      dedupeKey: `${event.clientId}:${window}`,
      ...who(event),
      deviceGrantId: typeof event.details?.deviceGrantId === 'string' ? event.details.deviceGrantId : null,
      details: { sameDeviceApprovals: count, windowSeconds: c.windowSeconds, advice: SAME_DEVICE_ADVICE },
    })
  }

  async #newIpRange(event: DomainEvent): Promise<void> {
    const c = this.#o.config.tokenUsedFromNewIpRange
    if (!c.enabled || !event.ip || !event.grantId) return
    const used = networkOf(event.ip, c.ipv4Prefix, c.ipv6Prefix)
    if (used === undefined) return
    let issued = this.#issuedFrom.get(event.grantId)
    if (issued === undefined) {
      const [g] = await this.#o.store.listGrantSummaries({ ids: [event.grantId] }, { limit: 1 })
      issued = g?.requestIp ? (networkOf(g.requestIp, c.ipv4Prefix, c.ipv6Prefix) ?? '') : ''
      this.#issuedFrom.set(event.grantId, issued)
    }
    if (issued === '' || issued === used) return
    await this.raise({
      kind: 'token_used_from_new_ip_range',
      dedupeKey: `${event.grantId}:${used}`,
      ...who(event),
      details: { issuedFrom: issued, usedFrom: used, via: event.type === 'token.refreshed' ? 'refresh' : 'introspection' },
    })
  }

  /**
   * One dormant-family sweep: live families unused (by refresh or reported introspection) for
   * `after_seconds`, at most 1000 per sweep. @returns how many were raised.
   */
  async sweepDormant(): Promise<number> {
    const c = this.#o.config.dormantGrant
    if (!c.enabled) return 0
    const now = this.#o.clock.nowSeconds()
    const dormant = await this.#o.store.listGrantSummaries({ revoked: false, unexpiredAt: now, lastUsedBefore: now - c.afterSeconds }, { limit: 1000 })
    let raised = 0
    for (const g of dormant) {
      const outcome = await this.raise({
        kind: 'dormant_grant',
        dedupeKey: g.id,
        clientId: g.clientId,
        subject: g.subject,
        grantId: g.id,
        details: { lastUsedAt: g.lastUsedAt ?? g.createdAt, afterSeconds: c.afterSeconds },
      })
      if (outcome.raised) raised++
    }
    return raised
  }

  /**
   * Orphaned families: a user or client that can no longer act (disabled, deleted, removed from
   * configuration). Revokes its live families and denies its open device authorizations now,
   * **whatever the detector's switch or configured action**: deprovisioning revokes every grant
   * at once (issue 12 §3, OWASP NHI1 improper offboarding), so it is not a detector's choice. The
   * detector only decides whether an `orphaned_token` anomaly (table row and `anomaly.raised`
   * event) is recorded besides; the revocations themselves are audited as `token.revoked` by the
   * revocation service either way.
   * @returns families revoked.
   */
  async orphan(kind: 'user' | 'client', id: string, reason: 'disabled' | 'deleted' | 'removed_from_config', actor: string): Promise<number> {
    const r = await this.#o.revocation.revoke(kind === 'user' ? { kind: 'user', subject: id } : { kind: 'client', clientId: id }, {
      actor,
      reason: `orphaned_token: ${kind} ${reason}`,
      listLimit: 0,
    })
    if (!this.#o.config.orphanedToken.enabled) return r.grants
    if (r.grants === 0 && r.deviceAuthorizations === 0) return 0
    const id2 = randomToken(this.#o.random, 12)
    await this.#o.store.insertAnomaly({
      id: id2,
      kind: 'orphaned_token',
      time: this.#o.clock.nowSeconds(),
      dedupeKey: null,
      clientId: kind === 'client' ? id : null,
      subject: kind === 'user' ? id : null,
      grantId: null,
      ip: null,
      action: 'revoke_grant',
      details: JSON.stringify({ principal: kind, reason, revokedGrants: r.grants }),
    })
    await this.#o.events.record({
      type: 'anomaly.raised',
      actor,
      clientId: kind === 'client' ? id : null,
      subject: kind === 'user' ? id : null,
      details: { kind: 'orphaned_token', anomalyId: id2, action: 'revoke_grant', principal: kind, reason, revokedGrants: r.grants, deniedDeviceAuthorizations: r.deviceAuthorizations },
    })
    return r.grants
  }
}

/**
 * Whether a `device_code.approved` event was a same-device approval: its `sameDevice` detail
 * when the approval recorded one, else judged from its addresses and User-Agents.
 */
export function approvalSameDevice(event: DomainEvent): boolean | null {
  const d = event.details ?? {}
  if (typeof d.sameDevice === 'boolean') return d.sameDevice
  if (!event.ip || typeof d.requestIp !== 'string' || typeof d.approverUserAgent !== 'string') return null
  return isSameDevice({
    requestIp: d.requestIp,
    requestUserAgent: typeof d.requestUserAgent === 'string' ? d.requestUserAgent : null,
    approverIp: event.ip,
    approverUserAgent: d.approverUserAgent,
  })
}

function who(event: DomainEvent): Pick<Detection, 'clientId' | 'subject' | 'grantId' | 'ip'> {
  return { clientId: event.clientId ?? null, subject: event.subject ?? null, grantId: event.grantId ?? null, ip: event.ip ?? null }
}
