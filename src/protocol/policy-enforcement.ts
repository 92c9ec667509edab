/**
 * Conditional approval at the token endpoint: the decision made at approval is taken
 * again at redemption and at every refresh, with the policy, account and client as they are now,
 * and its constraints shape the issued tokens (lifetime, scope, refresh, DPoP, session length).
 *
 * Kept off the polling hot path: the device_code grant calls this only for an approved code,
 * i.e. once per redemption attempt, never while the code is pending.
 */
import { parseScope, type Client } from '../core/model.js'
import type { Constraints, PolicyDecision } from '../policy/model.js'
import { parseStoredDecision } from '../policy/service.js'
import type { DeviceGrantRecord, GrantRecord } from '../storage/store.js'
import type { ProtocolDeps } from './deps.js'
import { OAuthError } from './errors.js'
import { policyDecidedEvent } from '../policy/events.js'
import type { StorageClass } from '../core/storage-class.js'
import { storageRefusalMembers } from './device-authorization.js'

/** Reason code of a refresh refused by `refresh_from_new_location` (client policy setting). */
export const REFRESH_FROM_NEW_LOCATION = 'refresh_from_new_location'

/** How the tokens of one redemption or refresh are shaped. */
export interface TokenShape {
  /** Granted scope after narrowing, space-delimited. */
  scope: string
  refreshAllowed: boolean
  /** Upper bound on the access token's `exp` (epoch seconds). */
  accessNotAfter: number
  /** Upper bound on the token family's end of life (epoch seconds). */
  familyNotAfter: number
  singleSession: boolean
  /** The decision behind the shape, or null when no policy is configured. */
  decision: PolicyDecision | null
}

/** Narrows a space-delimited scope to the constraint's scopes (order kept). */
export function narrowScope(scope: string, c: Constraints): string {
  if (c.scopes === null) return scope
  const allowed = c.scopes
  return parseScope(scope)
    .filter((s) => allowed.includes(s))
    .join(' ')
}

function shapeOf(d: PolicyDecision, scope: string, now: number, sessionStart: number): Omit<TokenShape, 'decision'> {
  const c = d.constraints
  const sessionEnd = c.maxSessionSeconds === null ? Number.MAX_SAFE_INTEGER : sessionStart + c.maxSessionSeconds
  const accessEnd = c.accessTokenTtlSeconds === null ? Number.MAX_SAFE_INTEGER : now + c.accessTokenTtlSeconds
  const refreshEnd = c.refreshMaxLifetimeSeconds === null ? Number.MAX_SAFE_INTEGER : sessionStart + c.refreshMaxLifetimeSeconds
  return {
    scope: narrowScope(scope, c),
    refreshAllowed: c.refreshAllowed,
    accessNotAfter: Math.min(accessEnd, sessionEnd),
    familyNotAfter: Math.min(sessionEnd, refreshEnd),
    singleSession: c.singleSession,
  }
}

function refusal(d: PolicyDecision): string {
  return d.reasons
    .filter((r) => r.effect === 'deny' || r.effect === 'step_up')
    .map((r) => `${r.code} (${r.rule})`)
    .join(', ')
}

/**
 * Decides again for an approved device code just before its tokens are minted.
 *
 * @returns the token shape; without a configured policy service, the grant's scope unchanged.
 * @throws {OAuthError} `access_denied` when the policy in force no longer allows the approval
 *   (RFC 8628 §3.5: the authorization request was denied); `invalid_dpop_proof` when the approval
 *   requires DPoP-bound tokens and the request carries no proof (RFC 9449 §5).
 */
export async function enforcePolicyAtRedemption(
  deps: ProtocolDeps,
  input: { client: Client; grant: DeviceGrantRecord; dpopJkt: string | null; now: number },
): Promise<TokenShape> {
  const { client, grant, now } = input
  const none: TokenShape = {
    scope: grant.scope,
    refreshAllowed: true,
    accessNotAfter: Number.MAX_SAFE_INTEGER,
    familyNotAfter: Number.MAX_SAFE_INTEGER,
    singleSession: false,
    decision: null,
  }
  const policy = deps.policy
  if (!policy) return none
  const record = await deps.store.findDeviceGrantPolicy(grant.id)
  const stored = parseStoredDecision(record?.explanationJson)
  const storageClass = policy.hasStorageRules() ? (await deps.store.findStorageClass(grant.id))?.storageClass : undefined
  // An approval recorded without its decision (older server, failed write) is decided afresh
  // with what the grant row knows; the approver's side is then unknown.
  const decision =
    stored && stored.facts.user?.username === grant.subject
      ? await policy.reevaluate(stored, { phase: 'redemption', now, client, dpopJkt: input.dpopJkt, storageClass })
      : await policy.decide({
          phase: 'redemption',
          now,
          client,
          username: grant.subject,
          mfaDone: false,
          requestIp: grant.requestIp,
          approverIp: null,
          posture: { status: 'absent' },
          dpopJkt: input.dpopJkt,
          storageClass,
        })
  await deps.events?.record(
    policyDecidedEvent(decision, { phase: 'redemption', clientId: client.id, subject: grant.subject, ip: null, deviceGrantId: grant.id }),
  )
  if (decision.decision !== 'allow') {
    const byStorage = policy.storageRefusal(decision)
    throw new OAuthError(
      'access_denied',
      byStorage ? `tokens kept in "${decision.facts.storage ?? 'unknown'}" storage are not accepted for this client` : 'the authorization is no longer allowed by policy',
      { detail: refusal(decision), ...(byStorage ? { members: storageRefusalMembers(decision.facts.storage ?? 'unknown') } : {}) },
    )
  }
  if (decision.constraints.dpopRequired && input.dpopJkt === null)
    throw new OAuthError('invalid_dpop_proof', 'a DPoP proof is required for this authorization')
  return { ...shapeOf(decision, grant.scope, now, now), decision }
}

/**
 * Decides again at a refresh of a token family that came from the device flow.
 *
 * @param input.family The refreshed token family as stored (undefined when it is gone).
 * @param input.ip The refreshing client's address (for `refresh_from_new_location`).
 * @returns the shape, or undefined when the family did not come from a device authorization
 *   with a recorded decision, or no policy service is configured (nothing to re-check).
 * @throws {OAuthError} `invalid_grant` when the policy now denies (the family is revoked) or
 *   forbids refresh, or requires a step-up that a refresh cannot do; `invalid_grant` with reason
 *   `refresh_from_new_location` when the client's policy refuses refreshes from another country or
 *   network than the device authorization request's — refused at this refresh, before any token is
 *   minted, and the family is kept.
 */
export async function enforcePolicyAtRefresh(
  deps: ProtocolDeps,
  input: { client: Client; family: GrantRecord | undefined; scope: string; dpopJkt: string | null; ip: string; now: number; storageClass?: StorageClass | undefined },
): Promise<TokenShape | undefined> {
  const { policy } = deps
  const { family } = input
  if (!family?.deviceGrantId) return undefined
  // Storage rules: a client that moved its tokens declares the new storage on refresh; it is kept
  // with the grant whether or not a policy is configured.
  let storageClass = input.storageClass
  if (storageClass !== undefined) await deps.store.redeclareStorageClass(family.deviceGrantId, storageClass, input.now)
  if (!policy) return undefined
  if (storageClass === undefined && policy.hasStorageRules()) storageClass = (await deps.store.findStorageClass(family.deviceGrantId))?.storageClass
  const record = await deps.store.findDeviceGrantPolicy(family.deviceGrantId)
  const stored = parseStoredDecision(record?.explanationJson)
  const decision = stored
    ? await policy.reevaluate(stored, { phase: 'refresh', now: input.now, client: input.client, dpopJkt: input.dpopJkt, storageClass })
    : await policy.decide({
        phase: 'refresh',
        now: input.now,
        client: input.client,
        username: family.subject,
        mfaDone: false,
        requestIp: '0.0.0.0',
        approverIp: null,
        posture: { status: 'absent' },
        dpopJkt: input.dpopJkt,
        storageClass,
      })
  // Refreshes that go on as before are not audited one by one; a refusal is.
  if (decision.decision !== 'allow' || !decision.constraints.refreshAllowed)
    await deps.events?.record(
      policyDecidedEvent(decision, { phase: 'refresh', clientId: input.client.id, subject: family.subject, ip: null, deviceGrantId: family.deviceGrantId, grantId: family.id }),
    )
  const byStorage = policy.storageRefusal(decision)
  const storageMembers = byStorage ? { members: storageRefusalMembers(decision.facts.storage ?? 'unknown') } : {}
  if (decision.decision === 'deny') {
    await deps.store.revokeGrant(family.id, input.now)
    throw new OAuthError(
      'invalid_grant',
      byStorage ? `"refresh_token" kept in "${decision.facts.storage ?? 'unknown'}" storage is not accepted for this client` : '"refresh_token" is no longer allowed by policy',
      { detail: `${refusal(decision)}; family revoked`, ...storageMembers },
    )
  }
  if (decision.decision === 'step_up')
    throw new OAuthError('invalid_grant', '"refresh_token" needs a new sign-in with a second factor', { detail: refusal(decision) })
  if (!decision.constraints.refreshAllowed)
    throw new OAuthError(
      'invalid_grant',
      byStorage ? `"refresh_token" kept in "${decision.facts.storage ?? 'unknown'}" storage is not accepted for this client` : '"refresh_token" is not allowed by policy',
      { detail: byStorage ? `refresh not allowed: ${byStorage.rules.join(', ')}` : 'refresh not allowed', ...storageMembers },
    )
  // Compared with the request's address as recorded with the approval (none recorded: not compared).
  const changed = stored ? policy.refreshLocationChanges(input.client.id, stored.facts.request.ip, input.ip) : []
  if (changed.length > 0) {
    const refused: PolicyDecision = {
      ...decision,
      decision: 'deny',
      reasons: [
        ...decision.reasons,
        { effect: 'deny', code: REFRESH_FROM_NEW_LOCATION, rule: `clients.${input.client.id}.refresh_from_new_location` },
      ],
      facts: { ...decision.facts, approver: policy.network(input.ip) },
      proximityMismatch: changed,
    }
    await deps.events?.record(
      policyDecidedEvent(refused, { phase: 'refresh', clientId: input.client.id, subject: family.subject, ip: input.ip, deviceGrantId: family.deviceGrantId, grantId: family.id }),
    )
    throw new OAuthError('invalid_grant', `"refresh_token" cannot be used from a new ${changed.includes('country') ? 'country' : 'network'} (${REFRESH_FROM_NEW_LOCATION})`, {
      detail: `${REFRESH_FROM_NEW_LOCATION}: ${changed.join(', ')} differ from the device authorization request`,
    })
  }
  return { ...shapeOf(decision, input.scope, input.now, family.createdAt), decision }
}
