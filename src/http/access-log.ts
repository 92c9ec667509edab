/**
 * The one access-log line per request, written by both paths that answer requests (fastify's
 * routes and the fast path, see fast-routes.ts):
 *
 * `{"level":30,"time":…,"pid":…,"hostname":"…","reqId":"req-1","method":"POST","path":"/token","status":400,"ms":1.2,"clientIp":"…","msg":"request"}`
 *
 * The line is exactly what a plain pino logger on the same destination would write for
 * `info({ reqId, method, path, status, ms, clientIp }, 'request')` (level and base fields as pino
 * writes them), built by one template instead of pino's per-line machinery, which was several
 * percent of a poll. The fields are fixed and hold no secret, so the logger's redaction is not
 * needed (the query string, which may carry a user code, is cut off before it gets here).
 */
import { hostname } from 'node:os'
import type { FastifyBaseLogger } from 'fastify'
import pino from 'pino'

/**
 * Writes one access-log line.
 * @param reqId the request id (`req-1`, …).
 * @param path the request path without its query string (sent by the client: escaped here).
 * @param status the HTTP status sent.
 * @param ms from the request's arrival to the response's end, in milliseconds (rounded to 0.1).
 * @param clientIp the client address (client-address.ts).
 */
export type AccessLog = (reqId: string, method: string, path: string, status: number, ms: number, clientIp: string) => void

/** Characters a JSON string cannot hold unescaped: `"`, `\`, controls, and lone surrogate halves. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/** `value` as a JSON string; `JSON.stringify` only when something needs escaping. */
function jsonString(value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`
}

/**
 * The access log of `logger`: same destination, written when `logger`'s level (read now) lets
 * `info` through. Falls back to `logger.info` (with its redaction) when the destination cannot be
 * reached (a logger that is not pino's).
 */
export function createAccessLog(logger: FastifyBaseLogger): AccessLog {
  const destination = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as pino.DestinationStream | undefined
  if (destination === undefined)
    return (reqId, method, path, status, ms, clientIp) => logger.info({ reqId, method, path, status, ms, clientIp }, 'request')
  if (!(pino.levels.values[logger.level]! <= pino.levels.values.info!)) return () => {}
  // pino's default base fields, in its order: level, time, pid, hostname.
  const base = `,"pid":${process.pid},"hostname":${jsonString(hostname())}`
  return (reqId, method, path, status, ms, clientIp) => {
    destination.write(
      `{"level":30,"time":${Date.now()}${base},"reqId":${jsonString(reqId)},"method":${jsonString(method)},"path":${jsonString(path)},` +
        `"status":${status},"ms":${ms},"clientIp":${jsonString(clientIp)},"msg":"request"}\n`,
    )
  }
}
