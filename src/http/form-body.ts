/**
 * `application/x-www-form-urlencoded` request bodies (the OAuth endpoints' parameters, RFC 6749
 * §3.1–3.2), parsed the way the WHATWG URL Standard does, faster.
 */
import type { FormBody } from '../protocol/params.js'

/**
 * Parses `application/x-www-form-urlencoded` into a {@link FormBody}; repeats become arrays, in
 * order. The result is what the WHATWG URL Standard's urlencoded parser (`URLSearchParams`)
 * gives, a few times faster: each name and value is cut out with `indexOf` and decoded only when
 * it holds `%` or `+`. Should a `%` sequence not decode as UTF-8 (where the standard substitutes
 * U+FFFD), the whole body is parsed by `URLSearchParams` instead.
 * @see https://url.spec.whatwg.org/#urlencoded-parsing
 */
export function parseFormBody(text: string): FormBody {
  const body: FormBody = Object.create(null)
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('&', start)
    if (end === -1) end = text.length
    if (end > start) {
      // Search for '=' within this sequence only: a body of many '&' and no '=' stays linear.
      const sequence = text.slice(start, end)
      const eq = sequence.indexOf('=')
      const name = decodeFormComponent(eq === -1 ? sequence : sequence.slice(0, eq))
      const value = eq === -1 ? '' : decodeFormComponent(sequence.slice(eq + 1))
      if (name === undefined || value === undefined) return parseFormBodyStandard(text)
      addFormValue(body, name, value)
    }
    start = end + 1
  }
  return body
}

/**
 * `+` as a space, then percent-decoded as UTF-8; undefined when a `%` is not followed by two hex
 * digits or the bytes are not UTF-8 (the caller then falls back to `URLSearchParams`). Escapes of
 * ASCII bytes (`%3A` in every device-code `grant_type`) are decoded here; `decodeURIComponent`,
 * several times slower, only sees text with escaped non-ASCII bytes.
 */
function decodeFormComponent(raw: string): string | undefined {
  const percent = raw.indexOf('%')
  const plus = raw.indexOf('+')
  if (percent === -1 && plus === -1) return raw
  let out = ''
  let copied = 0
  for (let i = percent === -1 ? plus : plus === -1 ? percent : Math.min(percent, plus); i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c === 0x2b) {
      out += raw.slice(copied, i) + ' '
      copied = i + 1
    } else if (c === 0x25) {
      const byte = (hexDigit(raw.charCodeAt(i + 1)) << 4) | hexDigit(raw.charCodeAt(i + 2))
      if (byte < 0) return undefined
      if (byte >= 0x80) return decodeUtf8Component(raw)
      out += raw.slice(copied, i) + String.fromCharCode(byte)
      copied = i + 3
      i += 2
    }
  }
  return out + raw.slice(copied)
}

/** The value of a hex digit's char code, or -256 (so that any byte built with it is negative). */
function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30
  const lower = code | 0x20
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -256
}

/** {@link decodeFormComponent} for text with escaped non-ASCII bytes. */
function decodeUtf8Component(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '))
  } catch {
    return undefined
  }
}

/** {@link parseFormBody} by `URLSearchParams`, for bodies with byte sequences that are not UTF-8. */
function parseFormBodyStandard(text: string): FormBody {
  const body: FormBody = Object.create(null)
  for (const [name, value] of new URLSearchParams(text)) addFormValue(body, name, value)
  return body
}

function addFormValue(body: FormBody, name: string, value: string): void {
  const prev = body[name]
  if (prev === undefined) body[name] = value
  else if (Array.isArray(prev)) prev.push(value)
  else body[name] = [prev, value]
}
