/**
 * The review and the decision on one device authorization (RFC 8628 §3.3), with conditional
 * approval's server-side re-check: when the button is pressed the policy is evaluated again, so a
 * stale review page or a hand-made POST cannot skip the second factor, the typed confirmation or
 * a deny.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.3
 */
import type { Client, ClientDirectory } from '../core/model.js'
import type { EventSink } from '../core/events.js'
import { normalizeUserCode } from '../core/user-code.js'
import type { StorageClass } from '../core/storage-class.js'
import { policyDecidedEvent } from '../policy/events.js'
import { isSameDevice } from '../policy/same-device.js'
import type { PolicyDecision, PostureFacts } from '../policy/model.js'
import { parseStoredDecision, type PolicyService } from '../policy/service.js'
import { authenticationOfSignIn } from '../protocol/oidc.js'
import type { DeviceGrantRecord, Store } from '../storage/store.js'
import { constantTimeEqual } from '../system.js'
import { alreadyDecided, recordedOutcome, type CodeEntry, type CodeLookupFailure } from './code-entry.js'
import type { VerificationLogger } from './logger.js'
import { isMfaDone, reviewerOf, type SignedInSession } from './sessions.js'

/** What the review page shows: the request, and the policy's view of approving it now. */
export interface Review {
  grant: DeviceGrantRecord
  client: Client
  /** Where the requesting tool says it keeps its tokens (`storage_class`; `unknown` when it did not say). */
  storageClass: StorageClass
  /** Absent without a policy (every signed-in person may approve). */
  policy?: {
    decision: PolicyDecision
    /** Approval needs the code's last N characters typed (high-risk apps); only with `allow`. */
    confirmSuffixLength: number | undefined
  }
}

/** Outcome of {@link Approval.decide}. */
export type DecisionOutcome =
  | CodeLookupFailure
  /** Approval refused until the second factor is done in this sign-in (403). */
  | { kind: 'step_up_required'; review: Review }
  /** The typed confirmation characters do not match; counted as a failed code entry (400). */
  | { kind: 'confirm_mismatch'; review: Review }
  /** The policy refused the approval; the request is recorded as denied (403). */
  | { kind: 'denied_by_policy'; client: Client; message: string | undefined; reasonCodes: string[] }
  /** Another decision or expiry won a race with this one, which recorded nothing: "used". */
  | { kind: 'race_lost' }
  | { kind: 'decided'; outcome: 'approved' | 'denied'; client: Client }

/** How long a review claims its code, in seconds, unless configured. */
export const DEFAULT_REVIEW_CLAIM_SECONDS = 120

export interface ApprovalDeps {
  store: Store
  /**
   * How long showing the review claims the code for this browser session, in seconds; renewed by
   * every review, step-up and decision of that session. Default: 120.
   */
  reviewClaimSeconds?: number | undefined
  clients: ClientDirectory
  codeEntry: CodeEntry
  policy?: PolicyService | undefined
  events?: EventSink | undefined
  logger: VerificationLogger
}

export function createApproval(deps: ApprovalDeps) {
  const { store, logger, codeEntry } = deps
  const claimSeconds = deps.reviewClaimSeconds ?? DEFAULT_REVIEW_CLAIM_SECONDS
  const claimedElsewhere = { kind: 'claimed_elsewhere', claimSeconds } as const

  /** Characters of the code a high-risk approval must type, or undefined for one click. */
  function confirmSuffix(client: Client): number | undefined {
    const configured = deps.policy?.settings(client.id).confirmCode
    const tier = client.riskTier ?? 'standard'
    return (configured ?? (tier === 'high' || tier === 'admin')) ? 4 : undefined
  }

  /** Evaluates the policy for this approver approving this request now; undefined without a policy. */
  async function evaluate(
    session: SignedInSession,
    grant: DeviceGrantRecord,
    client: Client,
    ip: string,
    now: number,
    storageClass: StorageClass,
    userAgent: string | undefined,
  ): Promise<PolicyDecision | undefined> {
    if (!deps.policy) return undefined
    const record = await store.findDeviceGrantPolicy(grant.id)
    let posture: PostureFacts = { status: 'absent' }
    if (record?.postureJson) {
      try {
        posture = JSON.parse(record.postureJson) as PostureFacts
      } catch {
        posture = { status: 'invalid', error: 'unreadable' }
      }
    }
    return deps.policy.decide({
      phase: 'approval',
      now,
      client,
      username: session.user.username,
      mfaDone: isMfaDone(session.record),
      requestIp: grant.requestIp,
      approverIp: ip,
      posture,
      dpopJkt: grant.dpopJkt,
      storageClass,
      requestUserAgent: grant.requestUserAgent,
      approverUserAgent: userAgent ?? null,
    })
  }

  /** The storage class the device authorization declared (`unknown` when none). */
  async function storageOf(grant: DeviceGrantRecord): Promise<StorageClass> {
    return (await store.findStorageClass(grant.id))?.storageClass ?? 'unknown'
  }

  function reviewOf(grant: DeviceGrantRecord, client: Client, storageClass: StorageClass, decision: PolicyDecision | undefined): Review {
    if (decision === undefined) return { grant, client, storageClass }
    return { grant, client, storageClass, policy: { decision, confirmSuffixLength: decision.decision === 'allow' ? confirmSuffix(client) : undefined } }
  }

  /**
   * Claims (or renews the claim on) a pending code's review for this browser session: one
   * conditional update, so of two sessions racing across instances exactly one holds it. Logged
   * when refused.
   */
  async function claim(session: SignedInSession, grant: DeviceGrantRecord, ip: string, now: number): Promise<boolean> {
    const held = await store.claimDeviceGrantReview(grant.id, reviewerOf(session), now + claimSeconds, now)
    if (!held)
      logger.warn(
        { event: 'verification.review_claimed_elsewhere', grantId: grant.id, subject: session.user.username, ip },
        'device authorization is being reviewed in another browser session',
      )
    return held
  }

  /**
   * Records a device authorization the policy refuses as denied, at once (the person need not
   * press Deny): the device's next poll gets `access_denied` (RFC 8628 §3.5). Stores the
   * explanation and records `device_code.denied` with `deniedByPolicy` and the request's address
   * (so `approval_network_mismatch` is raised for refused approvals too).
   * @returns the page's outcome, or undefined when another decision or claim won (nothing recorded).
   */
  async function denyByPolicy(
    session: SignedInSession,
    grant: DeviceGrantRecord,
    client: Client,
    decision: PolicyDecision,
    ip: string,
    now: number,
  ): Promise<Extract<DecisionOutcome, { kind: 'denied_by_policy' }> | undefined> {
    const user = session.user
    await store.saveDeviceGrantDecision(grant.id, decision.decision, JSON.stringify(decision), now)
    if (!(await store.decideDeviceGrant(grant.id, 'denied', user.username, now, reviewerOf(session)))) return undefined
    const reasonCodes = decision.reasons.filter((r) => r.effect === 'deny').map((r) => r.code)
    logger.info(
      { event: 'device_code.denied_by_policy', grantId: grant.id, clientId: client.id, subject: user.username, ip, reasons: reasonCodes },
      'device authorization denied by policy',
    )
    await deps.events?.record({
      type: 'device_code.denied',
      actor: user.username,
      clientId: client.id,
      subject: user.username,
      ip,
      details: { deviceGrantId: grant.id, scope: grant.scope, requestIp: grant.requestIp, requestedAt: grant.createdAt, deniedByPolicy: true, reasonCodes },
    })
    const message = decision.reasons.find((r) => r.effect === 'deny' && r.message !== undefined)?.message
    return { kind: 'denied_by_policy', client, message, reasonCodes }
  }

  /** The policy's refusal recorded with a denied grant, for showing again; undefined when the person denied it. */
  async function policyRefusal(grant: DeviceGrantRecord, clientName: string): Promise<Extract<DecisionOutcome, { kind: 'denied_by_policy' }> | undefined> {
    const client = deps.clients.get(grant.clientId)
    const stored = parseStoredDecision((await store.findDeviceGrantPolicy(grant.id))?.explanationJson)
    if (client === undefined || stored?.decision !== 'deny') return undefined
    const denying = stored.reasons.filter((r) => r.effect === 'deny')
    return {
      kind: 'denied_by_policy',
      client: { ...client, name: clientName },
      message: denying.find((r) => r.message !== undefined)?.message,
      reasonCodes: denying.map((r) => r.code),
    }
  }

  return {
    claim,
    /** The outcome when another browser session holds the review. */
    claimedElsewhere,
    /**
     * The review of a found code for this session's person now (one policy evaluation), after
     * claiming it for this browser session (RFC 8628 §3.3: one approver per request; a second
     * session — another person who learnt the code, or a phishing relay — cannot decide it while
     * the review is open). Claims last {@link ApprovalDeps.reviewClaimSeconds}. When the policy
     * forbids the approval, the request is recorded as denied right here (see `denyByPolicy`) and
     * the review says so.
     * @param userAgent The approving browser's User-Agent (same-device detection); optional.
     */
    async review(
      session: SignedInSession,
      grant: DeviceGrantRecord,
      client: Client,
      ip: string,
      now: number,
      userAgent?: string,
    ): Promise<Review | typeof claimedElsewhere> {
      if (!(await claim(session, grant, ip, now))) return claimedElsewhere
      const storageClass = await storageOf(grant)
      const decision = await evaluate(session, grant, client, ip, now, storageClass, userAgent)
      if (decision?.decision === 'deny') {
        // The policy forbids approving it: denied now, not when (or if) Deny is pressed.
        await deps.events?.record(
          policyDecidedEvent(decision, { phase: 'approval', clientId: client.id, subject: session.user.username, ip, deviceGrantId: grant.id }),
        )
        await denyByPolicy(session, grant, client, decision, ip, now)
      }
      return reviewOf(grant, client, storageClass, decision)
    },

    /**
     * Records the person's decision on a code, re-validating everything: the code goes through
     * the code-entry limiter and lookup again (it may have expired or been decided in another tab),
     * the policy is evaluated again (`policy.decided` recorded) and its explanation stored with the
     * grant. An approval the policy denies is recorded as denied. One conditional update decides,
     * so of two racing decisions one wins; the loser sees the winner's decision when it was this
     * person's, otherwise "used". Records `device_code.approved` or `device_code.denied`.
     *
     * @param input.confirmCode What was typed for the code's last characters (high-risk apps).
     */
    async decide(
      input: { session: SignedInSession; rawCode: string; outcome: 'approved' | 'denied'; confirmCode: string | undefined; ip: string; userAgent?: string | undefined },
      now: number,
    ): Promise<DecisionOutcome> {
      const { session, outcome, ip } = input
      const from = { session, ip, source: 'typed' as const }
      const found = await codeEntry.lookUp(from, input.rawCode, now, outcome)
      if (found.kind === 'already_decided' && found.outcome === 'denied' && outcome === 'approved') {
        // Denied by the policy when the review was shown: approving says why again (403).
        const refused = await policyRefusal(found.grant, found.clientName)
        if (refused !== undefined) return refused
      }
      if (found.kind !== 'found') return found
      const { grant, client } = found
      const user = session.user
      // Only the session holding the review may decide (claimed now if the claim ran out or it
      // never showed the review, e.g. a hand-made POST); nothing changes for another one.
      if (!(await claim(session, grant, ip, now))) return claimedElsewhere
      const storageClass = await storageOf(grant)
      const decision = await evaluate(session, grant, client, ip, now, storageClass, input.userAgent)
      if (decision)
        await deps.events?.record(
          policyDecidedEvent(decision, { phase: 'approval', clientId: client.id, subject: user.username, ip, deviceGrantId: grant.id }),
        )
      if (decision && outcome === 'approved') {
        if (decision.decision === 'step_up') {
          logger.warn({ event: 'verification.approve_without_mfa', grantId: grant.id, subject: user.username, ip }, 'approval refused: MFA required')
          return { kind: 'step_up_required', review: reviewOf(grant, client, storageClass, decision) }
        }
        const suffix = decision.decision === 'allow' ? confirmSuffix(client) : undefined
        if (suffix !== undefined) {
          const typedChars = input.confirmCode !== undefined ? (normalizeUserCode(`XXXX${input.confirmCode}`.slice(-8).padStart(8, 'X')) ?? '') : ''
          if (!constantTimeEqual(typedChars.slice(-suffix), grant.userCode.slice(-suffix))) {
            await codeEntry.limiter.countFailure(from, now)
            return { kind: 'confirm_mismatch', review: reviewOf(grant, client, storageClass, decision) }
          }
        }
      }
      // An approval the policy refuses is recorded as denied; never as approved, even if that loses a race.
      const refusedByPolicy = decision?.decision === 'deny' && outcome === 'approved'
      if (decision && refusedByPolicy) {
        const denied = await denyByPolicy(session, grant, client, decision, ip, now)
        if (denied !== undefined) return denied
      } else if (decision) {
        // The explanation is stored with the device grant, whatever was decided (conditional approval).
        await store.saveDeviceGrantDecision(grant.id, decision.decision, JSON.stringify(decision), now)
      }
      const decided = !refusedByPolicy && (await store.decideDeviceGrant(grant.id, outcome, user.username, now, reviewerOf(session)))
      if (!decided) {
        // Lost a race with another decision, another session's claim or expiry; nothing was
        // recorded by this call. When the winner was this person (a double click), show their
        // decision; not a failed entry either way.
        const latest = await store.findDeviceGrantByUserCode(grant.userCode)
        const recorded = latest !== undefined && latest.subject === user.username ? recordedOutcome(latest) : undefined
        if (latest !== undefined && recorded !== undefined) return alreadyDecided(deps.clients, latest, recorded, outcome)
        if (latest?.status === 'pending' && latest.expiresAt > now) return claimedElsewhere
        return { kind: 'race_lost' }
      }
      // OpenID Connect: how the approver authenticated, for the ID Token and the access tokens.
      if (outcome === 'approved')
        await store.saveAuthenticationContext(grant.id, authenticationOfSignIn(session.record.authTime ?? now, isMfaDone(session.record)))
      logger.info({ event: `device_code.${outcome}`, grantId: grant.id, clientId: client.id, subject: user.username, ip }, `device authorization ${outcome}`)
      await deps.events?.record({
        type: `device_code.${outcome}`,
        actor: user.username,
        clientId: client.id,
        subject: user.username,
        ip,
        details: {
          deviceGrantId: grant.id,
          scope: grant.scope,
          requestIp: grant.requestIp,
          requestedAt: grant.createdAt,
          storageClass,
          // Same-device detection (RFC 10027): both User-Agents and the verdict, for the detector and the share per client.
          requestUserAgent: grant.requestUserAgent?.slice(0, 200) ?? null,
          approverUserAgent: input.userAgent?.slice(0, 200) ?? null,
          sameDevice: isSameDevice({ requestIp: grant.requestIp, requestUserAgent: grant.requestUserAgent, approverIp: ip, approverUserAgent: input.userAgent }),
        },
      })
      return { kind: 'decided', outcome, client }
    },
  }
}

export type Approval = ReturnType<typeof createApproval>
