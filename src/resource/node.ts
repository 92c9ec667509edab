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
 * Verifies `req`; on failure answers it with the challenge and returns undefined.
 * @throws anything that is not a {@link ResourceAuthError} (a bug, not a bad request).
 */
export async function authorize(
  server: ResourceServer,
  req: IncomingMessage,
  res: ServerResponse,
  options: { scopes?: readonly string[]; clientIp?: string } = {},
): Promise<VerifiedAccess | undefined> {
  try {
    return await server.verifyRequest(req, { ...options, ...(options.clientIp === undefined && req.socket?.remoteAddress ? { clientIp: req.socket.remoteAddress } : {}) })
  } catch (err) {
    if (err instanceof ResourceAuthError) {
      writeResourceError(res, err)
      return undefined
    }
    throw err
  }
}
