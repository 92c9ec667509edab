/**
 * A lock file that serialises token refreshes across processes: parallel `devicegate token` calls
 * (or tools built on the SDK) share one refresh instead of racing with the same refresh token,
 * which a server with rotation and reuse detection (RFC 9700 §4.14.2) would take for theft.
 *
 * The lock is a file created with `O_CREAT | O_EXCL` (atomic on local file systems), holding the
 * owner's pid. A lock whose owner is gone (its pid no longer exists on this host) or that is older
 * than `staleMs` is taken over, so a crashed process never blocks the next one for long.
 */
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ClientError } from './errors.js';
/** Whether the process that wrote a lock file is still alive (same host). */
function isOwnerAlive(content) {
    const pid = Number(content.split(' ')[0]);
    if (!Number.isInteger(pid) || pid <= 0)
        return false;
    try {
        process.kill(pid, 0);
        return true;
    }
    catch (err) {
        // EPERM: it exists but belongs to someone else.
        return err.code === 'EPERM';
    }
}
/**
 * Runs `fn` while holding the lock file `path` (created 0600 in a 0700 directory), then removes it.
 * @throws {ClientError} `ERR_LOCKED` when the lock stays held past `timeoutMs`; whatever `fn` throws.
 */
export async function withFileLock(path, fn, opts = {}) {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const staleMs = opts.staleMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    for (;;) {
        try {
            const handle = await open(path, 'wx', 0o600);
            try {
                await handle.writeFile(`${process.pid} ${Date.now()}\n`);
            }
            finally {
                await handle.close();
            }
            break;
        }
        catch (err) {
            if (err.code !== 'EEXIST')
                throw err;
        }
        const [content, info] = await Promise.all([readFile(path, 'utf8').catch(() => ''), stat(path).catch(() => undefined)]);
        // Gone meanwhile: try again at once. Abandoned (owner dead, or too old): take it over.
        if (info === undefined)
            continue;
        if ((content !== '' && !isOwnerAlive(content)) || Date.now() - info.mtimeMs > staleMs) {
            await unlink(path).catch(() => undefined);
            continue;
        }
        if (Date.now() > deadline)
            throw new ClientError('ERR_LOCKED', `another process has been refreshing the login for over ${Math.round(timeoutMs / 1000)} s (lock ${path})`);
        await new Promise((r) => setTimeout(r, 25 + Math.random() * 50));
    }
    try {
        return await fn();
    }
    finally {
        await unlink(path).catch(() => undefined);
    }
}
