/**
 * Plain `node:http` usage of the resource-server helper.
 *
 * ```ts
 * http.createServer(async (req, res) => {
 *   const access = await authorize(rs, req, res, { scopes: ['read'] })
 *   if (!access) return // the challenge has been sent
 *   res.end(JSON.stringify({ hello: access.subject }))
 * })
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ResourceAuthError } from './errors.js'
import type { ResourceServer, VerifiedAccess } from './verifier.js'

/** Writes a {@link ResourceAuthError}: status, `WWW-Authenticate`, `Cache-Control: no-store`, JSON body. */
export function writeResourceError(res: ServerResponse, err: ResourceAuthError): void {
  res.writeHead(err.status, { ...err.headers, 'content-type': 'application/json' })
  res.end(JSON.stringify(err.toJSON()))
}

/**
 * Verifies `req`; on failure answers it with the challenge and returns undefined. On success, sets
 * `DPoP-Nonce` on `res` when the resource requires nonces (`dpop.nonce`, RFC 9449 §9).
 * @throws anything that is not a {@link ResourceAuthError} (a bug, not a bad request).
 */
export async function authorize(
  server: ResourceServer,
  req: IncomingMessage,
  res: ServerResponse,
  options: { scopes?: readonly string[]; clientIp?: string } = {},
): Promise<VerifiedAccess | undefined> {
  try {
    const access = await server.verifyRequest(req, { ...options, ...(options.clientIp === undefined && req.socket?.remoteAddress ? { clientIp: req.socket.remoteAddress } : {}) })
    // RFC 9449 §9: with nonces required (`dpop.nonce`), the answer carries the current one too.
    if (access.dpopNonce !== undefined) res.setHeader('dpop-nonce', access.dpopNonce)
    return access
  } catch (err) {
    if (err instanceof ResourceAuthError) {
      writeResourceError(res, err)
      return undefined
    }
    throw err
  }
}
