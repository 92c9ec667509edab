import { DEFAULT_DPOP_ALGS } from './dpop.js';
import { ResourceAuthError } from './errors.js';
/** Sends a {@link ResourceAuthError} with its status, challenge and JSON body. */
export function sendResourceError(reply, err) {
    return reply.code(err.status).headers(err.headers).type('application/json').send(err.toJSON());
}
async function verifyInto(server, request, reply, scopes) {
    try {
        if (request.devicegate) {
            // Already verified (plugin hook); only the scope is left. Verifying again would replay the proof.
            const missing = scopes.filter((s) => !request.devicegate.scopes.includes(s));
            if (missing.length > 0) {
                const { tokenType } = request.devicegate;
                throw new ResourceAuthError('insufficient_scope', 'the access token lacks a required scope', tokenType, { dpopAlgs: DEFAULT_DPOP_ALGS, scope: scopes.join(' ') });
            }
            return;
        }
        request.devicegate = await server.verifyRequest(request, { scopes });
    }
    catch (err) {
        if (err instanceof ResourceAuthError) {
            await sendResourceError(reply, err);
            return;
        }
        throw err;
    }
}
/** A `preHandler` that requires a valid access token with `scopes` for one route. */
export function requireAccess(server, options = {}) {
    return async (request, reply) => verifyInto(server, request, reply, options.scopes ?? []);
}
/**
 * A fastify plugin that verifies every request of the context it is registered in (not
 * encapsulated, like plugins wrapped with fastify-plugin) and sets `request.devicegate`.
 */
export async function devicegateResource(app, options) {
    app.addHook('onRequest', async (request, reply) => verifyInto(options.server, request, reply, options.scopes ?? []));
}
// Apply the hook to the registering context rather than a child one (what fastify-plugin does).
;
devicegateResource[Symbol.for('skip-override')] = true;
