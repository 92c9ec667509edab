/**
 * Encryption of private signing keys at rest.
 *
 * The key ring seals every private JWK before the store sees it, so the database (and its
 * backups) holds only ciphertext: reading it no longer lets anyone mint access tokens. A sealed
 * key is a JWE compact serialization (RFC 7516 §7.1) made with `jose`:
 * `alg: "dir"`, `enc: "A256GCM"` (AES-256-GCM, RFC 7518 §5.3) under a 256-bit key-encryption key
 * (KEK), with a protected header naming the KEK (`kid`, see {@link kekId}) and the signing key it
 * holds (`dg_sig_kid`). The protected header is authenticated by GCM, so a ciphertext moved to
 * another key's row fails to open.
 *
 * {@link KeyEncryption} is the seam for a KMS: an implementation that calls a KMS's
 * encrypt/decrypt (or wrap/unwrap) API can replace {@link LocalKeyEncryption} without the key
 * ring or the store changing. Values that are not sealed (an older database's plaintext JWK,
 * starting with `{`) are recognised by {@link isSealed} and sealed on first start.
 * @see https://www.rfc-editor.org/rfc/rfc7516#section-7.1
 * @see https://www.rfc-editor.org/rfc/rfc7518#section-5.3
 */
import { createHash } from 'node:crypto'
import { CompactEncrypt, compactDecrypt, decodeProtectedHeader } from 'jose'

/** Seals and opens private signing keys. A KMS-backed implementation plugs in here. */
export interface KeyEncryption {
  /** Id of the key that seals new values (stored in each ciphertext's header). */
  readonly currentKeyId: string
  /**
   * Seals `plaintext` (a private JWK as JSON) bound to `binding` (the signing key's kid).
   * @returns an opaque string the store keeps in place of the private key.
   */
  seal(plaintext: string, binding: string): Promise<string>
  /**
   * Opens a value made by {@link seal} with the same `binding`.
   * @throws {KeyEncryptionError} `ERR_KEK_UNKNOWN` when the value was sealed under a key this
   *   instance does not hold; `ERR_KEK_DECRYPT` when it does not open (tampered, wrong binding).
   */
  open(sealed: string, binding: string): Promise<string>
  /** Id of the key a sealed value was sealed with (from its header); undefined if unreadable. */
  keyIdOf(sealed: string): string | undefined
}

/** Why a sealed key could not be opened. */
export class KeyEncryptionError extends Error {
  override readonly name = 'KeyEncryptionError'
  constructor(
    readonly code: 'ERR_KEK_UNKNOWN' | 'ERR_KEK_DECRYPT',
    message: string,
  ) {
    super(message)
  }
}

/** Whether a stored private key is sealed (a JWE) rather than a plaintext JWK (`{…}`). */
export function isSealed(stored: string): boolean {
  return !stored.trimStart().startsWith('{')
}

/** Length of a key-encryption key in bytes (AES-256). */
export const KEK_BYTES = 32

/**
 * The public id of a KEK: the first 16 base64url characters of SHA-256("devicegate-kek:" ‖ key).
 * It names the key in ciphertext headers and messages without revealing it.
 */
export function kekId(key: Uint8Array): string {
  return createHash('sha256').update('devicegate-kek:').update(key).digest('base64url').slice(0, 16)
}

/**
 * {@link KeyEncryption} with local AES-256-GCM keys (JWE `dir` + `A256GCM` via jose): one current
 * key that seals, and previous keys that still open values during a rotation.
 */
export class LocalKeyEncryption implements KeyEncryption {
  readonly currentKeyId: string
  readonly #current: Uint8Array
  readonly #byId = new Map<string, Uint8Array>()

  /**
   * @param current The 32-byte KEK that seals new values.
   * @param previous Earlier KEKs, used only to open values not yet rewrapped.
   * @throws {TypeError} for a key that is not 32 bytes.
   */
  constructor(current: Uint8Array, previous: readonly Uint8Array[] = []) {
    for (const k of [current, ...previous]) if (k.length !== KEK_BYTES) throw new TypeError(`a key-encryption key is ${KEK_BYTES} bytes`)
    this.#current = current
    this.currentKeyId = kekId(current)
    for (const k of [...previous, current]) this.#byId.set(kekId(k), k)
  }

  /** Ids of every key this instance can open with (current first). */
  get keyIds(): string[] {
    return [this.currentKeyId, ...[...this.#byId.keys()].filter((id) => id !== this.currentKeyId)]
  }

  async seal(plaintext: string, binding: string): Promise<string> {
    return new CompactEncrypt(new TextEncoder().encode(plaintext))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: this.currentKeyId, cty: 'jwk+json', dg_sig_kid: binding })
      .encrypt(this.#current)
  }

  keyIdOf(sealed: string): string | undefined {
    try {
      const kid = decodeProtectedHeader(sealed).kid
      return typeof kid === 'string' ? kid : undefined
    } catch {
      return undefined
    }
  }

  async open(sealed: string, binding: string): Promise<string> {
    const id = this.keyIdOf(sealed)
    const key = id === undefined ? undefined : this.#byId.get(id)
    if (key === undefined)
      throw new KeyEncryptionError('ERR_KEK_UNKNOWN', `signing key ${binding} is sealed with key-encryption key ${id ?? '(unreadable)'}, which is not configured`)
    try {
      const { plaintext, protectedHeader } = await compactDecrypt(sealed, key, { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] })
      if (protectedHeader.dg_sig_kid !== binding) throw new Error('bound to another key')
      return new TextDecoder().decode(plaintext)
    } catch {
      throw new KeyEncryptionError('ERR_KEK_DECRYPT', `signing key ${binding} does not decrypt with key-encryption key ${id}: tampered or moved`)
    }
  }
}
