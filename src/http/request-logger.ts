/**
 * `request.log` made on first use: fastify gives every request a child logger bound to its id,
 * and building a pino child (bindings serialized through the redaction paths) was 2–3 % of a
 * request, while almost no request logs anything (the access line has its own logger).
 */
import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'pino'

/** A pino log method, as called: `(obj?, msg?, ...interpolation)`. */
type LogMethod = (this: FastifyBaseLogger, ...args: unknown[]) => void

/**
 * A {@link FastifyBaseLogger} that creates `parent.child(bindings, options)` the first time a line is
 * logged, a child is asked for or the level is changed, and forwards to it from then on; reading
 * `level` does not create it. Lines come out exactly as the eager child's would (same bindings).
 * Methods live on the prototype: a request allocates this one small object, no closures.
 */
export class LazyChildLogger {
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #options: ChildLoggerOptions
  #child: FastifyBaseLogger | undefined

  constructor(parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #logger(): FastifyBaseLogger {
    return (this.#child ??= this.#parent.child(this.#bindings, this.#options))
  }

  #log(level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace', args: unknown[]): void {
    const logger = this.#logger()
    ;(logger[level] as LogMethod).apply(logger, args)
  }

  get level(): string {
    return this.#child?.level ?? this.#options.level ?? this.#parent.level
  }
  set level(level: string) {
    this.#logger().level = level
  }

  fatal(...args: unknown[]): void {
    this.#log('fatal', args)
  }
  error(...args: unknown[]): void {
    this.#log('error', args)
  }
  warn(...args: unknown[]): void {
    this.#log('warn', args)
  }
  info(...args: unknown[]): void {
    this.#log('info', args)
  }
  debug(...args: unknown[]): void {
    this.#log('debug', args)
  }
  trace(...args: unknown[]): void {
    this.#log('trace', args)
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger().child(bindings, options)
  }
}

/** fastify `childLoggerFactory`: a {@link LazyChildLogger} per request instead of a pino child. */
export const lazyChildLoggerFactory: NonNullable<FastifyServerOptions['childLoggerFactory']> = (logger, bindings, options) =>
  new LazyChildLogger(logger, bindings, options) as unknown as FastifyBaseLogger
