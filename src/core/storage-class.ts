/**
 * Declared token storage: where a client says it keeps the tokens of a grant.
 *
 * A devicegate extension of RFC 8628 §3.1: the Device Authorization Request may carry
 * `storage_class`, and a refresh request (RFC 6749 §6) may carry it again when the client changed
 * where it keeps its tokens. Servers that do not know the parameter ignore it (RFC 6749 §3.1:
 * unrecognised request parameters are ignored), so the SDK may send it to any server that lists it
 * in `storage_classes_supported` (RFC 8414 §2 extension metadata).
 *
 * A declaration is a claim, not a proof: nothing lets the server check where a client really
 * keeps its tokens. Policies treat it as such; a DPoP key enrolled in the trusted-device registry
 * (a key the organisation provisioned, RFC 9449) is stronger evidence, because the tokens are
 * bound to that key and are worthless wherever they are copied without it.
 */

/** Every storage class, strongest first. `unknown` is what a request without the parameter declares. */
export const STORAGE_CLASSES = ['keyring', 'memory', 'encrypted_file', 'plaintext', 'unknown'] as const
export type StorageClass = (typeof STORAGE_CLASSES)[number]

/** The classes a client may declare on the wire (`unknown` is the absence of a declaration). */
export const DECLARABLE_STORAGE_CLASSES = STORAGE_CLASSES.filter((c): c is Exclude<StorageClass, 'unknown'> => c !== 'unknown')

/** True for one of {@link STORAGE_CLASSES}. */
export function isStorageClass(value: unknown): value is StorageClass {
  return typeof value === 'string' && (STORAGE_CLASSES as readonly string[]).includes(value)
}

/**
 * The class in plain words, for the review page and reports ("this tool keeps its sign-in in the
 * system keychain"). The sentence completes "This tool keeps its sign-in …".
 */
export const STORAGE_CLASS_WORDS: Readonly<Record<StorageClass, string>> = Object.freeze({
  keyring: 'in the system keychain (the operating system’s protected credential store)',
  memory: 'only in memory while it runs; nothing is written to disk',
  encrypted_file: 'in an encrypted file readable only by your account',
  plaintext: 'in a plain, unencrypted file or environment variable that other programs can read',
  unknown: 'somewhere it did not say; devicegate cannot tell how safely',
})

/** "This tool keeps its sign-in …" for `storageClass`, as one sentence. */
export function describeStorageClass(storageClass: StorageClass): string {
  return `This tool keeps its sign-in ${STORAGE_CLASS_WORDS[storageClass]}.`
}
