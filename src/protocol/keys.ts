/**
 * Signing keys for access tokens and the JWKS endpoint (RFC 7517, RFC 8414 `jwks_uri`).
 *
 * Keys are persisted in the Store so every instance signs with, and publishes, the same keys.
 * Rotation keeps the retired key published until the last token it signed has expired.
 *
 * Across instances: the JWKS is read through to the store, so a rotation (on any instance or by
 * `devicegate keys rotate`) is published everywhere at once; each instance switches its signing
 * key on its next reload, at most {@link RELOAD_SECONDS} later, and the retired key stays
 * published that much longer to cover tokens it signs meanwhile.
 *
 * At rest: private keys are sealed here, in the key ring, with a
 * {@link KeyEncryption} (AES-256-GCM under a key-encryption key, or a KMS) before the store sees
 * them; the store only ever holds ciphertext. A database from before sealing (plaintext JWKs) is
 * sealed on the first start with a KEK, one compare-and-set per key, so no key is lost.
 */
import { exportJWK, generateKeyPair, importJWK, calculateJwkThumbprint, type JWK, type CryptoKey } from 'jose'
import type { Clock } from '../core/ports.js'
import { StoreConflictError, StoreUnavailableError, type SigningKeyRecord, type Store } from '../storage/store.js'
import { createCompactJwsSigner, type CompactJwsSigner } from './jws.js'
import { isSealed, type KeyEncryption } from './key-encryption.js'

/** What {@link KeyRing.rewrap} did: keys sealed anew under the current KEK, and those already were. */
export interface RewrapResult {
  /** Kids of keys (re)sealed under the current key-encryption key. */
  rewrapped: string[]
  /** Kids already sealed under it. */
  unchanged: string[]
}

/** The key that signs new tokens. */
export interface ActiveSigningKey {
  readonly kid: string
  readonly alg: string
  readonly privateKey: CryptoKey
  /**
   * Signs a JWT with this key, synchronously (JWS Compact Serialization, RFC 7515 §7.1); the
   * header must name {@link alg}. What the per-request tokens use (see `jws.ts`).
   */
  readonly sign: CompactJwsSigner
}

/**
 * How often an instance re-reads its signing key so rotations elsewhere are seen (seconds).
 * The JWKS is read from the store on every request, so a new key is published by every
 * instance before any instance signs with it.
 */
const RELOAD_SECONDS = 60

/** Server-secret name (+ alg) under which starting instances agree on the first key. */
const BOOTSTRAP_SECRET_PREFIX = 'signing_key_bootstrap:'
/** How long an instance that lost the bootstrap claim waits for the winner's key: 20 × 250 ms. */
const BOOTSTRAP_WAIT_ATTEMPTS = 20
const BOOTSTRAP_WAIT_MS = 250

/**
 * Loads, creates and rotates signing keys.
 */
export class KeyRing {
  #records: SigningKeyRecord[] = []
  #active: ActiveSigningKey | undefined
  #jwks: { keys: JWK[] } = { keys: [] }
  #loadedAt = 0

  private constructor(
    private readonly store: Store,
    private readonly alg: string,
    private readonly clock: Clock,
    private readonly encryption: KeyEncryption,
  ) {}

  /**
   * Loads keys, generating the first one when the store has none for `alg`.
   *
   * Instances that start together on an empty store agree on one first key: each claims the
   * bootstrap slot for `alg` with its candidate's kid (first writer wins, atomically); only the
   * winner inserts its key, the others wait for it to appear. A claim whose key never appears
   * (its instance died) or is long retired (the slot is from an earlier key) is ignored.
   *
   * Keys still stored in plaintext (a database from before sealing) are sealed first.
   * @param encryption Seals and opens private keys.
   * @throws {KeyEncryptionError} when the active key was sealed under a KEK not configured here.
   */
  static async open(store: Store, alg: string, clock: Clock, encryption: KeyEncryption): Promise<KeyRing> {
    const ring = new KeyRing(store, alg, clock, encryption)
    await ring.#sealPlaintextKeys()
    await ring.reload()
    if (ring.#active) return ring
    const candidate = await ring.#generateKey()
    const winner = await store.ensureServerSecret(`${BOOTSTRAP_SECRET_PREFIX}${alg}`, candidate.kid, clock.nowSeconds())
    if (winner !== candidate.kid) {
      for (let attempt = 0; attempt < BOOTSTRAP_WAIT_ATTEMPTS; attempt++) {
        await ring.reload()
        if (ring.#active) return ring
        if (ring.#records.some((r) => r.kid === winner && r.retiredAt !== null)) break
        await new Promise((r) => setTimeout(r, BOOTSTRAP_WAIT_MS))
      }
    }
    await ring.#insertKey(candidate)
    await ring.reload()
    return ring
  }

  /** Re-reads keys from the store. */
  async reload(): Promise<void> {
    const now = this.clock.nowSeconds()
    const records = await this.store.listSigningKeys()
    // Newest first; kid breaks ties so that every instance picks the same key.
    const current = records
      .filter((r) => r.retiredAt === null && r.alg === this.alg)
      .sort((a, b) => b.createdAt - a.createdAt || (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0))[0]
    this.#records = records
    this.#active = current ? await activeKeyOf(current, JSON.parse(await this.#openPrivateJwk(current)) as JWK) : undefined
    this.#jwks = publishedJwks(records, now)
    this.#loadedAt = now
  }

  async #generateKey(): Promise<SigningKeyRecord> {
    const { publicKey, privateKey } = await generateKeyPair(this.alg, { extractable: true })
    const publicJwk = await exportJWK(publicKey)
    const kid = await calculateJwkThumbprint(publicJwk)
    return {
      kid,
      alg: this.alg,
      publicJwk: JSON.stringify(publicJwk),
      privateJwk: await this.encryption.seal(JSON.stringify(await exportJWK(privateKey)), kid),
      createdAt: this.clock.nowSeconds(),
      retiredAt: null,
      publishUntil: null,
    }
  }

  async #insertKey(record: SigningKeyRecord): Promise<string> {
    try {
      await this.store.insertSigningKey({ ...record, createdAt: this.clock.nowSeconds() })
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err
    }
    return record.kid
  }

  async #insertNewKey(): Promise<string> {
    return this.#insertKey(await this.#generateKey())
  }

  /** The private JWK (JSON) of a record, opened if sealed. */
  async #openPrivateJwk(record: SigningKeyRecord): Promise<string> {
    return isSealed(record.privateJwk) ? this.encryption.open(record.privateJwk, record.kid) : record.privateJwk
  }

  /**
   * Seals every key still stored in plaintext (an older database), each with one conditional
   * update that only replaces the exact plaintext read, so instances starting together and a
   * concurrent rotation never lose or double-seal a key.
   */
  async #sealPlaintextKeys(): Promise<void> {
    for (const r of await this.store.listSigningKeys()) {
      if (isSealed(r.privateJwk)) continue
      await this.store.replaceSigningKeyPrivateJwk(r.kid, r.privateJwk, await this.encryption.seal(r.privateJwk, r.kid))
    }
  }

  /**
   * Re-seals every key (active and retired) under the current key-encryption key, after a KEK
   * rotation: the new KEK is current and the old one is among the previous keys until this has
   * run (`devicegate keys rewrap`). Plaintext keys are sealed too.
   * @throws {KeyEncryptionError} when a key is sealed under a KEK that is not configured; nothing
   *   is changed for that key (the others are rewrapped).
   */
  async rewrap(): Promise<RewrapResult> {
    const result: RewrapResult = { rewrapped: [], unchanged: [] }
    let failure: unknown
    for (const r of await this.store.listSigningKeys()) {
      if (isSealed(r.privateJwk) && this.encryption.keyIdOf(r.privateJwk) === this.encryption.currentKeyId) {
        result.unchanged.push(r.kid)
        continue
      }
      try {
        const sealed = await this.encryption.seal(await this.#openPrivateJwk(r), r.kid)
        if (await this.store.replaceSigningKeyPrivateJwk(r.kid, r.privateJwk, sealed)) result.rewrapped.push(r.kid)
      } catch (err) {
        failure ??= err
      }
    }
    if (failure !== undefined) throw failure
    await this.reload()
    return result
  }

  /** The key to sign with now; re-reads the store at most every 60 s. */
  async activeKey(): Promise<ActiveSigningKey> {
    if (this.clock.nowSeconds() - this.#loadedAt >= RELOAD_SECONDS) await this.reload()
    if (!this.#active) throw new Error('no active signing key')
    return this.#active
  }

  /**
   * The public JWK Set (RFC 7517 §5): the active key and retired keys still in use. Read from the
   * store on every call, so every instance publishes a new key at once; when the store cannot
   * be read, the last set read is served (keys outlive an outage).
   */
  async jwks(): Promise<{ keys: JWK[] }> {
    try {
      this.#jwks = publishedJwks(await this.store.listSigningKeys(), this.clock.nowSeconds())
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err
    }
    return this.#jwks
  }

  /** All key records (for `devicegate keys list`). */
  records(): readonly SigningKeyRecord[] {
    return this.#records
  }

  /**
   * Creates a new signing key and retires the current ones, which stay published for
   * `publishSeconds` (the longest access-token lifetime) so tokens they signed still verify.
   * @returns the new key id.
   */
  async rotate(publishSeconds: number): Promise<string> {
    const now = this.clock.nowSeconds()
    const old = this.#records.filter((r) => r.retiredAt === null)
    const kid = await this.#insertNewKey()
    // Other instances keep signing with the old key until their next reload.
    for (const r of old) await this.store.retireSigningKey(r.kid, now, now + publishSeconds + RELOAD_SECONDS)
    await this.reload()
    return kid
  }
}

/** The signing key of a record, from its opened private JWK: imported once for jose and once for node:crypto. */
async function activeKeyOf(record: SigningKeyRecord, privateJwk: JWK): Promise<ActiveSigningKey> {
  return {
    kid: record.kid,
    alg: record.alg,
    privateKey: (await importJWK(privateJwk, record.alg)) as CryptoKey,
    sign: createCompactJwsSigner(record.alg, privateJwk as Record<string, unknown>),
  }
}

/** Public JWKs of the keys to publish at `now`: unretired ones and retired ones still in use. */
function publishedJwks(records: readonly SigningKeyRecord[], now: number): { keys: JWK[] } {
  return {
    keys: records
      .filter((r) => r.retiredAt === null || (r.publishUntil ?? 0) > now)
      .map((r) => ({ ...(JSON.parse(r.publicJwk) as JWK), kid: r.kid, alg: r.alg, use: 'sig' })),
  }
}
