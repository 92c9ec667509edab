/**
 * The SDK's reading of `WWW-Authenticate` (RFC 9110 §11.6.1): challenges by scheme, in any order,
 * from one field line or several joined by `Headers`.
 */
import { describe, expect, it } from 'vitest'
import { findChallenge, parseWwwAuthenticate } from '../src/client/www-authenticate.js'

describe('RFC 9110 §11.6.1 WWW-Authenticate challenges (client SDK)', () => {
  const rows: Array<[string, string, ReturnType<typeof parseWwwAuthenticate>]> = [
    ['devicegate\'s both challenges', 'Bearer realm="devicegate-userinfo", error="invalid_token", DPoP realm="devicegate-userinfo", algs="ES256 EdDSA RS256 PS256", error="invalid_token"', [
      { scheme: 'bearer', params: { realm: 'devicegate-userinfo', error: 'invalid_token' } },
      { scheme: 'dpop', params: { realm: 'devicegate-userinfo', algs: 'ES256 EdDSA RS256 PS256', error: 'invalid_token' } },
    ]],
    ['bare challenges', 'Bearer, DPoP algs="ES256"', [{ scheme: 'bearer', params: {} }, { scheme: 'dpop', params: { algs: 'ES256' } }]],
    ['token values and case-insensitive names', 'dpop ERROR=use_dpop_nonce', [{ scheme: 'dpop', params: { error: 'use_dpop_nonce' } }]],
    ['a token68 challenge, then another', 'Negotiate abc==, DPoP error="use_dpop_nonce"', [{ scheme: 'negotiate', params: {} }, { scheme: 'dpop', params: { error: 'use_dpop_nonce' } }]],
    ['escapes and commas in a quoted-string', 'Bearer realm="a, \\"b\\"", error="x"', [{ scheme: 'bearer', params: { realm: 'a, "b"', error: 'x' } }]],
  ]
  for (const [name, header, expected] of rows)
    it(`parses ${name}`, () => {
      expect(parseWwwAuthenticate(header)).toEqual(expected)
    })

  it('finds the DPoP challenge wherever it stands, and not an error of another scheme', () => {
    expect(findChallenge('Bearer realm="api", DPoP algs="ES256", error="use_dpop_nonce"', 'DPoP')?.params.error).toBe('use_dpop_nonce')
    expect(findChallenge('DPoP algs="ES256", Bearer error="use_dpop_nonce"', 'DPoP')?.params.error).toBeUndefined()
    expect(findChallenge(null, 'DPoP')).toBeUndefined()
  })
})
