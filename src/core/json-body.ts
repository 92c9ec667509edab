/**
 * What makes a parsed JSON request body unfit to store, shared by every JSON API (admin API, SCIM,
 * Shared Signals, global token revocation). JSON (RFC 8259) can nest deeper than the recursive code
 * that stores or renders a value can go (a stack overflow: a 5xx), and its `\u` escapes can spell
 * what UTF-8 cannot carry — a lone surrogate (RFC 8259 §8.2; stored, it comes back as U+FFFD) —
 * or what a PostgreSQL text column refuses (U+0000).
 */

/** Deeper than any body devicegate accepts goes (SCIM's enterprise `manager.value` is 3 levels). */
export const MAX_JSON_BODY_DEPTH = 32

/** `too_deep`: nesting beyond {@link MAX_JSON_BODY_DEPTH}; `malformed_string`: a string or member name with a lone surrogate or U+0000. */
export type JsonBodyProblem = 'too_deep' | 'malformed_string'

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const MALFORMED = new RegExp(`\\u0000|${LONE_SURROGATE.source}`)

/**
 * The first problem of a parsed JSON value, or undefined when it is fit to store.
 * @param options.nul `false` where a schema refuses U+0000 itself, naming the field (admin API).
 * @param depth the nesting level of `value` (0 for the body itself).
 */
export function jsonBodyProblem(value: unknown, options: { nul?: boolean } = {}, depth = 0): JsonBodyProblem | undefined {
  const malformed = options.nul === false ? LONE_SURROGATE : MALFORMED
  if (typeof value === 'string') return malformed.test(value) ? 'malformed_string' : undefined
  if (value === null || typeof value !== 'object') return undefined
  if (depth >= MAX_JSON_BODY_DEPTH) return 'too_deep'
  if (Array.isArray(value)) {
    for (const v of value) {
      const problem = jsonBodyProblem(v, options, depth + 1)
      if (problem !== undefined) return problem
    }
    return undefined
  }
  for (const [k, v] of Object.entries(value)) {
    const problem = (malformed.test(k) ? 'malformed_string' : undefined) ?? jsonBodyProblem(v, options, depth + 1)
    if (problem !== undefined) return problem
  }
  return undefined
}

/** A client-facing sentence for a {@link JsonBodyProblem}. */
export function describeJsonBodyProblem(problem: JsonBodyProblem): string {
  return problem === 'too_deep' ? `the body is nested deeper than ${MAX_JSON_BODY_DEPTH} levels` : 'strings must be well-formed Unicode without U+0000'
}
