/**
 * `request.log` is built on first use (issue 17: a pino child per request was 2–3 % of a
 * request's CPU): a request that logs nothing costs no child logger, and one that logs writes
 * exactly the line the eager child would have, request id and redaction included.
 */
import { Writable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import { describe, expect, it } from 'vitest'
import { LazyChildLogger } from '../src/http/request-logger.js'
import { createLogger } from '../src/server.js'

function capture(level = 'info') {
  const lines: string[] = []
  const logger = createLogger(level, new Writable({ write: (chunk, _e, done) => (lines.push(...String(chunk).split('\n').filter(Boolean)), done()) }))
  return { logger, lines }
}

const withoutTime = (line: string) => ({ ...JSON.parse(line), time: 0 })

describe('request.log made on first use', () => {
  it('creates no pino child while the request logs nothing, reading the level included', () => {
    const { logger } = capture()
    let children = 0
    const parent = new Proxy(logger, {
      get: (target, name, receiver) => (name === 'child' ? (...a: Parameters<typeof logger.child>) => (children++, target.child(...a)) : Reflect.get(target, name, receiver)),
    }) as unknown as FastifyBaseLogger
    const log = new LazyChildLogger(parent, { reqId: 'req-1' }, {})
    expect(log.level).toBe('info')
    expect(children).toBe(0)
    log.warn({ n: 1 }, 'first')
    log.error('second')
    expect(children).toBe(1)
  })

  it('writes the same lines as an eager child: request id bound, secrets redacted, interpolation kept', async () => {
    const eager = capture()
    const lazy = capture()
    const err = new Error('boom')
    const write = (log: FastifyBaseLogger) => {
      log.info({ body: { refresh_token: 'rt-secret', client_id: 'cli' } }, 'refresh for %s', 'cli')
      log.error({ err }, 'unhandled error')
      log.debug('below the level')
    }
    write(eager.logger.child({ reqId: 'req-7' }, {}))
    write(new LazyChildLogger(lazy.logger, { reqId: 'req-7' }, {}) as unknown as FastifyBaseLogger)
    await new Promise((r) => setImmediate(r))
    expect(lazy.lines).toHaveLength(2)
    expect(lazy.lines.map(withoutTime)).toEqual(eager.lines.map(withoutTime))
    expect(JSON.parse(lazy.lines[0]!)).toMatchObject({ reqId: 'req-7', msg: 'refresh for cli', body: { refresh_token: '[redacted]', client_id: 'cli' } })
    expect(lazy.lines.join('\n')).not.toContain('rt-secret')
  })

  it('applies a per-route level (fastify logLevel) given in the child options', async () => {
    const { logger, lines } = capture('info')
    const log = new LazyChildLogger(logger, { reqId: 'req-9' }, { level: 'warn' })
    expect(log.level).toBe('warn')
    log.info('dropped')
    log.warn('kept')
    await new Promise((r) => setImmediate(r))
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['kept'])
  })
})
