import type { Random } from './ports.js'

/**
 * User codes per RFC 8628 §6.1: 8 characters from a 20-letter consonant alphabet (no vowels, so
 * no words; no digits, so no 0/O or 1/I confusion), about 34.5 bits of entropy, shown as
 * `XXXX-XXXX` and matched case-insensitively with dashes and whitespace ignored.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-6.1
 */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ'
/** Number of significant characters in a user code. */
export const USER_CODE_LENGTH = 8

/**
 * Generates a user code in canonical form (8 upper-case characters, no dash).
 * Use {@link formatUserCode} for display.
 */
export function generateUserCode(random: Random): string {
  let code = ''
  for (let i = 0; i < USER_CODE_LENGTH; i++) code += USER_CODE_ALPHABET[random.int(USER_CODE_ALPHABET.length)]
  return code
}

/** Display form `XXXX-XXXX` of a canonical user code. */
export function formatUserCode(canonical: string): string {
  return `${canonical.slice(0, 4)}-${canonical.slice(4)}`
}

/** Longer input is junk, not a code with separators; bounds the Unicode normalisation work. */
const MAX_USER_CODE_INPUT_LENGTH = 128

/**
 * Normalises what a person typed to the canonical form (RFC 8628 §6.1): Unicode NFKC (so
 * full-width and other compatibility forms become ASCII), invisible format characters removed
 * (zero-width spaces and joiners, word joiner, BOM, bidi marks: Unicode category Cf, which a paste
 * from a chat or a PDF often carries), upper-cased, and dashes, spaces and other whitespace removed.
 * Returns `undefined` when the result cannot be a user code (wrong length or a character outside
 * the alphabet), so lookups of junk never reach storage. Distinct codes stay distinct: every step
 * maps a character to the letter it displays as, or removes a character that displays as nothing.
 */
export function normalizeUserCode(input: string): string | undefined {
  if (input.length > MAX_USER_CODE_INPUT_LENGTH) return undefined
  const code = input
    .normalize('NFKC')
    .replace(/\p{Cf}/gu, '')
    .toUpperCase()
    .replace(/[\s\-\u2010-\u2015\u2212]/g, '')
  if (code.length !== USER_CODE_LENGTH) return undefined
  for (const ch of code) if (!USER_CODE_ALPHABET.includes(ch)) return undefined
  return code
}
