/**
 * Request header fields as received, for the fields node folds: node's `IncomingMessage.headers`
 * keeps only the first line of a repeated `Authorization` field and discards the others, so a
 * request carrying two credentials would be judged on whichever came first. `rawHeaders` (name,
 * value, name, value…, as received) keeps every line.
 */

/**
 * Every value of the header field `name` in `rawHeaders`, in order.
 *
 * @param rawHeaders node's `IncomingMessage.rawHeaders`: names and values alternating.
 * @param name The field name, lower case (field names are case-insensitive, RFC 9110 §5.1).
 * @returns undefined when the field is absent; its value when it appears once; every value when it
 *   is repeated — for a field that is not a list, such as `Authorization` (RFC 9110 §11.6.2), a
 *   sender must not repeat it (RFC 9110 §5.3), and the caller refuses the request.
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-5.3
 */
export function headerFieldValues(rawHeaders: readonly string[], name: string): string | string[] | undefined {
  let found: string | string[] | undefined
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const field = rawHeaders[i]!
    if (field.length !== name.length || !isFieldName(field, name)) continue
    const value = rawHeaders[i + 1]!
    found = found === undefined ? value : Array.isArray(found) ? [...found, value] : [found, value]
  }
  return found
}

/**
 * The field `name` of a request as received: read from `rawHeaders` when the request gives them and
 * has the field (so a repeated field shows as every value), else node's folded `headers[name]`
 * (the first line of `Authorization`; the lines of `DPoP` joined with commas).
 *
 * @param request `headers` (names in lower case) and, optionally, node's `rawHeaders`.
 * @param name The field name, lower case.
 * @returns as {@link headerFieldValues}; without `rawHeaders`, `headers[name]` unchanged.
 */
export function receivedField(
  request: { headers: Record<string, string | string[] | undefined>; rawHeaders?: readonly string[] | undefined },
  name: string,
): string | string[] | undefined {
  const folded = request.headers[name]
  return request.rawHeaders !== undefined && folded !== undefined ? headerFieldValues(request.rawHeaders, name) : folded
}

/**
 * Whether the received field name `field` is `name` (lower case, same length), ignoring ASCII
 * case, without allocating (no `toLowerCase`): the scan runs on every request that carries the field.
 */
function isFieldName(field: string, name: string): boolean {
  if (field === name) return true
  for (let j = 0; j < name.length; j++) {
    const c = field.charCodeAt(j)
    const n = name.charCodeAt(j)
    // ASCII upper-case letters fold to lower case; nothing else folds (RFC 9110 §5.1).
    if (c !== n && !(c >= 0x41 && c <= 0x5a && c + 0x20 === n)) return false
  }
  return true
}
