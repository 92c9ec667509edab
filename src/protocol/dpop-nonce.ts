/**
 * Server-provided DPoP nonces (RFC 9449 §8), stateless and shared by every instance.
 *
 * A nonce is the HMAC-SHA-256 of the current time slot under a key that all instances read from
 * the Store (`server_secrets`), so a nonce issued by one instance is accepted by any other without
 * shared state per nonce. A nonce is accepted during its own slot and the next one, so it lives
 * between {@link DPOP_NONCE_SLOT_SECONDS} and twice that.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Clock, Random } from '../core/ports.js'
import type { Store } from '../storage/store.js'
import { randomToken } from '../system.js'

/** Length of a nonce time slot in seconds. A nonce is accepted for one to two slots. */
export const DPOP_NONCE_SLOT_SECONDS = 60

/** Name of the nonce key in the Store's server secrets. */
export const DPOP_NONCE_SECRET_NAME = 'dpop_nonce_hmac_v1'

/** Issues and checks server nonces for DPoP proofs (RFC 9449 §8). */
export class DpopNonces {
  readonly #key: Buffer
  readonly #clock: Clock

  constructor(key: Buffer, clock: Clock) {
    if (key.length < 32) throw new TypeError('the DPoP nonce key needs at least 32 bytes')
    this.#key = key
    this.#clock = clock
  }

  /** Reads (or creates, once for all instances) the shared nonce key from the Store. */
  static async open(store: Store, clock: Clock, random: Random): Promise<DpopNonces> {
    const value = await store.ensureServerSecret(DPOP_NONCE_SECRET_NAME, randomToken(random, 32), clock.nowSeconds())
    return new DpopNonces(Buffer.from(value, 'base64url'), clock)
  }

  #forSlot(slot: number): string {
    return createHmac('sha256', this.#key).update(`dpop-nonce:${slot}`).digest('base64url')
  }

  /** The nonce to hand out now (`DPoP-Nonce` header). */
  current(): string {
    return this.#forSlot(Math.floor(this.#clock.nowSeconds() / DPOP_NONCE_SLOT_SECONDS))
  }

  /** Whether `nonce` was issued in the current or the previous slot (constant-time comparison). */
  isValid(nonce: string): boolean {
    const slot = Math.floor(this.#clock.nowSeconds() / DPOP_NONCE_SLOT_SECONDS)
    const given = Buffer.from(nonce)
    let ok = false
    for (const s of [slot, slot - 1]) {
      const expected = Buffer.from(this.#forSlot(s))
      if (expected.length === given.length && timingSafeEqual(expected, given)) ok = true
    }
    return ok
  }
}
