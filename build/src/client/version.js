/**
 * The SDK's version and the User-Agent it sends, so a server's review page and
 * logs name the tool instead of "node".
 */
import { readFileSync } from 'node:fs';
/** The package version, read from its package.json (`0.0.0` if it cannot be read). */
export const SDK_VERSION = (() => {
    try {
        // src/client/version.ts and dist/client/version.js both sit two levels below the package root.
        return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version ?? '0.0.0';
    }
    catch {
        return '0.0.0';
    }
})();
/**
 * The SDK's User-Agent (RFC 9110 §10.1.5): product, then the OS platform and CPU in a comment, as
 * Node names them (`devicegate-client/0.1.0 (linux; x64) node/20.11.0`). A server can then tell
 * the requesting machine's platform, e.g. to notice a device flow approved on the same machine.
 */
export const SDK_USER_AGENT = `devicegate-client/${SDK_VERSION} (${process.platform}; ${process.arch}) node/${process.versions.node}`;
/**
 * Wraps `fetch` so every request carries `userAgent` unless the caller set another User-Agent
 * than the SDK default itself.
 */
export function withUserAgent(fetchImpl, userAgent) {
    return (input, init = {}) => {
        const headers = new Headers(init.headers);
        // The SDK's own default (set by its helpers) gives way to the caller's product.
        const current = headers.get('user-agent');
        if (current === null || current === SDK_USER_AGENT)
            headers.set('user-agent', userAgent);
        return fetchImpl(input, { ...init, headers });
    };
}
/** `fetch` with {@link SDK_USER_AGENT}: the default of every SDK function that takes a `fetch`. */
export const sdkFetch = withUserAgent((input, init) => globalThis.fetch(input, init), SDK_USER_AGENT);
