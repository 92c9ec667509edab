/**
 * fastify integration of the resource-server helper.
 *
 * ```ts
 * const rs = createResourceServer({ issuer, audience: 'https://api.example.com/', revocation: … })
 * app.register(async (api) => {
 *   await api.register(devicegateResource, { server: rs })          // every route here needs a token
 *   api.get('/things', async (req) => req.devicegate!.subject)
 *   api.post('/things', { preHandler: requireAccess(rs, { scopes: ['write'] }) }, …)
 * })
 * ```
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ResourceAuthError } from './errors.js'
import type { ResourceServer, VerifiedAccess } from './verifier.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by {@link devicegateResource} / {@link requireAccess} once the access token is verified. */
    devicegate?: VerifiedAccess
  }
}

/** Sends a {@link ResourceAuthError} with its status, challenge and JSON body. */
export function sendResourceError(reply: FastifyReply, err: ResourceAuthError): FastifyReply {
  return reply.code(err.status).headers(err.headers).type('application/json').send(err.toJSON())
}

async function verifyInto(server: ResourceServer, request: FastifyRequest, reply: FastifyReply, scopes: readonly string[]): Promise<void> {
  try {
    if (request.devicegate) {
      // Already verified (plugin hook); only the scope is left. Verifying again would replay the proof.
      const missing = scopes.filter((s) => !request.devicegate!.scopes.includes(s))
      if (missing.length > 0) {
        const { tokenType } = request.devicegate
        // The server's own realm and algs, as on every other challenge it sends (RFC 9449 §7.1).
        throw new ResourceAuthError('insufficient_scope', 'the access token lacks a required scope', tokenType, { ...server.challenge, scope: scopes.join(' ') }, { dpopNonce: request.devicegate.dpopNonce })
      }
      return
    }
    // rawHeaders: a repeated Authorization field is refused, not judged on its first line.
    request.devicegate = await server.verifyRequest({ method: request.method, url: request.url, headers: request.headers, rawHeaders: request.raw.rawHeaders }, { scopes, clientIp: request.ip })
    // RFC 9449 §9: with nonces required, the accepted request's answer carries the current one too.
    if (request.devicegate.dpopNonce !== undefined) reply.header('dpop-nonce', request.devicegate.dpopNonce)
  } catch (err) {
    if (err instanceof ResourceAuthError) {
      await sendResourceError(reply, err)
      return
    }
    throw err
  }
}

/** A `preHandler` that requires a valid access token with `scopes` for one route. */
export function requireAccess(server: ResourceServer, options: { scopes?: readonly string[] } = {}) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => verifyInto(server, request, reply, options.scopes ?? [])
}

/** Options of {@link devicegateResource}. */
export interface DevicegateResourceOptions {
  server: ResourceServer
  /** Scopes every route in the context needs. Default: none. */
  scopes?: readonly string[]
}

/**
 * A fastify plugin that verifies every request of the context it is registered in (not
 * encapsulated, like plugins wrapped with fastify-plugin) and sets `request.devicegate`.
 */
export async function devicegateResource(app: FastifyInstance, options: DevicegateResourceOptions): Promise<void> {
  app.addHook('onRequest', async (request, reply) => verifyInto(options.server, request, reply, options.scopes ?? []))
}
// Apply the hook to the registering context rather than a child one (what fastify-plugin does).
;(devicegateResource as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true
