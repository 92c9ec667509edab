import { ResourceAuthError } from './errors.js';
/** Writes a {@link ResourceAuthError}: status, `WWW-Authenticate`, `Cache-Control: no-store`, JSON body. */
export function writeResourceError(res, err) {
    res.writeHead(err.status, { ...err.headers, 'content-type': 'application/json' });
    res.end(JSON.stringify(err.toJSON()));
}
/**
 * Verifies `req`; on failure answers it with the challenge and returns undefined.
 * @throws anything that is not a {@link ResourceAuthError} (a bug, not a bad request).
 */
export async function authorize(server, req, res, options = {}) {
    try {
        return await server.verifyRequest(req, options);
    }
    catch (err) {
        if (err instanceof ResourceAuthError) {
            writeResourceError(res, err);
            return undefined;
        }
        throw err;
    }
}
