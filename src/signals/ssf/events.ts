/**
 * Security Event Tokens for Shared Signals receivers: CAEP 1.0 event types, SSF 1.0 subject
 * identifiers (RFC 9493 formats), and SET signing (RFC 8417, `typ: secevent+jwt`).
 */
import { SignJWT } from 'jose'
import type { ActiveSigningKey } from '../../protocol/keys.js'
import type { OutboxEvent } from '../../storage/store.js'

/** CAEP 1.0 and SSF 1.0 event-type URIs devicegate transmits. */
export const EVENT_TYPES = {
  sessionRevoked: 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
  tokenClaimsChange: 'https://schemas.openid.net/secevent/caep/event-type/token-claims-change',
  credentialChange: 'https://schemas.openid.net/secevent/caep/event-type/credential-change',
  verification: 'https://schemas.openid.net/secevent/ssf/event-type/verification',
} as const

/** Event types a stream may request (`events_supported`, SSF 1.0 §8.1.1). */
export const EVENTS_SUPPORTED: readonly string[] = [EVENT_TYPES.sessionRevoked, EVENT_TYPES.tokenClaimsChange, EVENT_TYPES.credentialChange]

/** A subject identifier (RFC 9493 §3, SSF 1.0 §3): `format` plus its members. */
export type SubjectIdentifier = { format: string } & Record<string, unknown>

/** Subject formats accepted in add/remove subject requests. */
export const SUBJECT_FORMATS = ['iss_sub', 'email', 'opaque', 'complex', 'aliases'] as const

/** Members of a `complex` subject (SSF 1.0 §3.2). */
const COMPLEX_MEMBERS = ['user', 'device', 'session', 'application', 'tenant', 'org_unit', 'group'] as const

/**
 * Checks a subject identifier's shape (RFC 9493 §3.2; SSF 1.0 §3.2 `complex`).
 * @returns an error description, or undefined when valid.
 */
export function checkSubject(value: unknown, depth = 0): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'a subject is a JSON object'
  const s = value as Record<string, unknown>
  const str = (k: string) => typeof s[k] === 'string' && (s[k] as string).length > 0 && (s[k] as string).length <= 1000
  switch (s.format) {
    case 'iss_sub':
      return str('iss') && str('sub') ? undefined : '"iss_sub" needs "iss" and "sub"'
    case 'email':
      return str('email') && /^[^\s@]+@[^\s@]+$/.test(s.email as string) ? undefined : '"email" needs an "email" address'
    case 'opaque':
      return str('id') ? undefined : '"opaque" needs an "id"'
    case 'aliases': {
      if (depth > 0) return '"aliases" may not be nested'
      const ids = s.identifiers
      if (!Array.isArray(ids) || ids.length === 0 || ids.length > 20) return '"aliases" needs "identifiers"'
      for (const id of ids) {
        if ((id as { format?: unknown })?.format === 'aliases') return '"aliases" may not contain "aliases"'
        const e = checkSubject(id, depth + 1)
        if (e) return e
      }
      return undefined
    }
    case 'complex': {
      if (depth > 0) return '"complex" may not be nested'
      const members = Object.keys(s).filter((k) => k !== 'format')
      if (members.length === 0) return '"complex" needs at least one member'
      for (const m of members) {
        if (!(COMPLEX_MEMBERS as readonly string[]).includes(m)) return `"complex" has no member "${m.slice(0, 40)}"`
        const e = checkSubject(s[m], depth + 1)
        if (e) return e
      }
      return undefined
    }
    default:
      return `unsupported subject format ${JSON.stringify(String(s.format).slice(0, 40))}`
  }
}

/** A subject with its e-mail addresses lower-cased (they compare case-insensitively), at any depth. */
export function normalizeSubject<T>(subject: T): T {
  if (Array.isArray(subject)) return subject.map(normalizeSubject) as T
  if (subject === null || typeof subject !== 'object') return subject
  const o = subject as Record<string, unknown>
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [k, o.format === 'email' && k === 'email' && typeof v === 'string' ? v.toLowerCase() : normalizeSubject(v)]),
  ) as T
}

/** Canonical text of a subject identifier (sorted keys), its key in the stream's subject list. */
export function subjectKey(subject: SubjectIdentifier): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sort) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])])) : v
  return JSON.stringify(sort(subject))
}

/** The simple identifiers an event is about: its user (iss_sub, email), session, client, device. */
export interface EventSubjects {
  user: SubjectIdentifier | null
  session: SubjectIdentifier | null
  application: SubjectIdentifier | null
  device: SubjectIdentifier | null
  /** Every simple identifier above, with the user's e-mail as a separate one. */
  all: SubjectIdentifier[]
}

/**
 * The subjects of an outbox event. The user is named by `iss_sub` (the devicegate issuer and the
 * username) and, when the address is known, also by `email` (as `aliases`); the token family by
 * an `opaque` session id (the grant id); the client by an `opaque` application id.
 */
export function subjectsOf(event: OutboxEvent, issuer: string, emailOf: (username: string) => string | undefined): EventSubjects {
  const issSub = event.subject !== null ? { format: 'iss_sub', iss: issuer, sub: event.subject } : null
  const email = event.subject !== null ? emailOf(event.subject) : undefined
  const emailId = email ? { format: 'email', email: email.toLowerCase() } : null
  const user = issSub && emailId ? { format: 'aliases', identifiers: [issSub, emailId] } : issSub
  const session = event.grantId !== null ? { format: 'opaque', id: event.grantId } : null
  const application = event.clientId !== null ? { format: 'opaque', id: event.clientId } : null
  const jkt = typeof event.payload.jkt === 'string' ? event.payload.jkt : null
  const device = jkt !== null ? { format: 'opaque', id: jkt } : null
  return { user, session, application, device, all: ([issSub, emailId, session, application, device] as (SubjectIdentifier | null)[]).filter((s): s is SubjectIdentifier => s !== null) }
}

/** Whether a receiver-given subject names any of the event's subjects (RFC 9493 matching by value). */
export function subjectMatches(subject: Record<string, unknown>, event: EventSubjects): boolean {
  const keys = new Set(event.all.map(subjectKey))
  const matchOne = (s: unknown): boolean => {
    const o = s as Record<string, unknown>
    if (o.format === 'aliases') return (o.identifiers as unknown[]).some(matchOne)
    if (o.format === 'complex') return Object.entries(o).filter(([k]) => k !== 'format').every(([, v]) => matchOne(v))
    return keys.has(subjectKey(o as SubjectIdentifier))
  }
  // E-mail addresses compare case-insensitively (event subjects are lower-cased).
  return matchOne(normalizeSubject(subject))
}

/** The SSF `sub_id` of an event (SSF 1.0 §3.2 `complex` with the members that are known). */
export function subIdOf(s: EventSubjects): SubjectIdentifier | null {
  const members = Object.fromEntries(
    (['user', 'device', 'session', 'application'] as const).filter((k) => s[k] !== null).map((k) => [k, s[k]]),
  )
  return Object.keys(members).length === 0 ? null : { format: 'complex', ...members }
}

/**
 * The event-type URI and event body (CAEP 1.0) of an outbox event, or null when it has none:
 * - `grant.revoked` → `session-revoked` (CAEP §3.1), `initiating_entity` when known;
 * - `user.revoked` (every family of one user revoked at once, written ahead of their
 *   `grant.revoked` rows) → `session-revoked` whose `sub_id` names the user only: all of the
 *   user's sessions, so a receiver can act on the first SET of a mass revocation;
 * - `token.claims_changed` → `token-claims-change` (CAEP §3.2) with the new `claims`;
 * - `device.retired` → `credential-change` (CAEP §3.3): the device's DPoP key was revoked
 *   (`credential_type: app`, the key of an installation of a client app; `change_type: revoke`).
 * - `ssf.verification` → SSF 1.0 §8.1.4 `verification` with the receiver's `state`.
 */
export function caepEventOf(event: OutboxEvent): { type: string; body: Record<string, unknown> } | null {
  const event_timestamp = event.occurredAt
  switch (event.type) {
    case 'grant.revoked':
    case 'user.revoked':
      return {
        type: EVENT_TYPES.sessionRevoked,
        body: { event_timestamp, ...(typeof event.payload.initiatingEntity === 'string' ? { initiating_entity: event.payload.initiatingEntity } : {}) },
      }
    case 'token.claims_changed':
      return { type: EVENT_TYPES.tokenClaimsChange, body: { event_timestamp, claims: event.payload.claims ?? {} } }
    case 'device.retired':
      return {
        type: EVENT_TYPES.credentialChange,
        body: { event_timestamp, credential_type: 'app', change_type: 'revoke', ...(typeof event.payload.label === 'string' ? { friendly_name: event.payload.label } : {}) },
      }
    case 'ssf.verification':
      return { type: EVENT_TYPES.verification, body: typeof event.payload.state === 'string' ? { state: event.payload.state } : {} }
    default:
      return null
  }
}

/**
 * Signs a Security Event Token (RFC 8417 §2.2; SSF 1.0 §4): header `typ: secevent+jwt` with the
 * server's active key; claims `iss`, `aud`, `iat`, `jti`, `txn` (the outbox event id, the same in
 * every stream), `sub_id` and `events` with exactly one event.
 */
export async function signSet(
  input: { issuer: string; audience: string | string[]; jti: string; iat: number; txn: string; subId: SubjectIdentifier | null; eventType: string; body: Record<string, unknown> },
  key: ActiveSigningKey,
): Promise<string> {
  return new SignJWT({
    jti: input.jti,
    txn: input.txn,
    ...(input.subId ? { sub_id: input.subId } : {}),
    events: { [input.eventType]: input.body },
  })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'secevent+jwt' })
    .setIssuer(input.issuer)
    .setAudience(input.audience)
    .setIssuedAt(input.iat)
    .sign(key.privateKey)
}
