/**
 * The OS credential store (macOS Keychain, Windows Credential Manager, Secret Service on Linux)
 * through `@napi-rs/keyring`, loaded lazily so a missing native binary means "no keyring", not a crash.
 */
import { assertRecordName } from './token-store.js';
import { ClientError } from './errors.js';
/** Records in the OS keyring: one entry per record, service `devicegate`, account = record name. */
export class KeyringTokenStore {
    kind = 'keyring';
    storageClass = 'keyring';
    location;
    #Entry;
    #service;
    constructor(Entry, service) {
        this.#Entry = Entry;
        this.#service = service;
        this.location = `OS keyring, service "${service}"`;
    }
    #entry(name) {
        assertRecordName(name);
        return new this.#Entry(this.#service, name);
    }
    #fail(op, err) {
        return new ClientError('ERR_KEYRING_UNAVAILABLE', `the OS keyring failed to ${op}: ${err?.message ?? err}`, { cause: err });
    }
    async get(name) {
        const entry = this.#entry(name);
        try {
            return entry.getPassword() ?? undefined;
        }
        catch (err) {
            if (/no (matching )?entry/i.test(err?.message ?? ''))
                return undefined;
            throw this.#fail('read', err);
        }
    }
    async set(name, value) {
        const entry = this.#entry(name);
        try {
            entry.setPassword(value);
        }
        catch (err) {
            throw this.#fail('write', err);
        }
    }
    async delete(name) {
        const entry = this.#entry(name);
        try {
            entry.deletePassword();
        }
        catch (err) {
            if (/no (matching )?entry/i.test(err?.message ?? ''))
                return;
            throw this.#fail('delete', err);
        }
    }
}
/**
 * Loads `@napi-rs/keyring` and proves the keyring works with a write, read and delete of a probe
 * record (the library itself loads fine on machines with no Secret Service).
 */
export async function openKeyringStore(service, opts = {}) {
    // On Linux the library falls back to the kernel keyring (keyutils) when there is no Secret
    // Service. That keyring is per login session, is lost at reboot, and on headless machines
    // answers erratically (AccessDenied on one call, success on the next), so a login could land in
    // it and the next command not find it. Automatic selection therefore wants a D-Bus session.
    const env = opts.env ?? process.env;
    if (opts.requireSecretService && process.platform === 'linux' && !env.DBUS_SESSION_BUS_ADDRESS)
        return { ok: false, reason: 'no D-Bus session, so no Secret Service (DBUS_SESSION_BUS_ADDRESS is not set)' };
    let Entry;
    try {
        ;
        ({ Entry } = (await import('@napi-rs/keyring')));
    }
    catch (err) {
        return { ok: false, reason: `@napi-rs/keyring did not load: ${err?.message ?? err}` };
    }
    const store = new KeyringTokenStore(Entry, service);
    const probe = `probe-${process.pid}-${Date.now()}`;
    try {
        await store.set(probe, 'probe');
        const back = await store.get(probe);
        await store.delete(probe);
        if (back !== 'probe')
            return { ok: false, reason: 'a probe record did not read back' };
    }
    catch (err) {
        const cause = err.cause;
        return { ok: false, reason: cause?.message ?? err.message };
    }
    return { ok: true, store };
}
