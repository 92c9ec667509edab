/**
 * The form body parser of the OAuth endpoints (RFC 6749 Appendix B: application/x-www-form-urlencoded)
 * gives what the WHATWG urlencoded parser (`URLSearchParams`) gives, on every input: its fast path
 * decodes with `decodeURIComponent` and falls back to `URLSearchParams` when that cannot.
 */
import { describe, expect, it } from 'vitest'
import { parseFormBody } from '../src/http/form-body.js'
import type { FormBody } from '../src/protocol/params.js'

/** The reference: URL Standard §5.1 application/x-www-form-urlencoded parsing, repeats as arrays. */
function reference(text: string): FormBody {
  const body: FormBody = Object.create(null)
  for (const [name, value] of new URLSearchParams(text)) {
    const prev = body[name]
    body[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]
  }
  return body
}

const CASES = [
  '',
  '&',
  '&&a=1&&',
  'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=abc-_DEF&client_id=demo-cli',
  'scope=read+write+offline_access',
  'a=1&a=2&a=3&b=&c',
  'a==b=c',
  '=value&=&name',
  'plus=%2B&space=%20&both=a+%2B+b',
  'utf8=%C3%A9t%C3%A9&raw=été&euro=%E2%82%AC',
  'bad=%&x=1',
  'bad=%zz&x=1',
  'bad=%4&x=1',
  'latin1=%E9&x=1',
  'surrogate=%ED%A0%80',
  'truncated=%E2%82',
  'overlong=%C0%AF',
  'nul=%00&bom=%EF%BB%BF',
  'name%3Dwith%26=value%3D%26',
  'resource=https%3A%2F%2Fapi.example.com%2F&resource=https%3A%2F%2Fother.example.com%2F',
  '__proto__=x&constructor=y&toString=z',
]

describe('form body parsing (RFC 6749 Appendix B, URL Standard §5.1)', () => {
  it.each(CASES)('parses %j as URLSearchParams does', (text) => {
    const parsed = parseFormBody(text)
    expect(parsed).toEqual(reference(text))
    expect(Object.getPrototypeOf(parsed)).toBe(null)
  })

  it('parses random bodies of separators, escapes and non-ASCII text as URLSearchParams does', () => {
    const alphabet = ['a', 'b', '=', '&', '+', '%', '2', 'B', 'e', 'F', 'f', 'G', 'g', '0', '9', '%7E', '%3a', '%41%42', '%7', '%2B', '%20', '%C3%A9', '%E2%82%AC', '%FF', '%E2%82', '%e9', 'é', '€', '😀', ' ']
    let seed = 17
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648)
    for (let i = 0; i < 3000; i++) {
      const text = Array.from({ length: next() % 24 }, () => alphabet[next() % alphabet.length]).join('')
      expect(parseFormBody(text), text).toEqual(reference(text))
    }
  })
})
