/**
 * The token store contract: what the SDK needs of a place to keep tokens and the DPoP key, the
 * record-name rule every implementation enforces, and the in-memory store. Implementations
 * (`file-store.ts`, `keyring-store.ts`) import this file; the factory that picks one
 * (`store.ts`) imports them — so the arrows point one way.
 */

/** Record names: 1–128 characters from `A–Z a–z 0–9 . _ -` (safe as file names and keyring accounts). */
export const RECORD_NAME = /^[A-Za-z0-9._-]{1,128}$/

/**
 * A place to keep secrets. Implementations must make `set` atomic (a reader sees the old value
 * or the new one, never a mix) and durable before it resolves, because the SDK writes a rotated
 * refresh token there before it uses the new access token.
 */
export interface TokenStore {
  /** Short name for messages, e.g. `keyring`, `file`, `memory`. */
  readonly kind: string
  /**
   * What the SDK declares to the server as `storage_class` (devicegate extension): `keyring`,
   * `encrypted_file`, `memory` or `plaintext`. Absent: nothing is declared (the server records
   * `unknown`). Declare what the store really does: a policy may refuse weak storage.
   */
  readonly storageClass?: DeclaredStorageClass
  /** Where records live, for messages (a path or keyring service); never a secret. */
  readonly location: string
  /** Reads a record; `undefined` when there is none. */
  get(name: string): Promise<string | undefined>
  /** Creates or atomically replaces a record. */
  set(name: string, value: string): Promise<void>
  /** Deletes a record; succeeds when there is none. */
  delete(name: string): Promise<void>
}

/** Storage classes a {@link TokenStore} can declare (devicegate `storage_class`). */
export type DeclaredStorageClass = 'keyring' | 'encrypted_file' | 'memory' | 'plaintext'

/** Throws a TypeError for a record name outside {@link RECORD_NAME}. */
export function assertRecordName(name: string): void {
  if (!RECORD_NAME.test(name)) throw new TypeError(`invalid record name ${JSON.stringify(name)}: expected ${RECORD_NAME}`)
}

/** Keeps records in this process only: nothing survives exit. For CI and tests. */
export class MemoryTokenStore implements TokenStore {
  readonly kind = 'memory'
  readonly storageClass = 'memory'
  readonly location = 'process memory'
  readonly #records = new Map<string, string>()

  async get(name: string): Promise<string | undefined> {
    assertRecordName(name)
    return this.#records.get(name)
  }
  async set(name: string, value: string): Promise<void> {
    assertRecordName(name)
    this.#records.set(name, value)
  }
  async delete(name: string): Promise<void> {
    assertRecordName(name)
    this.#records.delete(name)
  }
}
