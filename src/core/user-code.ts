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

/**
 * Normalises what a person typed to the canonical form: upper-case, with dashes, spaces and other
 * whitespace removed (RFC 8628 §6.1). Returns `undefined` when the result cannot be a user code
 * (wrong length or a character outside the alphabet), so lookups of junk never reach storage.
 */
export function normalizeUserCode(input: string): string | undefined {
  const code = input.toUpperCase().replace(/[\s\-\u2010-\u2015\u2212]/g, '')
  if (code.length !== USER_CODE_LENGTH) return undefined
  for (const ch of code) if (!USER_CODE_ALPHABET.includes(ch)) return undefined
  return code
}
