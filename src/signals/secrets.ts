/**
 * Receiver secrets at rest: the `authorization_header` a Shared Signals receiver gives for push
 * delivery (SSF 1.0 §8.1.1, RFC 8935 §2) is a credential of the receiver's endpoint, so the
 * database holds it only sealed, with the mechanism that seals private signing keys
 * (`protocol/key-encryption.ts`: JWE `dir` + `A256GCM` under the key-encryption key, or a KMS),
 * bound to its stream (a ciphertext copied to another stream's row does not open). It is opened
 * in memory at push time only; it is never returned by stream reads, never logged.
 *
 * A value `plain:<header>` is what migration `016_signals_secrets` moved out of an older
 * stream's configuration: {@link sealStoredSecrets} seals it on the first start (and
 * `devicegate keys rewrap` re-seals every secret after a KEK rotation).
 */
import type { KeyEncryption } from '../protocol/key-encryption.js'
import type { SignalOutboxStore } from '../storage/store.js'

/** What seals and opens secrets (a {@link KeyEncryption}). */
export type SecretSealer = Pick<KeyEncryption, 'seal' | 'open' | 'keyIdOf' | 'currentKeyId'>

/** Prefix of a secret not yet sealed (left by migration 016_signals_secrets). */
const PLAINTEXT_PREFIX = 'plain:'

/** What a sealed secret is bound to: its stream (the `dg_sig_kid` binding of the JWE header). */
export function streamSecretBinding(streamId: string): string {
  return `ssf_stream:${streamId}:authorization_header`
}

/** Seals a stream's `authorization_header` for storage. */
export function sealStreamSecret(sealer: SecretSealer, streamId: string, header: string): Promise<string> {
  return sealer.seal(header, streamSecretBinding(streamId))
}

/**
 * Opens a stored secret (sealed, or `plain:` before the first start sealed it).
 * @throws {KeyEncryptionError} when it was sealed under a KEK not configured, or tampered/moved.
 */
export async function openStreamSecret(sealer: SecretSealer, streamId: string, stored: string): Promise<string> {
  if (stored.startsWith(PLAINTEXT_PREFIX)) return stored.slice(PLAINTEXT_PREFIX.length)
  return sealer.open(stored, streamSecretBinding(streamId))
}

/**
 * Seals every stored secret still in plaintext, and with `rewrap` re-seals those sealed under
 * another KEK with the current one (after a KEK rotation); one compare-and-set per row, so
 * concurrent instances neither lose nor double-seal a secret.
 * @returns counts of secrets (re)sealed and of those left as they were; `failed` names streams
 *   whose secret does not open with the configured keys (left unchanged).
 */
export async function sealStoredSecrets(store: SignalOutboxStore, sealer: SecretSealer, options: { rewrap?: boolean } = {}): Promise<{ sealed: number; unchanged: number; failed: string[] }> {
  const result = { sealed: 0, unchanged: 0, failed: [] as string[] }
  for (const d of await store.listSignalDestinations({ kind: 'ssf_stream' })) {
    const stored = d.secret
    if (stored === null || stored === undefined) continue
    const plain = stored.startsWith(PLAINTEXT_PREFIX)
    if (!plain && (!options.rewrap || sealer.keyIdOf(stored) === sealer.currentKeyId)) {
      result.unchanged++
      continue
    }
    try {
      const next = await sealStreamSecret(sealer, d.id, await openStreamSecret(sealer, d.id, stored))
      if (await store.replaceSignalDestinationSecret(d.id, stored, next)) result.sealed++
    } catch {
      result.failed.push(d.id)
    }
  }
  return result
}
