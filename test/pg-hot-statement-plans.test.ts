/**
 * The coalesced hot statements of a PostgreSQL store (src/storage/kysely/batched-read.ts): the
 * access-token lookups of introspection (RFC 7662 §2.1), the device grant reads and the UNLOGGED
 * poll decisions of polling (RFC 8628 §3.5). Each must find its rows by primary-key probes, not by
 * reading whole tables, and must run a plan PostgreSQL keeps for the connection instead of planning
 * it again on every call — both held for a statement of fewer than 10 keys (PostgreSQL's guess
 * for an array parameter) on tables of 1,000 rows, where the planner once chose a hash join over
 * sequential scans and a fresh plan on every call. Checked on the statements the store really
 * sends (captured at the driver), replayed by name on a connection of the test's own.
 * Needs DEVICEGATE_TEST_PG_URL (skipped loudly otherwise).
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GENERIC_PLAN_MIN_KEYS, padForGenericPlan } from '../src/storage/kysely/batched-read.js'
import { openStore } from '../src/storage/index.js'
import type { Store } from '../src/storage/store.js'
import { freshPgSchema, withPgClient } from './support/pg-schema.js'
import { bundle, deviceGrant, NOW } from './support/store-fixtures.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('hot statement plans on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL')

/** Rows per table: small enough that a sequential scan looked cheap to the planner. */
const ROWS = 1_000
/** Keys per statement: below the 10 elements PostgreSQL assumes for an array parameter. */
const KEYS = 8

interface Sent {
  name: string
  text: string
  values: unknown[]
}

describe('padForGenericPlan', () => {
  it('pads shorter key arrays with NULL to 10 elements, in order, and leaves longer ones as they are', () => {
    expect(GENERIC_PLAN_MIN_KEYS).toBe(10)
    expect(padForGenericPlan(['a', 'b'])).toEqual(['a', 'b', null, null, null, null, null, null, null, null])
    const eleven = Array.from({ length: 11 }, (_, i) => String(i))
    expect(padForGenericPlan(eleven)).toBe(eleven)
  })
})

describe.skipIf(!PG_URL)('PostgreSQL: coalesced lookups and poll decisions (RFC 7662 §2.1, RFC 8628 §3.5)', () => {
  let schema: Awaited<ReturnType<typeof freshPgSchema>>
  let store: Store
  const sent: Sent[] = []
  const query = pg.Client.prototype.query
  beforeAll(async () => {
    // Record the named statements the store sends; its connections bind `query` when they connect.
    pg.Client.prototype.query = function (this: pg.Client, config: unknown, ...rest: unknown[]) {
      const c = config as Partial<Sent> | null
      if (c && typeof c === 'object' && typeof c.name === 'string' && Array.isArray(c.values) && c.values.some(Array.isArray)) {
        sent.push({ name: c.name, text: c.text!, values: c.values })
      }
      return (query as (...args: unknown[]) => unknown).call(this, config, ...rest)
    } as typeof query
    schema = await freshPgSchema(PG_URL!, 'dg_plans')
    store = await openStore(schema.url, { pendingGrantCache: false })
  })
  afterAll(async () => {
    pg.Client.prototype.query = query
    await store?.close()
    await schema?.drop()
  })

  it(`finds ${KEYS} keys of tables of ${ROWS} rows by primary-key probes, with the plan kept for the connection`, async () => {
    const families = Array.from({ length: ROWS }, () => bundle())
    const grants = Array.from({ length: ROWS }, () => deviceGrant())
    for (let i = 0; i < ROWS; i += 50) {
      await Promise.all(families.slice(i, i + 50).map((b) => store.issueTokens(b)))
      await Promise.all(grants.slice(i, i + 50).map((g) => store.createDeviceGrant(g)))
    }
    await withPgClient(schema.url, (c) => c.query('analyze access_tokens, grants, device_grants'))
    sent.length = 0
    // One event-loop turn each: one statement of KEYS keys each.
    const found = await Promise.all(families.slice(0, KEYS).map((b) => store.findAccessTokenByHash(b.accessToken.tokenHash)))
    expect(found.map((t) => t?.jti)).toEqual(families.slice(0, KEYS).map((b) => b.accessToken.jti))
    const read = await Promise.all(grants.slice(0, KEYS).map((g) => store.findDeviceGrantByDeviceCodeHash(g.deviceCodeHash!)))
    expect(read.map((g) => g?.id)).toEqual(grants.slice(0, KEYS).map((g) => g.id))
    const polls = await Promise.all(grants.slice(0, KEYS).map((g) => store.registerPoll(g.id, NOW)))
    expect(polls.every((p) => !p.tooFast)).toBe(true)

    const statements = [...new Map(sent.map((s) => [s.name, s])).values()]
    expect(statements.map((s) => (s.text.includes('device_poll_times') ? 'polls' : s.text.includes('access_tokens') ? 'tokens' : 'device grants')).sort()).toEqual([
      'device grants',
      'polls',
      'tokens',
    ])
    await withPgClient(schema.url, async (c) => {
      for (const s of statements) {
        // PostgreSQL plans a named statement for its values five times before it may keep one plan.
        for (let i = 0; i < 6; i++) await c.query({ name: s.name, text: s.text, values: s.values })
        const args = s.values.map((v) => c.escapeLiteral(`{${(v as unknown[]).map((x) => (x === null ? 'NULL' : `"${String(x)}"`)).join(',')}}`))
        const plan = (await c.query(`explain execute ${s.name}(${args.join(', ')})`)).rows.map((r) => r['QUERY PLAN'] as string).join('\n')
        expect(plan, s.text).not.toContain('Seq Scan')
        expect(plan, s.text).toMatch(/Index Scan using (access_tokens_pkey|device_grants_pkey)/)
        const { rows } = await c.query('select generic_plans::int as generic_plans from pg_prepared_statements where name = $1', [s.name])
        expect(rows[0]?.generic_plans, s.text).toBeGreaterThan(0)
      }
    })
  }, 120_000)
})
