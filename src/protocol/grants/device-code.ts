/**
 * The device_code grant: Device Access Token Request and Response (RFC 8628 §3.4–3.5).
 */
import { deviceGrantState } from '../../core/device-grant.js'
import { GRANT_TYPES, OFFLINE_ACCESS, parseScope } from '../../core/model.js'
import type { TokenBundle } from '../../storage/store.js'
import { recordId } from '../../system.js'
import { deviceCodeLookupKey } from '../device-code-key.js'
import type { ProtocolDeps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { enforcePolicyAtRedemption } from '../policy-enforcement.js'
import { authenticationAtApproval, isOpenIdScope, mintIdToken } from '../oidc.js'
import { requireParam } from '../params.js'
import { readResources, resolveResources } from '../resources.js'
import { mintAccessToken, mintRefreshToken, tokenResponse, type TokenResponse } from '../tokens.js'
import type { GrantInput } from './types.js'

export const grantType = GRANT_TYPES.deviceCode
export const parameters = ['device_code'] as const

/** Whether the user who decided a device code can still act: known and not disabled. */
function isApproverAllowed(subject: string | null, deps: ProtocolDeps): boolean {
  if (subject === null) return true
  const user = deps.users.get(subject)
  return user !== undefined && !user.disabled
}

/** RFC 8628 §3.5 `access_denied` for a code whose approver is now disabled or deleted. */
function approverNotAllowed(subject: string | null): OAuthError {
  return new OAuthError('access_denied', 'the approving user is no longer allowed', {
    detail: `approver ${subject ?? '(none)'} is disabled or deleted`,
  })
}

/**
 * The answer to a poll of a code still pending (RFC 8628 §3.5): the same every time, so one
 * instance is thrown for all of them (an OAuthError is never changed once made), sparing most
 * polls the construction of an Error.
 */
const AUTHORIZATION_PENDING = new OAuthError('authorization_pending', 'the user has not yet approved the request')

/** `slow_down` answers by polling interval in seconds, shared as {@link AUTHORIZATION_PENDING} is. */
const SLOW_DOWN_BY_INTERVAL = new Map<number, OAuthError>()

/** At most this many intervals keep a shared `slow_down` answer (they grow by 5 s per `slow_down`). */
const SLOW_DOWN_CACHED_INTERVALS = 64

/** RFC 8628 §3.5 `slow_down`, naming the polling interval the code now has (seconds). */
function slowDown(intervalSeconds: number): OAuthError {
  let err = SLOW_DOWN_BY_INTERVAL.get(intervalSeconds)
  if (err === undefined) {
    err = new OAuthError('slow_down', `poll no more than once every ${intervalSeconds} seconds`)
    if (SLOW_DOWN_BY_INTERVAL.size < SLOW_DOWN_CACHED_INTERVALS) SLOW_DOWN_BY_INTERVAL.set(intervalSeconds, err)
  }
  return err
}

/**
 * Whether a presentation of a redeemed device code repeats the redeeming poll: the same key
 * (the family's DPoP thumbprint, or both unbound) within one polling interval of the redemption.
 * The client is already known to be the same (checked first). Such a repeat is what a client
 * that double-polls or retries a lost response sends; it gets `invalid_grant` but revokes nothing.
 *
 * @param family The token family the code's redemption created (its `createdAt` is the redemption).
 * @param windowSeconds How long after the redemption a repeat counts as a duplicate, in seconds.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2
 */
export function isDuplicateOfRedemption(
  family: { createdAt: number; dpopJkt: string | null },
  dpopJkt: string | null,
  windowSeconds: number,
  now: number,
): boolean {
  return family.dpopJkt === dpopJkt && now - family.createdAt <= windowSeconds
}

/**
 * Answers one poll of the token endpoint for a device code.
 *
 * Outcomes follow RFC 8628 §3.5: while the code is pending, `slow_down` when polled faster than
 * the current interval (which then grows by 5 seconds for this device code and stays grown), else
 * `authorization_pending`; `slow_down` is a variant of pending, so an approved code answers with
 * its tokens even to an early poll. Then `access_denied` (described apart when the approver has
 * since been disabled or deleted) and `expired_token` (also for an approved code never redeemed
 * in time). An approved code yields tokens exactly once, across concurrent polls and instances.
 *
 * A later presentation of a redeemed code gets `invalid_grant`. It revokes the token family that
 * code issued (as RFC 6749 §4.1.2 advises for a reused authorization code) unless it repeats the
 * redeeming poll — same client, same DPoP key (or both unbound), within the client's polling
 * interval of the redemption ({@link isDuplicateOfRedemption}) — so a double poll or a retried
 * request cannot cost the client the tokens it just received.
 *
 * With `openid` in the granted scope the response carries an ID Token (OpenID Connect Core
 * §3.1.3.3) with the device authorization's `nonce`; JWT access tokens record the approval's
 * `auth_time`/`amr`/`acr`.
 *
 * @throws {OAuthError} the errors above; `invalid_grant` when the code is unknown, already
 *   redeemed, another client's, or bound to a DPoP key (devicegate extension) and the request
 *   carries no proof by that key; `invalid_request` without `device_code`.
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.5
 */
export async function handle(input: GrantInput, deps: ProtocolDeps): Promise<TokenResponse> {
  const { client } = input
  const deviceCode = requireParam(input.params, 'device_code')
  // A code of the wrong shape has no key and is answered as an unknown one.
  const key = deviceCodeLookupKey(deviceCode)
  const grant = key === undefined ? undefined : await deps.store.findDeviceGrantByDeviceCodeHash(key)
  if (!grant || grant.clientId !== client.id)
    throw new OAuthError('invalid_grant', '"device_code" is invalid', {
      detail: grant ? 'issued to another client' : key === undefined ? 'malformed' : 'unknown',
    })
  // devicegate extension of RFC 8628: a device code bound to a DPoP key at device authorization
  // is redeemed only with a proof by that key. Checked before the poll is recorded, so a thief's
  // attempt changes nothing for the rightful client.
  // The refusal is audited and raises `dpop_key_mismatch`: a bound code presented without its key
  // is most likely a stolen one.
  if (grant.dpopJkt !== null && grant.dpopJkt !== input.dpopJkt) {
    await deps.events?.record({
      type: 'dpop_proof.rejected',
      actor: `client:${client.id}`,
      clientId: client.id,
      subject: grant.subject,
      ip: input.ctx.clientIp,
      grantId: grant.grantId,
      details: { reason: 'key_mismatch', boundJkt: grant.dpopJkt, presentedJkt: input.dpopJkt, tokenType: 'device_code', deviceGrantId: grant.id },
    })
    throw new OAuthError('invalid_grant', '"device_code" is bound to another DPoP key', {
      detail: input.dpopJkt === null ? 'bound device code redeemed without a DPoP proof' : 'dpop key mismatch',
    })
  }
  // RFC 8707 §2.2: a `resource` here may narrow what the device authorization named, never add to it.
  const resources = resolveResources(client, readResources(input.params), grant.resources ?? [])
  const now = deps.clock.nowSeconds()
  const state = deviceGrantState(grant, now)
  // RFC 8628 §3.5: `slow_down` is a variant of `authorization_pending`, so only a pending code is
  // throttled; an approved code answers with its tokens however early the poll.
  if (state === 'pending') {
    const poll = await deps.store.registerPoll(grant.id, now)
    if (poll.tooFast) {
      // A signal, not an audit record: a client hammering the endpoint must not write per poll.
      await deps.events?.record({
        type: 'device_code.polled_too_fast',
        clientId: client.id,
        ip: input.ctx.clientIp,
        details: { deviceGrantId: grant.id, intervalSeconds: poll.intervalSeconds, slowDowns: Math.round((poll.intervalSeconds - client.pollIntervalSeconds) / 5) },
      })
      throw slowDown(poll.intervalSeconds)
    }
  }

  switch (state) {
    case 'redeemed': {
      const family = grant.grantId === null ? undefined : await deps.store.findGrant(grant.grantId)
      const duplicate = family !== undefined && isDuplicateOfRedemption(family, input.dpopJkt, client.pollIntervalSeconds, now)
      if (!duplicate && grant.grantId) await deps.store.revokeGrant(grant.grantId, now)
      await deps.events?.record({
        type: 'device_code.replayed',
        actor: `client:${client.id}`,
        clientId: client.id,
        subject: grant.subject,
        ip: input.ctx.clientIp,
        grantId: grant.grantId,
        details: { deviceGrantId: grant.id, familyRevoked: !duplicate && grant.grantId !== null, duplicate },
      })
      throw new OAuthError('invalid_grant', '"device_code" has already been used', {
        detail: duplicate ? 'repeated by the redeeming client and key; nothing revoked' : 'replay; token family revoked',
      })
    }
    case 'denied':
      // Disabling or deleting the approver denies their open device codes (central revocation):
      // say so rather than blame the user; only that the account can no longer act is told.
      if (!isApproverAllowed(grant.subject, deps)) throw approverNotAllowed(grant.subject)
      throw new OAuthError('access_denied', 'the user denied the request')
    case 'expired':
      throw new OAuthError('expired_token', '"device_code" has expired')
    case 'pending':
      throw AUTHORIZATION_PENDING
    case 'approved':
      break
  }

  // The approver may have been disabled or deleted since (disabling denies their open codes, but
  // a change made on another instance or in the configuration may not have reached this code
  // yet): no tokens on their authority.
  if (!isApproverAllowed(grant.subject, deps)) throw approverNotAllowed(grant.subject)
  // Conditional approval: decided again now, and its constraints shape the tokens.
  const shaped = await enforcePolicyAtRedemption(deps, { client, grant, dpopJkt: input.dpopJkt, now })
  const grantId = recordId(deps.random)
  const subject = grant.subject
  const familyExpiresAt = Math.min(now + client.refreshTokenTtlSeconds, shaped.familyNotAfter)
  // How the approver authenticated (OpenID Connect Core §2), recorded in the access token too.
  // Recorded at approval by the verification service; derived for an approval recorded without it.
  const context = subject === null ? undefined : await deps.store.findAuthContext(grant.id)
  const authentication =
    subject === null ? null : (context?.authentication ?? authenticationAtApproval(grant, shaped.decision?.facts.mfaDone ?? false, now))
  const claims = { client, subject, scope: shaped.scope, grantId, issuedAt: now, dpopJkt: input.dpopJkt, notAfter: shaped.accessNotAfter, resources }
  const access = await mintAccessToken({ ...claims, authentication }, deps)
  const wantsRefresh =
    shaped.refreshAllowed &&
    client.grantTypes.includes(GRANT_TYPES.refreshToken) &&
    (client.refreshTokenIssuance === 'always' || parseScope(shaped.scope).includes(OFFLINE_ACCESS))
  // RFC 9449 §5: a public client's refresh token is bound to its DPoP key; a confidential client's
  // is not (client authentication already sender-constrains it), so it may rotate its key.
  const refreshJkt = client.isConfidential ? null : input.dpopJkt
  const refresh = wantsRefresh ? mintRefreshToken({ ...claims, dpopJkt: refreshJkt, expiresAt: familyExpiresAt }, deps) : undefined
  const bundle: TokenBundle = {
    grant: {
      id: grantId,
      clientId: client.id,
      subject,
      scope: shaped.scope,
      createdAt: now,
      revokedAt: null,
      deviceGrantId: grant.id,
      expiresAt: refresh ? familyExpiresAt : access.record.expiresAt,
      dpopJkt: input.dpopJkt,
      // The family keeps what was authorized, so a refresh may ask for any of it again.
      resources: grant.resources ?? [],
    },
    accessToken: access.record,
    ...(refresh ? { refreshToken: refresh.record } : {}),
  }
  if (!(await deps.store.redeemDeviceGrant(grant.id, now, bundle))) {
    // Lost a race with a concurrent poll, or expired in between: never a second token response.
    throw now >= grant.expiresAt
      ? new OAuthError('expired_token', '"device_code" has expired')
      : new OAuthError('invalid_grant', '"device_code" has already been used')
  }
  if (shaped.singleSession && subject !== null) await deps.store.revokeOtherSessions(subject, client.id, grantId, now)
  let idToken: string | undefined
  if (authentication !== null && subject !== null) {
    if (!context?.authentication) await deps.store.saveAuthenticationContext(grant.id, authentication)
    if (isOpenIdScope(bundle.grant.scope))
      idToken = await mintIdToken({ client, subject, authentication, nonce: context?.nonce ?? null, accessToken: access.token, sessionId: grantId }, deps)
  }
  await deps.events?.record({
    type: 'token.issued',
    actor: `client:${client.id}`,
    clientId: client.id,
    subject,
    ip: input.ctx.clientIp,
    grantId,
    details: { grantType, deviceGrantId: grant.id, scope: bundle.grant.scope, jti: access.record.jti, refreshToken: refresh !== undefined, dpopBound: input.dpopJkt !== null, idToken: idToken !== undefined },
  })
  return tokenResponse(access, refresh, idToken)
}
