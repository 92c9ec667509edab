/**
 * Global Token Revocation (draft-parecki-oauth-global-token-revocation): a security tool or an
 * identity provider asks devicegate to revoke every token of one person.
 *
 * Request: `POST /global-token-revocation` with a JSON body `{ "sub_id": <subject identifier> }`
 * (RFC 9493: `iss_sub` with devicegate's issuer, `email`, or `opaque` naming the username), and
 * an access token of a confidential client carrying the dedicated scope (default
 * `global_token_revocation`).
 *
 * Answers: 204 No Content once every token family of the user is revoked and their open device
 * authorizations denied (session-revoked events follow through the outbox); 400
 * `invalid_request` for a malformed body or an unsupported identifier format; 401/403 per RFC
 * 6750; 404 when the identifier names no user devicegate knows (nor any grant of one). Every
 * accepted request is audited (`global_revocation.requested`, plus the revocation's own
 * `token.revoked`).
 */
import type { EventSink } from '../core/events.js'
import type { AuthenticatedToken } from '../protocol/bearer.js'
import { OAuthError } from '../protocol/errors.js'

/** Path of the endpoint. */
export const GLOBAL_REVOCATION_PATH = '/global-token-revocation'

/** What the handler needs. */
export interface GlobalRevocationDeps {
  issuer: string
  /** Finds the username a subject identifier names, or undefined. */
  findUser(by: { username?: string; email?: string }): Promise<string | undefined>
  /** Revokes every family of `subject` and denies their open device authorizations. */
  revokeUser(subject: string, actor: string, ip: string | null): Promise<number>
  events: EventSink | undefined
}

/**
 * Handles one global token revocation request; see the module comment.
 * @returns nothing (the route answers 204).
 * @throws {OAuthError} `invalid_request` (400), or 404 `invalid_request` for an unknown user.
 */
export async function handleGlobalRevocation(body: unknown, caller: AuthenticatedToken, ip: string | null, deps: GlobalRevocationDeps): Promise<void> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new OAuthError('invalid_request', 'the body must be a JSON object with "sub_id"')
  const subId = (body as Record<string, unknown>).sub_id
  if (subId === null || typeof subId !== 'object' || Array.isArray(subId)) throw new OAuthError('invalid_request', '"sub_id" must be a subject identifier object')
  const s = subId as Record<string, unknown>
  const text = (k: string) => (typeof s[k] === 'string' && (s[k] as string).length > 0 && (s[k] as string).length <= 1000 ? (s[k] as string) : undefined)
  let username: string | undefined
  switch (s.format) {
    case 'iss_sub': {
      const iss = text('iss')
      const sub = text('sub')
      if (iss === undefined || sub === undefined) throw new OAuthError('invalid_request', '"iss_sub" needs "iss" and "sub"')
      // Another issuer's subject is not one of devicegate's users.
      username = iss === deps.issuer ? await deps.findUser({ username: sub }) : undefined
      break
    }
    case 'email': {
      const email = text('email')
      if (email === undefined || !/^[^\s@]+@[^\s@]+$/.test(email)) throw new OAuthError('invalid_request', '"email" needs an "email" address')
      username = await deps.findUser({ email })
      break
    }
    case 'opaque': {
      const id = text('id')
      if (id === undefined) throw new OAuthError('invalid_request', '"opaque" needs an "id"')
      username = await deps.findUser({ username: id })
      break
    }
    default:
      throw new OAuthError('invalid_request', `unsupported subject identifier format ${JSON.stringify(String(s.format).slice(0, 40))}`)
  }
  if (username === undefined) throw new OAuthError('invalid_request', 'no such user', { status: 404 })
  const actor = `client:${caller.client.id}`
  const grants = await deps.revokeUser(username, actor, ip)
  await deps.events?.record({
    type: 'global_revocation.requested',
    actor,
    clientId: caller.client.id,
    subject: username,
    ip,
    details: { format: s.format, grants },
  })
}
