/**
 * Request parameters of the OAuth endpoints (RFC 6749 §3.1–3.2).
 *
 * The HTTP layer parses `application/x-www-form-urlencoded` bodies into a {@link FormBody}; any
 * other media type leaves the body `undefined`. Here the protocol rules apply: form body only,
 * no parameter more than once — except `resource` (RFC 8707 §2) — and a parameter sent without a
 * value is treated as omitted.
 */
import { OAuthError } from './errors.js'

/** A parsed form body: a repeated name yields an array of its values. */
export type FormBody = Record<string, string | string[]>

/** Parameters that may repeat: only `resource` (RFC 8707 §2). */
export const REPEATABLE_PARAMETERS: ReadonlySet<string> = new Set(['resource'])

/** Where {@link readParams} keeps every value of a repeatable parameter. */
const ALL_VALUES: unique symbol = Symbol('devicegate.allValues')

/**
 * Parameters with repeats rejected and empty values dropped. A repeatable parameter reads as its
 * first value; {@link paramValues} gives all of them.
 */
export type Params = Readonly<Record<string, string | undefined>> & {
  readonly [ALL_VALUES]?: Readonly<Record<string, readonly string[]>>
}

/** Every non-empty value of a repeatable parameter, in order (empty when absent). */
export function paramValues(params: Params, name: string): string[] {
  const all = params[ALL_VALUES]?.[name]
  if (all) return [...all]
  const one = params[name]
  return one === undefined ? [] : [one]
}

/**
 * Reads the request parameters of an OAuth endpoint.
 * @throws {OAuthError} `invalid_request` when the body is not form-encoded, when any parameter
 *   but `resource` repeats (RFC 6749 §3.2, RFC 8707 §2), or when parameters are sent in the query
 *   string (RFC 6749 §2.3.1).
 */
export function readParams(body: FormBody | undefined, query: Record<string, unknown> | undefined): Params {
  if (query && Object.keys(query).length > 0)
    throw new OAuthError('invalid_request', 'parameters must be sent in the form-encoded request body, not in the URI')
  if (body === undefined)
    throw new OAuthError('invalid_request', 'the request body must be application/x-www-form-urlencoded')
  const params: Record<string, string | undefined> & { [ALL_VALUES]?: Record<string, string[]> } = Object.create(null)
  // `for…in` over own keys: no entry arrays per parameter (this runs on every OAuth request).
  for (const name in body) {
    if (!Object.hasOwn(body, name)) continue
    const value = body[name]!
    if (Array.isArray(value)) {
      if (!REPEATABLE_PARAMETERS.has(name)) throw new OAuthError('invalid_request', `"${name}" must not be included more than once`)
      const values = value.filter((v) => v !== '')
      params[name] = values[0]
      params[ALL_VALUES] = { ...params[ALL_VALUES], [name]: values }
      continue
    }
    params[name] = value === '' ? undefined : value
  }
  return params
}

/** Returns the parameter or throws `invalid_request` naming it. */
export function requireParam(params: Params, name: string): string {
  const value = params[name]
  if (value === undefined) throw new OAuthError('invalid_request', `"${name}" is required`)
  return value
}
