/**
 * Storage of JWS signing keys (`signing_keys`) and server-wide secrets such as the DPoP nonce
 * key, RFC 9449 §8 (`server_secrets`). Kysely implementation: `kysely/keys-and-secrets.ts`.
 */

/** A JWS signing key (the private half never leaves the server). */
export interface SigningKeyRecord {
  kid: string
  alg: string
  /** Public JWK as JSON text. */
  publicJwk: string
  /**
   * Private JWK, sealed by the key ring (a JWE, see protocol/key-encryption.ts); plaintext JSON
   * only in a database from before sealing, until its first start with a key-encryption key.
   */
  privateJwk: string
  createdAt: number
  /** When this key stopped signing; null for the active key. */
  retiredAt: number | null
  /** Keep publishing in the JWKS until this time (last token signed + its lifetime). */
  publishUntil: number | null
}

/** Signing keys and server-wide secrets. */
export interface KeyStore {
  /** All keys, newest first. */
  listSigningKeys(): Promise<SigningKeyRecord[]>
  /** @throws {StoreConflictError} when the kid exists. */
  insertSigningKey(key: SigningKeyRecord): Promise<void>
  /** Marks a key retired; it stays published until `publishUntil`. */
  retireSigningKey(kid: string, now: number, publishUntil: number): Promise<void>
  /**
   * Replaces a key's stored private half, only if it still equals `expected` (one conditional
   * update): the key ring seals plaintext keys and re-seals them after a KEK rotation with it.
   * @returns whether the row was changed.
   */
  replaceSigningKeyPrivateJwk(kid: string, expected: string, next: string): Promise<boolean>
  /**
   * Returns the secret stored under `name`, storing `candidate` first when there is none, in one
   * `INSERT … ON CONFLICT DO NOTHING` followed by a read: every instance ends up with the same value.
   */
  ensureServerSecret(name: string, candidate: string, now: number): Promise<string>
}
