/**
 * Resource indicators (RFC 8707) and audience restriction of access tokens (RFC 9700 §2.3).
 *
 * A client may be limited to named resource servers (`resources` in its configuration). The
 * `resource` parameter of the device authorization and token requests names the resource(s) a
 * token is for; the access token's `aud` is then exactly those resources. Without `resource` the
 * `aud` stays the issuer, as before.
 */
import type { Client } from '../core/model.js'
import { OAuthError } from './errors.js'
import { paramValues, type Params } from './params.js'

/**
 * Whether `value` is a valid resource indicator: an absolute URI without a fragment (RFC 8707 §2).
 */
export function isResourceIndicator(value: string): boolean {
  if (value.includes('#') || /\s/.test(value)) return false
  try {
    new URL(value)
    return /^[A-Za-z][A-Za-z0-9+.-]*:/.test(value)
  } catch {
    return false
  }
}

/**
 * Reads the `resource` parameters of a request (RFC 8707 §2: the one parameter that may repeat).
 * Duplicates collapse; order is kept.
 * @throws {OAuthError} `invalid_target` for a value that is not an absolute URI without fragment.
 */
export function readResources(params: Params): string[] {
  const values = paramValues(params, 'resource')
  if (values.length === 0) return values
  for (const v of values)
    if (!isResourceIndicator(v)) throw new OAuthError('invalid_target', '"resource" must be an absolute URI without a fragment')
  return [...new Set(values)]
}

/**
 * Decides the resources of a token request (RFC 8707 §2, §2.2).
 *
 * Every requested resource must be one the client may use (`client.resources`). A grant a person
 * approved (a device code, or the token family it started) may only narrow what that approval
 * covered: a request naming none gets all of it, and when the device authorization named no
 * resource the approval was for the issuer alone, so any `resource` is refused. RFC 8707 leaves
 * open whether a token request may add resources the authorization request did not name; we
 * refuse it, because the person approving saw the resources of the device authorization and
 * nothing else.
 *
 * @param requested From {@link readResources}.
 * @param authorized Resources the approval covered (empty: none, the issuer alone); `undefined`
 *   for a grant with no approval step (`client_credentials`), where the client's own list decides.
 * @returns the token's audience; empty means "the issuer".
 * @throws {OAuthError} `invalid_target` for a resource the client may not use, or outside `authorized`.
 * @see https://www.rfc-editor.org/rfc/rfc8707#section-2.2
 */
export function resolveResources(client: Client, requested: readonly string[], authorized?: readonly string[]): string[] {
  const allowed = client.resources ?? []
  for (const r of requested) {
    if (!allowed.includes(r)) throw new OAuthError('invalid_target', `this client may not request tokens for resource "${r.slice(0, 100)}"`)
    if (authorized !== undefined && !authorized.includes(r))
      throw new OAuthError('invalid_target', `resource "${r.slice(0, 100)}" was not part of the authorization`)
  }
  return requested.length > 0 ? [...requested] : [...(authorized ?? [])]
}
