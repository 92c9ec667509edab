/**
 * The storage contract suite's harness (test/store-contract/*.test.ts): every domain's contract
 * runs against every adapter on a real database — SQLite on a temporary file always; PostgreSQL
 * when DEVICEGATE_TEST_PG_URL is set (skipped loudly otherwise), each file in its own schema; and
 * PostgreSQL with its ephemeral state in Redis when DEVICEGATE_TEST_REDIS_URL is set as well,
 * each file under its own key prefix.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect } from 'vitest'
import { openStore } from '../../src/storage/index.js'
import type { DeviceGrantRecord, Store } from '../../src/storage/store.js'
import { deviceGrant, NOW } from './store-fixtures.js'

export interface Adapter {
  name: string
  /** Opens a migrated store; a second call opens another, independent instance (own pool). */
  open(): Promise<Store>
  /** Whether two instances can race across connections (separate pools). */
  multiInstance: boolean
  /**
   * Where the ephemeral state (poll times, DPoP jtis) of several instances lives — `unlogged` or
   * `redis` — or undefined where one process keeps it (SQLite).
   */
  ephemeral?: 'unlogged' | 'redis'
  /** The Redis key prefix of this adapter's stores (`redis` only). */
  redisKeyPrefix?: string
  /** Loses the ephemeral state, as a crash of its store would (UNLOGGED tables truncated; Redis keys gone). */
  loseEphemeral?(): Promise<void>
  /** The storage URL `open()` uses (for a server process on the same database). */
  url(): string
  setup(): Promise<void>
  teardown(): Promise<void>
}

const sqliteAdapter = (): Adapter => {
  let dir = ''
  return {
    name: 'sqlite',
    multiInstance: false,
    async setup() {
      dir = await mkdtemp(join(tmpdir(), 'devicegate-store-'))
    },
    url: () => `sqlite:${join(dir, 'nested', 'devicegate.db')}`,
    open: () => openStore(`sqlite:${join(dir, 'nested', 'devicegate.db')}`),
    async teardown() {
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** PostgreSQL server of the contract suite, e.g. `postgres://postgres@127.0.0.1:5432/test`. */
export const PG_URL = process.env.DEVICEGATE_TEST_PG_URL

/** Redis of the contract suite (with PG_URL): the ephemeral state on Redis, e.g. `redis://127.0.0.1:6379`. */
export const REDIS_URL = process.env.DEVICEGATE_TEST_REDIS_URL

/** Deletes every Redis key under `prefix` (a test's own keys). */
export async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      if (keys.length > 0) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

/**
 * PostgreSQL in its own schema; with `redisUrl`, the ephemeral state (poll times, DPoP jtis) in
 * Redis under a key prefix of its own, deleted at teardown.
 */
const postgresAdapter = (baseUrl: string, redisUrl?: string): Adapter => {
  const schema = `dg_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const keyPrefix = `dg_test:${schema}:`
  const admin = () => new pg.Client({ connectionString: baseUrl })
  const schemaUrl = () => {
    const url = new URL(baseUrl)
    url.searchParams.set('options', `-c search_path=${schema}`)
    return url.toString()
  }
  return {
    name: redisUrl ? 'postgres+redis' : 'postgres',
    multiInstance: true,
    ephemeral: redisUrl ? 'redis' : 'unlogged',
    ...(redisUrl ? { redisKeyPrefix: keyPrefix } : {}),
    async loseEphemeral() {
      if (redisUrl) return deleteRedisKeys(redisUrl, keyPrefix)
      const client = admin()
      await client.connect()
      await client.query(`truncate ${schema}.device_poll_times, ${schema}.dpop_jtis`)
      await client.end()
    },
    async setup() {
      const client = admin()
      await client.connect()
      await client.query(`create schema ${schema}`)
      await client.end()
    },
    url: schemaUrl,
    open: () => openStore(schemaUrl(), redisUrl ? { ephemeral: { kind: 'redis', url: redisUrl, keyPrefix } } : {}),
    async teardown() {
      const client = admin()
      await client.connect()
      await client.query(`drop schema if exists ${schema} cascade`)
      await client.end()
      if (redisUrl) await deleteRedisKeys(redisUrl, keyPrefix)
    },
  }
}

/** A fresh SQLite adapter, and a PostgreSQL one (`run` only when `DEVICEGATE_TEST_PG_URL` is set). */
export function storeAdapters(): { adapter: Adapter; run: boolean }[] {
  return [
    { adapter: sqliteAdapter(), run: true },
    { adapter: postgresAdapter(PG_URL ?? 'postgres://unset/unset'), run: Boolean(PG_URL) },
  ]
}

/** What a domain's contract sees: the adapter (known while tests are collected) and its store. */
export interface StoreContract {
  readonly adapter: Adapter
  /** The migrated store, open from `beforeAll` to `afterAll`. */
  readonly store: Store
}

/**
 * Declares the contract of one storage domain, once per adapter, as
 * `<adapter> store contract: <title>`, each on its own fresh database.
 */
export function describeStoreContract(title: string, body: (contract: StoreContract) => void): void {
  if (!PG_URL) {
    console.warn(
      `PostgreSQL contract tests SKIPPED (${title}): set DEVICEGATE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run them`,
    )
  }
  if (PG_URL && !REDIS_URL) {
    console.warn(`PostgreSQL + Redis contract tests SKIPPED (${title}): set DEVICEGATE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) too`)
  }
  const adapters = [
    { adapter: sqliteAdapter(), run: true },
    { adapter: postgresAdapter(PG_URL ?? 'postgres://unset/unset'), run: Boolean(PG_URL) },
    { adapter: postgresAdapter(PG_URL ?? 'postgres://unset/unset', REDIS_URL ?? 'redis://unset'), run: Boolean(PG_URL && REDIS_URL) },
  ]
  for (const { adapter, run } of adapters) {
    const suite = run ? describe : describe.skip
    suite(`${adapter.name} store contract: ${title}`, () => {
      let store: Store | undefined
      beforeAll(async () => {
        await adapter.setup()
        store = await adapter.open()
      })
      afterAll(async () => {
        await store?.close()
        await adapter.teardown()
      })
      body({
        adapter,
        get store() {
          if (store === undefined) throw new Error('the store opens in beforeAll')
          return store
        },
      })
    })
  }
}

/** Creates a device grant and approves it as `alice` at NOW + 10. */
export async function approvedGrant(store: Store, over: Partial<DeviceGrantRecord> = {}): Promise<DeviceGrantRecord> {
  const g = deviceGrant(over)
  await store.createDeviceGrant(g)
  expect(await store.decideDeviceGrant(g.id, 'approved', 'alice', NOW + 10)).toBe(true)
  return g
}
