import { describe, expect, it } from 'vitest'
import { normalizeUserCode } from '../src/core/user-code.js'

describe('RFC 8628 §6.1 user-code normalisation', () => {
  it.each([
    ['canonical', 'BCDFGHJK'],
    ['display form with a dash', 'BCDF-GHJK'],
    ['lower case with spaces', ' bcdf ghjk '],
    ['typographic dashes', 'BCDF\u2013GHJK'],
    ['full-width letters and dash (NFKC)', '\uff22\uff43\uff24\uff46\uff0d\uff27\uff48\uff2a\uff4b'],
    ['full-width space (NFKC)', 'BCDF\u3000GHJK'],
    ['a pasted zero-width space', 'BCDF\u200bGHJK'],
    ['zero-width non-joiner and joiner', '\u200cBCDF\u200dGHJK'],
    ['word joiner and byte-order mark', '\ufeffBCDF\u2060GHJK'],
    ['bidi marks around the code', '\u200eBCDF-GHJK\u200f'],
  ])('accepts %s', (_name, input) => {
    expect(normalizeUserCode(input)).toBe('BCDFGHJK')
  })

  it('maps the long s (ſ, NFKC) to S', () => {
    expect(normalizeUserCode('\u017fcdf-ghjk')).toBe('SCDFGHJK')
  })

  it('C16 keeps codes that differ in one character distinct (negative control)', () => {
    expect(normalizeUserCode('BCDF-GHJL')).toBe('BCDFGHJL')
    expect(normalizeUserCode('BCDF-GHJL')).not.toBe(normalizeUserCode('BCDF-GHJK'))
    expect(normalizeUserCode('\uff22CDF-GHJL')).not.toBe(normalizeUserCode('BCDF-GHJK'))
  })

  it.each([
    ['a vowel', 'BCDF-GHJA'],
    ['a digit', 'BCDF-GHJ1'],
    ['a full-width digit', 'BCDF-GHJ\uff11'],
    ['too short', 'BCDF-GHJ'],
    ['too long', 'BCDF-GHJKL'],
    ['a visible non-Latin look-alike (Cyrillic Es)', 'BCDF-GHJ\u0421'],
    ['very long input', `BCDFGHJK${' '.repeat(200)}`],
    ['empty', ''],
  ])('refuses %s', (_name, input) => {
    expect(normalizeUserCode(input)).toBeUndefined()
  })
})
