/**
 * The encrypted file store: one file per record under the user's config directory, sealed with
 * AES-256-GCM, written with mode 0600 atomically (temporary file, fsync, rename, fsync of the
 * directory), and never read when its mode is wider than 0600 or it belongs to someone else.
 *
 * Where the key lives matters. Without an OS keyring, the 256-bit key sits in `store.key` beside
 * the records (mode 0600). That is obfuscation plus file permissions, not a second factor: anyone
 * who can read the directory as this user (or root, or a backup of the home directory) can
 * decrypt it. What it does buy: tokens are not greppable text, a record copied alone is useless,
 * and records cannot be swapped between names (the name is authenticated data). Prefer the OS
 * keyring where there is one; pass `key` to keep the key elsewhere (e.g. a CI secret).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { ClientError } from './errors.js';
import { assertRecordName } from './token-store.js';
/** File name of the store key inside the directory. */
export const KEY_FILE = 'store.key';
/** Suffix of record files. */
export const RECORD_SUFFIX = '.enc';
const FORMAT_VERSION = 1;
const IS_POSIX = process.platform !== 'win32';
/**
 * The devicegate config directory: `$XDG_CONFIG_HOME/devicegate` when that is an absolute path
 * (XDG Base Directory spec), `%APPDATA%\devicegate` on Windows, else `~/.config/devicegate`.
 */
export function defaultConfigDir(env = process.env) {
    const xdg = env.XDG_CONFIG_HOME;
    if (xdg && isAbsolute(xdg))
        return join(xdg, 'devicegate');
    if (!IS_POSIX && env.APPDATA)
        return join(env.APPDATA, 'devicegate');
    return join(env.HOME || homedir(), '.config', 'devicegate');
}
function octal(mode) {
    return '0' + (mode & 0o777).toString(8).padStart(3, '0');
}
/**
 * Refuses a file whose permission bits give group or others any access, or that another user
 * owns (they could have planted it).
 * @throws {ClientError} `ERR_STORE_INSECURE`.
 */
function assertPrivateFile(path, stat) {
    if (!IS_POSIX)
        return;
    if ((stat.mode & 0o077) !== 0)
        throw new ClientError('ERR_STORE_INSECURE', `refusing to read ${path}: its mode is ${octal(stat.mode)}, wider than 0600, so other users may have read it. ` +
            `If you trust its contents run \`chmod 600 '${path}'\`; otherwise delete it and log in again`);
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid)
        throw new ClientError('ERR_STORE_INSECURE', `refusing to read ${path}: it belongs to user ${stat.uid}, not to you (${uid})`);
}
/** Writes `data` to `path` atomically with mode 0600: temporary file, fsync, rename, fsync dir. */
export async function writeFileAtomic(path, data, dir) {
    const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await fs.open(tmp, 'wx', 0o600);
    try {
        if (IS_POSIX)
            await fh.chmod(0o600); // the umask can only narrow the mode, but say it anyway
        await fh.writeFile(data);
        await fh.sync();
    }
    catch (err) {
        await fh.close().catch(() => { });
        await fs.rm(tmp, { force: true });
        throw err;
    }
    await fh.close();
    try {
        await fs.rename(tmp, path);
    }
    catch (err) {
        await fs.rm(tmp, { force: true });
        throw err;
    }
    await syncDir(dir);
}
async function syncDir(dir) {
    if (!IS_POSIX)
        return;
    const dh = await fs.open(dir, 'r');
    try {
        await dh.sync();
    }
    finally {
        await dh.close();
    }
}
/** Reads a file through one descriptor (no symlinks), checking its mode on that descriptor. */
async function readPrivateFile(path) {
    let fh;
    try {
        fh = await fs.open(path, IS_POSIX ? constants.O_RDONLY | constants.O_NOFOLLOW : 'r');
    }
    catch (err) {
        if (err.code === 'ENOENT')
            return undefined;
        if (err.code === 'ELOOP')
            throw new ClientError('ERR_STORE_INSECURE', `refusing to read ${path}: it is a symbolic link`);
        throw err;
    }
    try {
        assertPrivateFile(path, await fh.stat());
        return await fh.readFile();
    }
    finally {
        await fh.close();
    }
}
/** Encrypted records in files; see the module comment for what the key file does and doesn't protect. */
export class FileTokenStore {
    kind = 'file';
    storageClass = 'encrypted_file';
    location;
    dir;
    #givenKey;
    #key;
    constructor(opts) {
        if (opts.key !== undefined && opts.key.length !== 32)
            throw new TypeError('the file store key must be 32 bytes');
        this.dir = opts.dir;
        this.location = opts.dir;
        this.#givenKey = opts.key;
    }
    /** Path of a record's file. */
    pathOf(name) {
        assertRecordName(name);
        return join(this.dir, name + RECORD_SUFFIX);
    }
    async #ensureDir() {
        await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
        if (!IS_POSIX)
            return;
        const stat = await fs.stat(this.dir);
        // Others who can write the directory can replace records or the key file.
        if ((stat.mode & 0o022) !== 0)
            throw new ClientError('ERR_STORE_INSECURE', `refusing to use ${this.dir}: its mode is ${octal(stat.mode)}, writable by others; run \`chmod 700 '${this.dir}'\``);
    }
    #loadKey() {
        this.#key ??= (async () => {
            if (this.#givenKey)
                return Buffer.from(this.#givenKey);
            await this.#ensureDir();
            const path = join(this.dir, KEY_FILE);
            const existing = await readPrivateFile(path);
            if (existing)
                return this.#parseKey(path, existing);
            // Create the key file without a window where a half-written one exists, and let a
            // concurrent creator win: link() fails with EEXIST when another process got there first.
            const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
            const fh = await fs.open(tmp, 'wx', 0o600);
            try {
                await fh.writeFile(randomBytes(32).toString('base64url') + '\n');
                await fh.sync();
            }
            finally {
                await fh.close();
            }
            try {
                await fs.link(tmp, path);
            }
            catch (err) {
                if (err.code !== 'EEXIST')
                    throw err;
            }
            finally {
                await fs.rm(tmp, { force: true });
            }
            await syncDir(this.dir);
            return this.#parseKey(path, (await readPrivateFile(path)));
        })();
        this.#key.catch(() => {
            this.#key = undefined;
        });
        return this.#key;
    }
    #parseKey(path, bytes) {
        const key = Buffer.from(bytes.toString('utf8').trim(), 'base64url');
        if (key.length !== 32)
            throw new ClientError('ERR_STORE_CORRUPT', `${path} does not hold a 32-byte key`);
        return key;
    }
    /** Additional authenticated data: binds a sealed record to its name and format. */
    static #aad(name) {
        return Buffer.from(`devicegate-token-store:v${FORMAT_VERSION}:${name}`);
    }
    /**
     * Reads and decrypts a record.
     * @throws {ClientError} `ERR_STORE_INSECURE` (mode wider than 0600, other owner, symlink),
     *   `ERR_STORE_CORRUPT` (cannot be decrypted: tampered, truncated or another key).
     */
    async get(name) {
        const path = this.pathOf(name);
        const raw = await readPrivateFile(path);
        if (raw === undefined)
            return undefined;
        const key = await this.#loadKey();
        try {
            const env = JSON.parse(raw.toString('utf8'));
            if (env.v !== FORMAT_VERSION || env.alg !== 'A256GCM')
                throw new Error(`unknown format ${env.v}/${env.alg}`);
            const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(env.iv, 'base64url'));
            decipher.setAAD(FileTokenStore.#aad(name));
            decipher.setAuthTag(Buffer.from(env.tag, 'base64url'));
            return Buffer.concat([decipher.update(Buffer.from(env.ct, 'base64url')), decipher.final()]).toString('utf8');
        }
        catch (err) {
            throw new ClientError('ERR_STORE_CORRUPT', `${path} cannot be decrypted (tampered, truncated or sealed with another key); delete it and log in again`, { cause: err });
        }
    }
    /** Encrypts a record (fresh 96-bit IV each time) and replaces its file atomically, mode 0600. */
    async set(name, value) {
        const path = this.pathOf(name);
        const key = await this.#loadKey();
        await this.#ensureDir();
        const iv = randomBytes(12);
        const cipher = createCipheriv('aes-256-gcm', key, iv);
        cipher.setAAD(FileTokenStore.#aad(name));
        const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
        const env = { v: FORMAT_VERSION, alg: 'A256GCM', iv: iv.toString('base64url'), tag: cipher.getAuthTag().toString('base64url'), ct: ct.toString('base64url') };
        await writeFileAtomic(path, JSON.stringify(env) + '\n', this.dir);
    }
    /** Deletes a record's file (and makes the deletion durable). */
    async delete(name) {
        const path = this.pathOf(name);
        try {
            await fs.unlink(path);
        }
        catch (err) {
            if (err.code === 'ENOENT')
                return;
            throw err;
        }
        await syncDir(this.dir);
    }
}
