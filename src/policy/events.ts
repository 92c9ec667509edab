/**
 * The audit record of one policy evaluation (governance audits every policy decision with its reasons).
 */
import type { DomainEvent } from '../core/events.js'
import type { PolicyDecision } from './model.js'

/** Where in a device grant's life the policy decided. */
export type PolicyPhase = 'authorization' | 'approval' | 'redemption' | 'refresh'

/**
 * Builds the `policy.decided` event: the decision, every reason (effect, stable code, rule), the
 * matched rules, the policy's identity and both sides' network facts. Never a code or token.
 */
export function policyDecidedEvent(
  decision: PolicyDecision,
  context: { phase: PolicyPhase; clientId: string; subject: string | null; ip: string | null; deviceGrantId?: string | null; grantId?: string | null },
): DomainEvent {
  return {
    type: 'policy.decided',
    actor: context.phase === 'approval' ? context.subject : `client:${context.clientId}`,
    clientId: context.clientId,
    subject: context.subject,
    ip: context.ip,
    grantId: context.grantId ?? null,
    details: {
      phase: context.phase,
      deviceGrantId: context.deviceGrantId ?? null,
      decision: decision.decision,
      reasons: decision.reasons.map((r) => ({ effect: r.effect, code: r.code, rule: r.rule })),
      matchedRules: decision.matchedRules,
      policyId: decision.policyId,
      proximityMismatch: decision.proximityMismatch,
      request: decision.facts.request,
      approver: decision.facts.approver,
      storageClass: decision.facts.storage ?? 'unknown',
      sameDevice: decision.facts.sameDevice ?? null,
    },
  }
}
