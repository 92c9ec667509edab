/**
 * Server-provided DPoP nonces (RFC 9449 §8), stateless and shared by every instance.
 *
 * A nonce is the HMAC-SHA-256 of the current time slot under a key that all instances read from
 * the Store (`server_secrets`), so a nonce issued by one instance is accepted by any other without
 * shared state per nonce. A nonce is accepted during its own slot and the next one, so it lives
 * between {@link DPOP_NONCE_SLOT_SECONDS} and twice that.
 */
import type { Clock, Random } from '../core/ports.js'
import { ResourceDpopNonces } from '../resource/dpop.js'
import type { Store } from '../storage/store.js'
import { randomToken } from '../system.js'

/** Length of a nonce time slot in seconds. A nonce is accepted for one to two slots. */
export const DPOP_NONCE_SLOT_SECONDS = 60

/** Name of the nonce key in the Store's server secrets. */
export const DPOP_NONCE_SECRET_NAME = 'dpop_nonce_hmac_v1'

/**
 * Issues and checks server nonces for DPoP proofs (RFC 9449 §8): the resource helper's stateless
 * slot nonces ({@link ResourceDpopNonces}, one implementation for both), with the key every
 * instance shares and slots of {@link DPOP_NONCE_SLOT_SECONDS} on the server's clock.
 */
export class DpopNonces extends ResourceDpopNonces {
  /** @throws {TypeError} for a key shorter than 32 bytes. */
  constructor(key: Buffer, clock: Clock) {
    super({ key, slotSeconds: DPOP_NONCE_SLOT_SECONDS, nowMs: () => clock.nowSeconds() * 1000 })
  }

  /** Reads (or creates, once for all instances) the shared nonce key from the Store. */
  static async open(store: Store, clock: Clock, random: Random): Promise<DpopNonces> {
    const value = await store.ensureServerSecret(DPOP_NONCE_SECRET_NAME, randomToken(random, 32), clock.nowSeconds())
    return new DpopNonces(Buffer.from(value, 'base64url'), clock)
  }
}
