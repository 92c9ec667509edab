/**
 * The {@link EphemeralStore} on Redis (`storage.ephemeral.url: redis://…`), with ioredis.
 *
 * Keys (all under the configured prefix, default `devicegate:`):
 * - `poll:<device grant id>` — a hash `{ l: last poll (epoch s), i: interval (s) }`, decided by
 *   one Lua script (atomic: Redis runs a script alone), expiring 15 minutes after the last poll;
 * - `jti:<sha256(jkt, jti)>` — `SET NX EX` until the proof's `iat` is no longer accepted;
 * - `rc:<window seconds>:<window start>:<counter key>` — a fixed-window rate-limit counter
 *   (sign-in and TOTP failures, {@link RateCounterStore}): `INCR`, expiring one window after
 *   its window ends (the window is in the key, so expiry is only clean-up).
 *
 * A key missing (first poll, evicted, or Redis restarted empty) is seeded from the
 * `device_grants` row, which the poll write-back keeps within a second. Redis errors and
 * timeouts become `StoreUnavailableError` (503), like a lost database.
 */
import { Redis } from 'ioredis'
import type { EphemeralStore, PollDecision } from './ephemeral.js'
import { windowStartOf, type RateCounterStore } from './rate-counters.js'
import { StoreUnavailableError } from './errors.js'
import { SLOW_DOWN_INCREMENT_SECONDS, type PollState } from './poll-times.js'

/** A poll entry lives this long (seconds) after its last poll; the row takes over afterwards. */
export const POLL_ENTRY_TTL_SECONDS = 15 * 60

/**
 * KEYS[1] the poll key; ARGV now, ttl, increment, and, when seeding, the row's interval and last
 * poll ('' for never). Returns nil when the key is missing and no seed was given, else
 * { tooFast (0|1), interval }.
 */
const POLL_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'l', 'i')
local last, interval = tonumber(s[1]), tonumber(s[2])
if interval == nil then
  if ARGV[4] == nil then return nil end
  interval = tonumber(ARGV[4])
  last = tonumber(ARGV[5])
end
local now = tonumber(ARGV[1])
local tooFast = 0
if last ~= nil and now < last + interval then
  tooFast = 1
  interval = interval + tonumber(ARGV[3])
end
redis.call('HSET', KEYS[1], 'l', now, 'i', interval)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return { tooFast, interval }
`

/** KEYS[1] the counter key; ARGV the key's time to live (seconds). Returns the new count. */
const COUNTER_SCRIPT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
`

type CounterScript = (key: string, ttlSeconds: number) => Promise<number>

type PollScript = (key: string, ...args: (string | number)[]) => Promise<[number, number] | null>

export interface RedisEphemeralOptions {
  /** `redis://` or `rediss://` URL. */
  url: string
  /** Prefix of every key, so several deployments (or tests) can share one Redis. */
  keyPrefix: string
  /** Reads the seed of a poll entry from the `device_grants` row; undefined when there is no such grant. */
  loadPollState: (id: string) => Promise<PollState | undefined>
  /** Longest wait for one command, milliseconds; then `StoreUnavailableError`. Default: 5000. */
  commandTimeoutMillis?: number
}

export class RedisEphemeralStore implements EphemeralStore, RateCounterStore {
  readonly kind = 'redis'
  readonly #redis: Redis & { devicegatePoll: PollScript; devicegateCount: CounterScript }
  readonly #load: RedisEphemeralOptions['loadPollState']

  constructor(options: RedisEphemeralOptions) {
    const timeout = options.commandTimeoutMillis ?? 5_000
    const redis = new Redis(options.url, {
      keyPrefix: options.keyPrefix,
      // Connects on the first command.
      lazyConnect: true,
      connectTimeout: timeout,
      commandTimeout: timeout,
      // A command waits for one reconnection at most, then fails (503) instead of queueing.
      maxRetriesPerRequest: 1,
      // The commands of one event-loop turn (the polls and proofs of the requests read in it) go
      // to Redis in one write and are answered in one: fewer system calls on both sides per
      // command, most where an instance serves many concurrent requests. Each command still runs
      // alone and atomically in Redis, in the order sent.
      enableAutoPipelining: true,
    })
    // A dropped connection emits 'error' while ioredis reconnects; commands report it themselves.
    redis.on('error', () => {})
    redis.defineCommand('devicegatePoll', { numberOfKeys: 1, lua: POLL_SCRIPT })
    redis.defineCommand('devicegateCount', { numberOfKeys: 1, lua: COUNTER_SCRIPT })
    this.#redis = redis as Redis & { devicegatePoll: PollScript; devicegateCount: CounterScript }
    this.#load = options.loadPollState
  }

  async decidePoll(id: string, now: number): Promise<PollDecision | undefined> {
    const key = `poll:${id}`
    let result = await guard(() => this.#redis.devicegatePoll(key, now, POLL_ENTRY_TTL_SECONDS, SLOW_DOWN_INCREMENT_SECONDS))
    if (result === null) {
      const seed = await this.#load(id)
      if (seed === undefined) return undefined
      // Another instance may seed it meanwhile: the script uses the seed only if the key is still missing.
      result = await guard(() =>
        this.#redis.devicegatePoll(key, now, POLL_ENTRY_TTL_SECONDS, SLOW_DOWN_INCREMENT_SECONDS, seed.intervalSeconds, seed.lastPolledAt ?? ''),
      )
    }
    if (result === null) throw new StoreUnavailableError('redis: the poll script returned nothing for a seeded key')
    return { tooFast: result[0] === 1, intervalSeconds: Number(result[1]) }
  }

  async rememberJti(key: string, expiresAt: number, now: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(expiresAt - now))
    return (await guard(() => this.#redis.set(`jti:${key}`, '1', 'EX', ttl, 'NX'))) === 'OK'
  }

  /** One script: `INCR`, and `EXPIRE` on the window's first hit; atomic across instances. */
  async incrementCounter(key: string, windowSeconds: number, now: number): Promise<number> {
    const start = windowStartOf(windowSeconds, now)
    const ttl = Math.max(1, start + 2 * windowSeconds - now)
    return Number(await guard(() => this.#redis.devicegateCount(`rc:${windowSeconds}:${start}:${key}`, ttl)))
  }

  async readCounter(key: string, windowSeconds: number, now: number): Promise<number> {
    const value = await guard(() => this.#redis.get(`rc:${windowSeconds}:${windowStartOf(windowSeconds, now)}:${key}`))
    return value === null ? 0 : Number(value)
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect())
  }
}

async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (error) {
    throw new StoreUnavailableError(`redis: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
  }
}
