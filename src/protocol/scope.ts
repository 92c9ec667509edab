import type { Client } from '../core/model.js'
import { parseScope } from '../core/model.js'
import { OAuthError } from './errors.js'

/**
 * Resolves the requested scope against what the client may request (RFC 6749 §3.3).
 * An absent scope means the client's default scopes. devicegate answers `invalid_scope` for any
 * scope the client may not have rather than silently narrowing, so the decision is visible.
 * @returns the granted scope, space-delimited, in request order.
 * @throws {OAuthError} `invalid_scope`
 */
export function resolveRequestedScope(client: Client, requested: string | undefined): string {
  const scopes = requested === undefined ? [...client.defaultScopes] : parseScope(requested)
  for (const s of scopes)
    if (!client.scopes.includes(s)) throw new OAuthError('invalid_scope', `scope "${s.slice(0, 64)}" is not allowed for this client`)
  return scopes.join(' ')
}
