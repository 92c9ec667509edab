/**
 * The RFC 8935 push endpoint of the Shared Signals receiver: `POST /ssf/push` with
 * `Content-Type: application/secevent+jwt` and the SET as the body. Answers 202 Accepted with no
 * body when the SET is accepted (a retransmission too), or 400 with `{ "err", "description" }`
 * (RFC 8935 §2.3) when it is refused — and then nothing was recorded or changed; a repeated
 * `Authorization` field is refused so (`invalid_request`), whatever its lines.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import { authorizationField } from '../protocol/bearer.js'
import { OAuthError } from '../protocol/errors.js'
import { SetError, type SharedSignalsReceiver } from './shared-signals.js'

export const SSF_PUSH_PATH = '/ssf/push'

function refuse(reply: FastifyReply, err: SetError): FastifyReply {
  return reply.code(400).header('cache-control', 'no-store').type('application/json').send(JSON.stringify({ err: err.err, description: err.description }))
}

/** Registers the push endpoint in its own scope (its own body parser and error format). */
export async function registerSharedSignalsRoutes(app: FastifyInstance, receiver: SharedSignalsReceiver): Promise<void> {
  await app.register(async (api) => {
    api.removeAllContentTypeParsers()
    api.addContentTypeParser(['application/secevent+jwt', 'application/jwt'], { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => done(null, body))
    api.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 64 * 1024 }, (_req, _body, done) => done(null, undefined))
    api.setErrorHandler((err, request, reply) => {
      // What the app-wide onRequest hook refuses before this route (a Content-Encoding: 415, an
      // HTTP/1.1 request without Host: 400, an Expect it cannot meet: 417, the 503 while draining)
      // comes as an OAuthError: its status and headers (Retry-After), in the RFC 8935 §2.3 body.
      if (err instanceof OAuthError)
        return reply
          .code(err.status)
          .headers({ ...err.headers })
          .header('cache-control', 'no-store')
          .type('application/json')
          .send(JSON.stringify({ err: err.error, description: err.description ?? err.error }))
      const status = (err as { statusCode?: number }).statusCode
      if (status !== undefined && status >= 400 && status < 500) return refuse(reply, new SetError('invalid_request', 'the request could not be read'))
      request.log.error({ err }, 'security event processing failed')
      return reply.code(500).header('cache-control', 'no-store').type('application/json').send(JSON.stringify({ err: 'server_error', description: 'internal error' }))
    })
    api.post(SSF_PUSH_PATH, async (request, reply) => {
      const body = request.body
      if (typeof body !== 'string' || body.trim() === '') return refuse(reply, new SetError('invalid_request', 'send the SET as the body with Content-Type: application/secevent+jwt'))
      try {
        // Read as received: node's headers.authorization keeps only the first line of a repeated
        // field, which is refused whatever its lines (RFC 9110 §5.3: not a list field).
        const authorization = authorizationField(request.raw)
        if (Array.isArray(authorization)) throw new SetError('invalid_request', 'the Authorization header must be sent once')
        await receiver.receive(body.trim(), 'push', authorization)
      } catch (err) {
        if (err instanceof SetError) {
          request.log.warn({ event: 'ssf.set_refused', err: err.err, description: err.description, ip: request.clientIp }, 'security event refused')
          return refuse(reply, err)
        }
        throw err
      }
      return reply.code(202).header('cache-control', 'no-store').send()
    })
  })
}
