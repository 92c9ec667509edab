/**
 * Global Token Revocation (draft-parecki-oauth-global-token-revocation-06): a security tool or an
 * identity provider asks devicegate to revoke every token of one person.
 *
 * - §3.1/§3.2 request: `POST /global-token-revocation` with an `application/json` body
 *   `{ "sub_id": <RFC 9493 subject identifier> }`, authenticated (§3.2 allows an RFC 6750
 *   token) by an access token of a confidential client carrying the dedicated scope (default
 *   `global_token_revocation`; §7.1: a scope for this request only), Bearer or DPoP.
 * - Subject identifiers: `iss_sub` with devicegate's issuer (the token `sub`) **or with an
 *   upstream identity provider's issuer** and the person's subject there (§3.2: "the user
 *   identifier at the IdP"); `email` (every person with that address, case-insensitively);
 *   `opaque` (the person's id or login name); `aliases` (RFC 9493 §3.2.6: every identifier that
 *   names a person must name the same one). Other formats are 400.
 * - §3.3: every token family of the person is revoked (refresh and access tokens) and their
 *   open device authorizations denied; they must authenticate again. CAEP session-revoked
 *   events follow through the outbox (§5); each request is audited
 *   (`global_revocation.requested`, plus the revocation's own `token.revoked`).
 * - §3.4 responses: 204 No Content; 400 malformed request or unsupported identifier (in every
 *   format, a member with U+0000 or another control character is malformed), or a body that is
 *   not `application/json`; 401 invalid or missing token (RFC 6750 §3.1 challenge);
 *   403 missing scope or not a confidential client's own token; 404 no such person (§7.2: the
 *   endpoint is authenticated, so the answer may say so); 422 the person was found but their
 *   tokens could not be revoked (e.g. the database failed mid-way; nothing is reported revoked,
 *   the caller retries). Error bodies are RFC 6749 §5.2 JSON (`error`, `error_description`,
 *   `Cache-Control: no-store`): the draft defines no body, so devicegate's one error model is used.
 * @see https://datatracker.ietf.org/doc/html/draft-parecki-oauth-global-token-revocation-06
 */
import type { EventSink } from '../core/events.js'
import type { AuthenticatedToken } from '../protocol/bearer.js'
import { OAuthError } from '../protocol/errors.js'

/** Path of the endpoint. */
export const GLOBAL_REVOCATION_PATH = '/global-token-revocation'

/** A person named by one simple subject identifier (RFC 9493 §3.2). */
export type SubjectLookup = { issuer: string; sub: string } | { email: string } | { id: string }

/** What the handler needs. */
export interface GlobalRevocationDeps {
  issuer: string
  /** The subjects (token `sub`s) of the people an identifier names; empty when none. */
  findSubjects(by: SubjectLookup): Promise<string[]>
  /** Revokes every family of `subject` and denies their open device authorizations. @returns families revoked. */
  revokeUser(subject: string, actor: string, ip: string | null): Promise<number>
  events: EventSink | undefined
}

/** C0 controls, DEL and C1 controls: no login name, e-mail address, issuer or subject holds one. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

/**
 * The non-empty string member `k` (at most 1000 characters), or undefined when absent or not one.
 * @throws {OAuthError} 400 `invalid_request` when it holds a control character: a malformed
 *   identifier is an invalid request (§3.4.2) in every format, not an unknown person (404).
 */
function text(s: Record<string, unknown>, k: string): string | undefined {
  const v = s[k]
  if (typeof v !== 'string' || v.length === 0 || v.length > 1000) return undefined
  if (CONTROL.test(v)) throw new OAuthError('invalid_request', `"${k}" must not contain control characters`)
  return v
}

/** Reads one simple identifier. @throws {OAuthError} 400 `invalid_request` when malformed or unsupported. */
function lookupOf(s: Record<string, unknown>): SubjectLookup {
  switch (s.format) {
    case 'iss_sub': {
      const iss = text(s, 'iss')
      const sub = text(s, 'sub')
      if (iss === undefined || sub === undefined) throw new OAuthError('invalid_request', '"iss_sub" needs "iss" and "sub"')
      return { issuer: iss, sub }
    }
    case 'email': {
      const email = text(s, 'email')
      if (email === undefined || !/^[^\s@]+@[^\s@]+$/.test(email)) throw new OAuthError('invalid_request', '"email" needs an "email" address')
      return { email }
    }
    case 'opaque': {
      const id = text(s, 'id')
      if (id === undefined) throw new OAuthError('invalid_request', '"opaque" needs an "id"')
      return { id }
    }
    default:
      throw new OAuthError('invalid_request', `unsupported subject identifier format ${JSON.stringify(String(s.format).slice(0, 40))}`)
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * Handles one global token revocation request; see the module comment.
 * @returns nothing (the route answers 204).
 * @throws {OAuthError} 400 `invalid_request`; 404 `invalid_request` for an unknown person; 422
 *   `server_error` when the revocation failed.
 */
export async function handleGlobalRevocation(body: unknown, caller: AuthenticatedToken, ip: string | null, deps: GlobalRevocationDeps): Promise<void> {
  if (!isObject(body)) throw new OAuthError('invalid_request', 'the body must be a JSON object with "sub_id"')
  const subId = body.sub_id
  if (!isObject(subId)) throw new OAuthError('invalid_request', '"sub_id" must be a subject identifier object')
  let subjects: string[]
  if (subId.format === 'aliases') {
    const ids = subId.identifiers
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > 20 || !ids.every(isObject)) throw new OAuthError('invalid_request', '"aliases" needs "identifiers"')
    if (ids.some((i) => i.format === 'aliases')) throw new OAuthError('invalid_request', '"aliases" may not contain "aliases"')
    const found = new Set<string>()
    for (const lookup of ids.map(lookupOf)) for (const s of await deps.findSubjects(lookup)) found.add(s)
    // Aliases name one person (RFC 9493 §3.2.6): identifiers naming different people are refused.
    if (found.size > 1) throw new OAuthError('invalid_request', '"aliases" identifiers name different users')
    subjects = [...found]
  } else {
    subjects = await deps.findSubjects(lookupOf(subId))
  }
  if (subjects.length === 0) throw new OAuthError('invalid_request', 'no such user', { status: 404 })
  const actor = `client:${caller.client.id}`
  let grants = 0
  try {
    for (const subject of subjects) grants += await deps.revokeUser(subject, actor, ip)
  } catch (cause) {
    throw new OAuthError('server_error', 'unable to revoke the user\'s tokens; retry the request', { status: 422, cause, detail: 'global token revocation failed' })
  }
  for (const subject of subjects)
    await deps.events?.record({
      type: 'global_revocation.requested',
      actor,
      clientId: caller.client.id,
      subject,
      ip,
      details: { format: subId.format, grants },
    })
}
