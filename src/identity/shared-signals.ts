/**
 * Shared Signals receiver: Security Event Tokens (RFC 8417) from configured
 * transmitters (OpenID Shared Signals Framework 1.0), delivered by push (RFC 8935) or fetched by
 * poll (RFC 8936), verified with `jose` against the transmitter's JWKS, and applied to people.
 *
 * Verification (RFC 8935 §2 / RFC 8417 §2): the SET's `iss` names a configured transmitter
 * (`invalid_issuer`), its signature verifies with an asymmetric key of that transmitter's JWKS
 * (`invalid_key`; `alg: none` and HMAC are refused), `aud` includes the configured audience
 * (`invalid_audience`), `iat` is present, not in the future (60 s leeway) and not older than
 * `max_age_seconds`, `jti` is present and `events` has at least one member (`invalid_request`).
 * `typ`, when present, must be `secevent+jwt`.
 *
 * Once: each (`iss`, `jti`) is recorded before its effect is applied (one INSERT … ON CONFLICT DO
 * NOTHING), so a retransmission — a transmitter re-sends a SET whose 202 it missed — is
 * acknowledged and changes nothing (RFC 8935 §2.2 asks receivers to accept retransmissions).
 *
 * Effects (event type URIs of CAEP 1.0 and RISC 1.0):
 * - CAEP `session-revoked`, `credential-change`, RISC `sessions-revoked`,
 *   `account-credential-change-required`: every grant of the person is revoked.
 * - CAEP `risk-level-change` (`current_level` LOW / MEDIUM / HIGH) sets the person's risk to the
 *   transmitter's `risk_levels`; CAEP `assurance-level-change` sets it to `medium` when the level
 *   decreased and to `low` when it increased. At `revoke_at_risk` or above, grants are revoked too.
 * - CAEP `device-compliance-change` records the device (its subject `id`/`sub`, the DPoP key
 *   thumbprint devicegate registers devices by) as compliant or not; a not-compliant device no
 *   longer counts as a registered device for policy.
 * - RISC `account-disabled` / `account-enabled` / `account-purged` disable, re-enable or delete the
 *   person (disabling and deleting revoke, as `orphaned_token`).
 * - RISC `identifier-changed` sets the person's email (and user name, when it was that email) to
 *   `new-value`.
 * Anything else — and any event type the transmitter is not configured to send — is acknowledged,
 * audited and changes nothing. Every SET is audited (`security_event.received`) with its `jti`
 * and effect.
 *
 * Subjects (RFC 9493): `iss_sub` (the upstream sign-in key), `email`, `opaque` (person id or
 * externalId), `account` (`acct:` user name), and `complex` (its `user`, or `device`), taken from
 * `sub_id` or from the event's `subject`. An unknown subject is acknowledged and changes nothing.
 */
import { createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'
import type { EventSink } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import type { TransmitterConfig } from '../config/identity.js'
import type { PeopleStore } from '../storage/store.js'
import { PeopleError, type Person, type PeopleService } from './people.js'

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/'
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/'

/** Event types devicegate acts on (the default `events` of a transmitter). */
export const HANDLED_EVENTS = [
  `${CAEP}session-revoked`,
  `${CAEP}credential-change`,
  `${CAEP}assurance-level-change`,
  `${CAEP}risk-level-change`,
  `${CAEP}device-compliance-change`,
  `${RISC}account-disabled`,
  `${RISC}account-enabled`,
  `${RISC}account-purged`,
  `${RISC}identifier-changed`,
  `${RISC}sessions-revoked`,
  `${RISC}account-credential-change-required`,
] as const

/** RFC 8935 §2.3 error codes. */
export type SetErrorCode = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience' | 'authentication_failed' | 'access_denied'

/** A SET refused (RFC 8935 §2.3): `err` and a description for the transmitter. */
export class SetError extends Error {
  override readonly name = 'SetError'
  constructor(
    readonly err: SetErrorCode,
    readonly description: string,
  ) {
    super(`${err}: ${description}`)
  }
}

/** Asymmetric JWS algorithms accepted for SETs. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']

/** What {@link SharedSignalsReceiver} needs. */
export interface ReceiverDeps {
  transmitters: readonly TransmitterConfig[]
  /** Oldest acceptable `iat`, in seconds. */
  maxAgeSeconds: number
  people: PeopleService
  store: PeopleStore
  clock: Clock
  events: EventSink
  /** Replaces `fetch` for JWKS and poll requests (tests). */
  fetch?: typeof fetch
}

/** The outcome of one accepted SET. */
export interface ReceivedSet {
  issuer: string
  jti: string
  /** `applied:<what>`, `retransmission`, `ignored:<why>`… as audited. */
  effect: string
}

type Subject = Record<string, unknown>

/** Receives, verifies and applies SETs. */
export class SharedSignalsReceiver {
  readonly #deps: ReceiverDeps
  readonly #jwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>()

  constructor(deps: ReceiverDeps) {
    this.#deps = deps
  }

  transmitter(issuer: string): TransmitterConfig | undefined {
    return this.#deps.transmitters.find((t) => t.issuer === issuer)
  }

  #keys(t: TransmitterConfig): ReturnType<typeof createRemoteJWKSet> {
    let keys = this.#jwks.get(t.issuer)
    if (keys === undefined) {
      keys = createRemoteJWKSet(new URL(t.jwksUri), { timeoutDuration: 5000, ...(this.#deps.fetch ? { [customFetch]: this.#deps.fetch } : {}) })
      this.#jwks.set(t.issuer, keys)
    }
    return keys
  }

  /**
   * Verifies one SET (RFC 8417, RFC 8935 §2): see the module comment for each check.
   * @param via `push` or `poll`: a transmitter configured for poll is not authorised to push (`access_denied`).
   * @param authorization The push request's `Authorization` header, checked when the transmitter requires one.
   * @throws {SetError} with the RFC 8935 §2.3 code.
   */
  async verify(jwt: string, via: 'push' | 'poll', authorization?: string): Promise<{ transmitter: TransmitterConfig; payload: JWTPayload }> {
    let unverified: JWTPayload
    try {
      decodeProtectedHeader(jwt)
      unverified = decodeJwt(jwt)
    } catch {
      throw new SetError('invalid_request', 'the body is not a signed JWT')
    }
    const transmitter = typeof unverified.iss === 'string' ? this.transmitter(unverified.iss) : undefined
    if (transmitter === undefined) throw new SetError('invalid_issuer', 'unknown issuer')
    if (via === 'push') {
      if (transmitter.delivery.method !== 'push') throw new SetError('access_denied', 'this transmitter is configured for poll delivery')
      if (transmitter.delivery.authorization !== undefined && authorization !== transmitter.delivery.authorization)
        throw new SetError('authentication_failed', 'the Authorization header is missing or wrong')
    }
    let payload: JWTPayload
    let typ: string | undefined
    try {
      const verified = await jwtVerify(jwt, this.#keys(transmitter), { issuer: transmitter.issuer, algorithms: ALGORITHMS })
      payload = verified.payload
      typ = verified.protectedHeader.typ
    } catch (err) {
      if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'iss') throw new SetError('invalid_issuer', 'issuer mismatch')
      if (err instanceof joseErrors.JWTExpired) throw new SetError('invalid_request', 'the SET has expired')
      if (err instanceof joseErrors.JOSEAlgNotAllowed) throw new SetError('invalid_key', 'signing algorithm not accepted')
      if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JWKSMultipleMatchingKeys)
        throw new SetError('invalid_key', 'the signature does not verify with the transmitter\'s keys')
      if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || err instanceof TypeError)
        throw new SetError('invalid_key', 'the transmitter\'s keys could not be fetched')
      throw new SetError('invalid_request', 'the SET is malformed')
    }
    if (typ !== undefined && typ.toLowerCase() !== 'secevent+jwt' && typ.toLowerCase() !== 'application/secevent+jwt') throw new SetError('invalid_request', '"typ" must be secevent+jwt')
    const aud = payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud]
    if (!aud.includes(transmitter.audience)) throw new SetError('invalid_audience', 'the SET is not addressed to this receiver')
    const now = this.#deps.clock.nowSeconds()
    if (typeof payload.iat !== 'number') throw new SetError('invalid_request', '"iat" is required')
    if (payload.iat > now + 60) throw new SetError('invalid_request', '"iat" is in the future')
    if (payload.iat < now - this.#deps.maxAgeSeconds) throw new SetError('invalid_request', 'the SET is too old')
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) throw new SetError('invalid_request', '"jti" is required')
    const events = payload.events
    if (events === null || typeof events !== 'object' || Array.isArray(events) || Object.keys(events).length === 0)
      throw new SetError('invalid_request', '"events" must be an object with at least one event')
    return { transmitter, payload }
  }

  /**
   * Verifies a SET and, unless it is a retransmission, applies its events. Audits it either way.
   * @throws {SetError} for a SET that must be refused (nothing is recorded or changed).
   */
  async receive(jwt: string, via: 'push' | 'poll', authorization?: string): Promise<ReceivedSet> {
    const { transmitter, payload } = await this.verify(jwt, via, authorization)
    const jti = payload.jti!
    const events = payload.events as Record<string, Record<string, unknown>>
    const types = Object.keys(events)
    const now = this.#deps.clock.nowSeconds()
    const first = await this.#deps.store.recordSecurityEvent(transmitter.issuer, jti, types, 'applying', now)
    if (!first) {
      await this.#audit(transmitter, jti, types, 'retransmission', via)
      return { issuer: transmitter.issuer, jti, effect: 'retransmission' }
    }
    const effects: string[] = []
    for (const type of types) {
      const event = events[type]
      effects.push(await this.#apply(transmitter, type, event !== null && typeof event === 'object' ? event : {}, payload))
    }
    const effect = effects.join('; ')
    await this.#deps.store.setSecurityEventEffect(transmitter.issuer, jti, effect)
    await this.#audit(transmitter, jti, types, effect, via)
    return { issuer: transmitter.issuer, jti, effect }
  }

  async #audit(t: TransmitterConfig, jti: string, types: string[], effect: string, via: string): Promise<void> {
    await this.#deps.events.record({
      type: 'security_event.received',
      actor: `ssf:${t.issuer}`,
      details: { issuer: t.issuer, jti, events: types, effect, via },
    })
  }

  async #apply(t: TransmitterConfig, type: string, event: Record<string, unknown>, payload: JWTPayload): Promise<string> {
    const accepted = t.events ?? HANDLED_EVENTS
    if (!(HANDLED_EVENTS as readonly string[]).includes(type)) return `ignored:unhandled_event`
    if (!accepted.includes(type)) return `ignored:not_accepted_from_transmitter`
    const name = type.slice(type.lastIndexOf('/') + 1)
    const subject = (payload.sub_id ?? event.subject) as Subject | undefined
    const actor = `ssf:${t.issuer}`
    const reason = `${type.startsWith(CAEP) ? 'caep' : 'risc'}:${name}`
    if (name === 'device-compliance-change') {
      const deviceId = deviceOf(subject)
      const status = event.current_status
      if (deviceId === undefined || (status !== 'compliant' && status !== 'not-compliant')) return 'ignored:bad_event'
      await this.#deps.store.setDeviceCompliance({ deviceId, status, issuer: t.issuer, updatedAt: this.#deps.clock.nowSeconds() })
      return `applied:device_${status}`
    }
    const person = this.#personOf(subject)
    if (person === undefined) return 'ignored:subject_unknown'
    const { people } = this.#deps
    try {
      switch (name) {
        case 'session-revoked':
        case 'credential-change':
        case 'sessions-revoked':
        case 'account-credential-change-required': {
          const n = await people.revokeGrants(person.id, reason, actor)
          return `applied:revoked_grants=${n}`
        }
        case 'risk-level-change':
        case 'assurance-level-change': {
          const level = name === 'risk-level-change' ? String(event.current_level ?? '').toLowerCase() : event.change_direction === 'decrease' ? 'medium' : event.change_direction === 'increase' ? 'low' : ''
          if (level !== 'low' && level !== 'medium' && level !== 'high') return 'ignored:bad_event'
          const risk = t.riskLevels[level]
          const revoke = t.revokeAtRisk !== undefined && risk >= t.revokeAtRisk
          const n = await people.setRisk(person.id, risk, actor, { revoke, reason })
          return `applied:risk=${risk}${revoke ? `,revoked_grants=${n}` : ''}`
        }
        case 'account-disabled':
          return `applied:disabled,revoked_grants=${await people.setStatus(person.id, 'disabled', actor, null, 'ssf')}`
        case 'account-enabled':
          await people.setStatus(person.id, 'active', actor, null, 'ssf')
          return 'applied:enabled'
        case 'account-purged':
          return `applied:deleted,revoked_grants=${await people.setStatus(person.id, 'deleted', actor, null, 'ssf')}`
        case 'identifier-changed': {
          const next = event['new-value']
          if (typeof next !== 'string' || next.length === 0 || next.length > 256) return 'ignored:bad_event'
          const email = next.includes('@') ? next.toLowerCase() : person.email
          const userName = person.userName === person.email && email !== null ? email : person.userName
          await people.update({ ...person, email, userName }, actor, 'ssf')
          return 'applied:identifier_changed'
        }
        default:
          return 'ignored:unhandled_event'
      }
    } catch (err) {
      if (err instanceof PeopleError) return `ignored:${err.code}`
      throw err
    }
  }

  /** The person an RFC 9493 subject identifier names, when exactly one does. */
  #personOf(subject: Subject | undefined): Person | undefined {
    if (subject === undefined || subject === null || typeof subject !== 'object') return undefined
    const dir = this.#deps.people.directory
    const all = dir.all().filter((p) => p.status !== 'deleted')
    const one = (list: Person[]) => (list.length === 1 ? list[0] : undefined)
    switch (subject.format) {
      case 'complex':
        return this.#personOf(subject.user as Subject | undefined)
      case 'iss_sub':
        return one(all.filter((p) => p.upstreamIssuer === subject.iss && p.upstreamSub === subject.sub))
      case 'email':
        return typeof subject.email === 'string' ? one(all.filter((p) => p.email !== null && p.email === (subject.email as string).toLowerCase())) : undefined
      case 'opaque':
        return typeof subject.id === 'string' ? one(all.filter((p) => p.id === subject.id || p.externalId === subject.id)) : undefined
      case 'account': {
        const uri = typeof subject.uri === 'string' ? subject.uri.replace(/^acct:/, '') : undefined
        return uri === undefined ? undefined : dir.byUserName(uri)
      }
      default:
        return undefined
    }
  }

  /**
   * One poll of an RFC 8936 transmitter: acknowledges what the last poll accepted, reports errors
   * for what it refused (`setErrs`), and repeats while `moreAvailable` (at most 10 rounds).
   * @returns SETs accepted and refused in this call.
   */
  async poll(t: TransmitterConfig): Promise<{ accepted: number; refused: number }> {
    if (t.delivery.method !== 'poll') throw new TypeError(`${t.issuer} is not a poll transmitter`)
    const delivery = t.delivery
    const doFetch = this.#deps.fetch ?? fetch
    let ack: string[] = []
    let setErrs: Record<string, { err: string; description: string }> = {}
    let accepted = 0
    let refused = 0
    for (let round = 0; round < 10; round++) {
      const res = await doFetch(delivery.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...(delivery.authorization ? { authorization: delivery.authorization } : {}) },
        body: JSON.stringify({ ack, ...(Object.keys(setErrs).length ? { setErrs } : {}), maxEvents: delivery.maxEvents, returnImmediately: true }),
        signal: AbortSignal.timeout(10_000),
      })
      if (!res.ok) throw new Error(`poll of ${t.issuer} answered ${res.status}`)
      const body = (await res.json()) as { sets?: Record<string, string>; moreAvailable?: boolean }
      ack = []
      setErrs = {}
      for (const [jti, set] of Object.entries(body.sets ?? {})) {
        try {
          await this.receive(set, 'poll')
          ack.push(jti)
          accepted++
        } catch (err) {
          if (!(err instanceof SetError)) throw err
          setErrs[jti] = { err: err.err, description: err.description }
          refused++
        }
      }
      if (!body.moreAvailable && ack.length === 0 && Object.keys(setErrs).length === 0) break
      if (!body.moreAvailable) {
        // Acknowledge the last batch without asking for more.
        await doFetch(delivery.endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', ...(delivery.authorization ? { authorization: delivery.authorization } : {}) },
          body: JSON.stringify({ ack, ...(Object.keys(setErrs).length ? { setErrs } : {}), maxEvents: 0, returnImmediately: true }),
          signal: AbortSignal.timeout(10_000),
        })
        break
      }
    }
    return { accepted, refused }
  }
}

/** The device identifier of a subject (`complex.device`, or a device-only subject). */
function deviceOf(subject: Subject | undefined): string | undefined {
  if (subject === undefined || subject === null || typeof subject !== 'object') return undefined
  const device = (subject.format === 'complex' ? subject.device : subject) as Subject | undefined
  if (device === undefined || device === null || typeof device !== 'object') return undefined
  const id = device.id ?? device.sub
  return typeof id === 'string' && id.length > 0 && id.length <= 256 ? id : undefined
}
