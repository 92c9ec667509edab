/**
 * The refresh_token grant (RFC 6749 §6) with rotation on every use and reuse detection that
 * revokes the whole token family (RFC 9700 §4.14.2).
 */
import { GRANT_TYPES, parseScope } from '../../core/model.js'
import { sha256Hex } from '../../system.js'
import type { ProtocolDeps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { enforcePolicyAtRefresh, narrowScope } from '../policy-enforcement.js'
import { isOpenIdScope, mintIdToken } from '../oidc.js'
import { requireParam } from '../params.js'
import { readStorageClass } from '../device-authorization.js'
import { readResources, resolveResources } from '../resources.js'
import { mintAccessToken, mintRefreshToken, tokenResponse, type TokenResponse } from '../tokens.js'
import type { GrantInput } from './types.js'

export const grantType = GRANT_TYPES.refreshToken
export const parameters = ['refresh_token', 'scope', 'storage_class'] as const

/**
 * Whether a presentation of an already rotated refresh token may be a retry of a lost response
 * (the store decides atomically): within the grace of its rotation, with the key that rotated it.
 */
export function isRetryCandidate(
  token: { rotatedAt: number | null; rotatedJkt?: string | null | undefined },
  grace: { dpopJkt: string | null; graceSeconds: number },
  now: number,
): boolean {
  return token.rotatedAt !== null && grace.graceSeconds > 0 && now - token.rotatedAt <= grace.graceSeconds && (token.rotatedJkt ?? null) === grace.dpopJkt
}

/**
 * Exchanges a refresh token for a new access token and a new refresh token.
 *
 * The presented token is marked used atomically before the new ones exist; presenting a used
 * token again is reuse: the family is revoked, so both the attacker's and the victim's tokens
 * stop working (RFC 9700 §4.14.2). Except a retry: the same client with the same DPoP key (a
 * sender-constrained presentation) within `refreshRetryGraceSeconds` of the rotation, while the
 * first answer's refresh token is unused, gets fresh tokens and the first answer is revoked.
 *
 * A `scope` parameter may narrow the new access token, never widen it (RFC 6749 §6); the refresh
 * token keeps the family's scope. When the policy in force has
 * narrowed the allowed scopes since the approval, a `scope` parameter naming a scope it no longer
 * allows is `invalid_scope` (the safer reading: never less than asked for without saying so);
 * without `scope`, the narrowed scope is issued and the response's `scope` states it.
 *
 * DPoP (RFC 9449 §5): a public client's refresh token is bound to its key and needs a proof by
 * it; a confidential client's is not bound, so it may rotate its key. The new access token is
 * bound to the key of this request's proof (Bearer without one).
 *
 * A `storage_class` parameter declares the client's token storage again (devicegate extension,
 * storage rules); a policy that refuses it answers `invalid_grant` with `devicegate_reason`.
 *
 * @throws {OAuthError} `invalid_grant` (unknown, another client's, revoked, expired or reused),
 *   `invalid_scope` (beyond the original grant, or beyond what the policy now allows),
 *   `invalid_target` (RFC 8707 §2), `invalid_request`.
 * @see https://www.rfc-editor.org/rfc/rfc9700#section-4.14.2
 */
export async function handle(input: GrantInput, deps: ProtocolDeps): Promise<TokenResponse> {
  const { client } = input
  const presented = requireParam(input.params, 'refresh_token')
  const tokenHash = sha256Hex(presented)
  // The token and its family in one read.
  const found = await deps.store.findRefreshTokenWithGrant(tokenHash)
  const invalid = (detail: string) => new OAuthError('invalid_grant', '"refresh_token" is invalid', { detail })
  if (!found || found.token.clientId !== client.id) throw invalid(found ? 'issued to another client' : 'unknown')
  const { token: current, grant: family } = found
  const now = deps.clock.nowSeconds()
  const reuseDetected = () =>
    deps.events?.record({
      type: 'refresh_token.reuse_detected',
      actor: `client:${client.id}`,
      clientId: client.id,
      subject: current.subject,
      ip: input.ctx.clientIp,
      grantId: current.grantId,
      details: { refreshTokenId: current.id, familyRevoked: true },
    })
  // Rotation leeway: only a sender-constrained presentation (a DPoP proof, or a confidential
  // client's authentication) can be told apart from a thief's; an unbound public client's cannot.
  const isSenderConstrained = client.isConfidential || input.dpopJkt !== null
  const grace = { dpopJkt: input.dpopJkt, graceSeconds: isSenderConstrained ? (client.refreshRetryGraceSeconds ?? 0) : 0 }
  if (current.rotatedAt !== null && !isRetryCandidate(current, grace, now)) {
    await deps.store.revokeGrant(current.grantId, now)
    await reuseDetected()
    throw invalid('refresh token reuse; token family revoked')
  }
  if (current.revokedAt !== null || current.grantRevokedAt !== null) throw invalid('revoked')
  if (current.expiresAt !== null && now >= current.expiresAt) throw invalid('expired')
  // RFC 9449 §5: a public client's DPoP-bound refresh token needs a proof with the same key. A
  // confidential client's refresh token is never key-bound (its authentication is the binding),
  // also one stored bound before that rule, so the client may rotate its DPoP key.
  if (!client.isConfidential && current.dpopJkt !== null && current.dpopJkt !== input.dpopJkt) {
    await deps.events?.record({
      type: 'dpop_proof.rejected',
      actor: `client:${client.id}`,
      clientId: client.id,
      subject: current.subject,
      ip: input.ctx.clientIp,
      grantId: current.grantId,
      details: { reason: 'key_mismatch', boundJkt: current.dpopJkt, presentedJkt: input.dpopJkt, tokenType: 'refresh_token' },
    })
    throw new OAuthError('invalid_grant', '"refresh_token" is bound to another key', { detail: 'dpop key mismatch' })
  }

  // Conditional approval: policy, account and client as they are now decide again.
  // Each access token is bound to the key of the proof that asked for it (RFC 9449 §5): for a
  // bound public refresh token that is its key (checked above), otherwise whatever proof came.
  const accessJkt = input.dpopJkt
  // Storage rules: a client that moved its tokens declares the new storage (devicegate extension).
  const storageClass = readStorageClass(input.params)
  const shaped = await enforcePolicyAtRefresh(deps, { client, family, scope: current.scope, dpopJkt: accessJkt, ip: input.ctx.clientIp, now, storageClass })
  const familyScope = parseScope(current.scope)
  let scope = current.scope
  if (input.params.scope !== undefined) {
    const requested = parseScope(input.params.scope)
    for (const s of requested)
      if (!familyScope.includes(s)) throw new OAuthError('invalid_scope', `scope "${s.slice(0, 64)}" exceeds the original grant`)
    scope = requested.join(' ')
  }
  // RFC 8707 §2.2: the new access token is for the family's resources, or those of them named here.
  const resources = resolveResources(client, readResources(input.params), family?.resources ?? [])
  const asked = scope
  if (shaped?.decision) {
    // A policy narrowed since the approval. Never silently (README "Scopes"): a scope this request
    // names that the policy no longer allows is `invalid_scope`, and nothing is rotated; without a
    // `scope` parameter the narrowed scope is issued and stated in the response (RFC 6749 §5.1).
    const allowed = narrowScope(scope, shaped.decision.constraints)
    if (input.params.scope !== undefined) {
      const refused = parseScope(scope).find((s) => !parseScope(allowed).includes(s))
      if (refused !== undefined) throw new OAuthError('invalid_scope', `scope "${refused.slice(0, 64)}" is no longer allowed by policy`)
    }
    scope = allowed
  }
  // CAEP token-claims-change (signals): the policy, not the client, took scopes away.
  const narrowedByPolicy = scope !== asked
  const claims = {
    client,
    subject: current.subject,
    grantId: current.grantId,
    issuedAt: now,
    ...(shaped ? { notAfter: shaped.accessNotAfter } : {}),
  }
  // How the approver authenticated: only JWTs and ID Tokens state it (one read, not for opaque tokens).
  const statesAuthentication = client.accessTokenFormat === 'jwt' || isOpenIdScope(scope)
  const authentication =
    statesAuthentication && family?.deviceGrantId ? ((await deps.store.findAuthContext(family.deviceGrantId))?.authentication ?? null) : null
  const access = await mintAccessToken({ ...claims, dpopJkt: accessJkt, scope, resources, authentication }, deps)
  // A public client's refresh token stays bound to its key, or is bound by its first proof.
  const refreshJkt = client.isConfidential ? null : (current.dpopJkt ?? input.dpopJkt)
  const refresh = mintRefreshToken({ ...claims, dpopJkt: refreshJkt, scope: current.scope, expiresAt: current.expiresAt ?? now + client.refreshTokenTtlSeconds }, deps)
  // The family's current key is its latest access token's (RFC 9449 §5: a confidential client
  // may present a new key at refresh); recorded with the rotation only when it moved.
  const keyMoved = family !== undefined && family.dpopJkt !== accessJkt
  // The CAEP token-claims-change is committed with the rotation (signals outbox), so a crash can
  // neither lose it nor send it for a rotation that did not happen.
  const signal = narrowedByPolicy
    ? { type: 'token.claims_changed', occurredAt: now, ref: current.grantId, target: null, payload: { claims: { scope }, previousScope: asked } }
    : undefined
  const rotated = await deps.store.rotateRefreshToken(
    tokenHash,
    now,
    { accessToken: access.record, refreshToken: refresh.record, ...(keyMoved ? { familyDpopJkt: accessJkt } : {}), ...(signal ? { signal } : {}) },
    grace,
  )
  if (!rotated.ok) {
    if (rotated.reason === 'reused') {
      // Lost a race with a concurrent rotation or retry by the same sender within the grace:
      // refused, but it is no sign of theft. Anything else is reuse.
      const latest = await deps.store.findRefreshTokenByHash(tokenHash)
      if (latest && isRetryCandidate(latest, grace, now)) throw invalid('concurrent retry by the same sender; nothing revoked')
      await deps.store.revokeGrant(current.grantId, now)
      await reuseDetected()
    }
    throw invalid(rotated.reason)
  }
  await deps.events?.record({
    type: 'token.refreshed',
    actor: `client:${client.id}`,
    clientId: client.id,
    subject: current.subject,
    ip: input.ctx.clientIp,
    grantId: current.grantId,
    details: {
      scope,
      jti: access.record.jti,
      previousRefreshTokenId: current.id,
      refreshTokenId: refresh.record.id,
      retry: rotated.retried,
      ...(narrowedByPolicy ? { narrowedByPolicy, previousScope: asked } : {}),
    },
  })
  // OpenID Connect Core §12.2: a refresh may return a new ID Token, without `nonce`.
  const idToken =
    current.subject !== null && isOpenIdScope(scope)
      ? await mintIdToken({ client, subject: current.subject, authentication, accessToken: access.token, sessionId: current.grantId }, deps)
      : undefined
  return tokenResponse(access, refresh, idToken)
}
