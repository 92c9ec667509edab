/**
 * `WWW-Authenticate` challenges as a client reads them (RFC 9110 §11.6.1).
 */

/** One challenge: the scheme (lower case) and its auth-params (names lower case, values unquoted). */
export interface Challenge {
  scheme: string
  params: Record<string, string>
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/
const QUOTED = /^"((?:[^"\\]|\\[\s\S])*)"/
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))/

/**
 * Parses a `WWW-Authenticate` value into its challenges. The field is a comma-separated list of
 * challenges in no meaningful order, and several field lines are one list (`Headers.get` joins
 * them with ", "), so a client looks a challenge up by scheme rather than by position (RFC 9110
 * §11.6.1, §5.3). A challenge with a token68 keeps no params.
 *
 * @param header The field value, e.g. `Bearer realm="api", DPoP algs="ES256", error="use_dpop_nonce"`.
 * @returns the challenges in order; what follows a syntax error is dropped.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-11.6.1
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = []
  let current: Challenge | undefined
  let rest = header
  for (;;) {
    rest = rest.replace(/^[\s,]+/, '')
    const name = TOKEN.exec(rest)?.[0]
    if (name === undefined) return challenges
    rest = rest.slice(name.length)
    const eq = /^[ \t]*=[ \t]*/.exec(rest)
    if (current !== undefined && eq !== null) {
      // An auth-param of the current challenge: token or quoted-string value.
      rest = rest.slice(eq[0].length)
      const quoted = QUOTED.exec(rest)
      const value = quoted ? quoted[1]!.replace(/\\([\s\S])/g, '$1') : TOKEN.exec(rest)?.[0]
      if (value === undefined) return challenges
      rest = rest.slice(quoted ? quoted[0].length : value.length)
      current.params[name.toLowerCase()] = value
      continue
    }
    // A new challenge; a token68 may follow it (e.g. `Basic abc==`).
    current = { scheme: name.toLowerCase(), params: {} }
    challenges.push(current)
    const space = /^[ \t]+/.exec(rest)
    if (space !== null) {
      const token68 = TOKEN68.exec(rest.slice(space[0].length))
      if (token68 !== null) {
        rest = rest.slice(space[0].length + token68[0].length)
        current = undefined
      }
    }
  }
}

/** The challenge of `scheme` (case-insensitive) in a `WWW-Authenticate` value, if any. */
export function findChallenge(header: string | null, scheme: string): Challenge | undefined {
  if (header === null) return undefined
  const wanted = scheme.toLowerCase()
  return parseWwwAuthenticate(header).find((c) => c.scheme === wanted)
}
