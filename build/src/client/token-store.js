/**
 * The token store contract: what the SDK needs of a place to keep tokens and the DPoP key, the
 * record-name rule every implementation enforces, and the in-memory store. Implementations
 * (`file-store.ts`, `keyring-store.ts`) import this file; the factory that picks one
 * (`store.ts`) imports them — so the arrows point one way.
 */
/** Record names: 1–128 characters from `A–Z a–z 0–9 . _ -` (safe as file names and keyring accounts). */
export const RECORD_NAME = /^[A-Za-z0-9._-]{1,128}$/;
/** Throws a TypeError for a record name outside {@link RECORD_NAME}. */
export function assertRecordName(name) {
    if (!RECORD_NAME.test(name))
        throw new TypeError(`invalid record name ${JSON.stringify(name)}: expected ${RECORD_NAME}`);
}
/** Keeps records in this process only: nothing survives exit. For CI and tests. */
export class MemoryTokenStore {
    kind = 'memory';
    storageClass = 'memory';
    location = 'process memory';
    #records = new Map();
    async get(name) {
        assertRecordName(name);
        return this.#records.get(name);
    }
    async set(name, value) {
        assertRecordName(name);
        this.#records.set(name, value);
    }
    async delete(name) {
        assertRecordName(name);
        this.#records.delete(name);
    }
}
