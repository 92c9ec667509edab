/**
 * Pluggable secret storage for tokens and the DPoP key: the factory that picks one (the contract
 * is in `token-store.ts`).
 *
 * Stores hold opaque string records under short names; the SDK decides what goes in them (JSON
 * with tokens, or the private DPoP JWK). Three come built in: `keyring` (the OS credential store,
 * preferred), `file` (AES-256-GCM files, mode 0600) and `memory` (CI and tests).
 */
import { ClientError } from './errors.js';
import { MemoryTokenStore } from './token-store.js';
export { assertRecordName, MemoryTokenStore, RECORD_NAME } from './token-store.js';
/**
 * Opens a store by kind. `auto` probes the OS keyring (a write, read and delete of a probe
 * record) and falls back to the encrypted file store when the keyring cannot be used, e.g. on a
 * headless Linux without a Secret Service (on Linux, `auto` wants a D-Bus session: the kernel
 * keyring the library would use otherwise does not survive a reboot).
 *
 * @throws {ClientError} `ERR_KEYRING_UNAVAILABLE` when `keyring` is asked for explicitly and cannot
 *   be used; `ERR_INVALID_ARGUMENT` for an unknown kind.
 */
export async function openTokenStore(opts = {}) {
    const kind = opts.kind ?? 'auto';
    const { FileTokenStore, defaultConfigDir } = await import('./file-store.js');
    const file = () => new FileTokenStore({ dir: opts.dir ?? defaultConfigDir(opts.env) });
    switch (kind) {
        case 'memory':
            return { store: new MemoryTokenStore() };
        case 'file':
            return { store: file() };
        case 'keyring':
        case 'auto': {
            const { openKeyringStore } = await import('./keyring-store.js');
            const probe = await openKeyringStore(opts.service ?? 'devicegate', { requireSecretService: kind === 'auto', ...(opts.env ? { env: opts.env } : {}) });
            if (probe.ok)
                return { store: probe.store };
            if (kind === 'keyring')
                throw new ClientError('ERR_KEYRING_UNAVAILABLE', `the OS keyring cannot be used: ${probe.reason}`);
            return { store: file(), fallbackReason: `the OS keyring cannot be used (${probe.reason}); using the encrypted file store` };
        }
        default:
            throw new ClientError('ERR_INVALID_ARGUMENT', `unknown store ${JSON.stringify(kind)}: expected keyring, file, memory or auto`);
    }
}
