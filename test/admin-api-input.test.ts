/**
 * Every admin API route validates its path parameters, query and body with one
 * schema (src/governance/admin-schemas.ts) and answers 400 `invalid_request` naming the field for
 * the inputs the fuzz run turned into 500s — repeated query parameters, NUL bytes, numbers beyond
 * 64 bits, malformed cursors, loose dates — on SQLite and on PostgreSQL; the OpenAPI document is
 * generated from the same schemas; PostgreSQL data exceptions (SQLSTATE class 22) map to 400.
 */
import { hash } from '@node-rs/argon2'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_ROUTES, type AdminRouteSpec } from '../src/governance/admin-schemas.js'
import { isDataException } from '../src/storage/data-errors.js'
import { freshPgSchema } from './support/pg-schema.js'
import { basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('admin API input tests on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)')

const TIME = 'must be an RFC 3339 date-time with offset (2026-01-31T12:00:00Z) or epoch seconds'
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
const JKT = 'A'.repeat(43)

/** [name, method, path, body, expected error_description]; every row answers 400 invalid_request. */
const BAD_INPUTS: Array<[string, 'GET' | 'POST', string, unknown, string]> = [
  ['repeated query parameter', 'GET', '/grants?limit=1&limit=2', undefined, '"limit" must be given once'],
  ['repeated enum parameter', 'GET', '/grants?status=active&status=revoked', undefined, '"status" must be given once'],
  ['NUL byte in a query string', 'GET', '/grants?client_id=cl%00i', undefined, '"client_id" must not contain NUL or control characters'],
  ['NUL byte in a path parameter', 'GET', '/grants/g%00x', undefined, '"id" must not contain NUL or control characters'],
  ['NUL byte in a user name', 'GET', '/users/al%00ice/grants', undefined, '"username" must not contain NUL or control characters'],
  ['after_seq beyond 64 bits', 'GET', '/audit/events?after_seq=18446744073709551616', undefined, '"after_seq" must be an integer between 0 and 9007199254740991'],
  ['after_seq beyond 2^63', 'GET', '/audit/events?after_seq=9223372036854775808', undefined, '"after_seq" must be an integer between 0 and 9007199254740991'],
  ['negative after_seq', 'GET', '/audit/events?after_seq=-1', undefined, '"after_seq" must be an integer between 0 and 9007199254740991'],
  ['limit in exponent form', 'GET', '/grants?limit=1e3', undefined, '"limit" must be an integer between 1 and 1000'],
  ['limit above the maximum', 'GET', '/anomalies?limit=10001', undefined, '"limit" must be an integer between 1 and 10000'],
  ['cursor that is not base64url JSON', 'GET', '/grants?cursor=%25%25%25', undefined, '"cursor" is invalid'],
  ['cursor with a time beyond 64 bits', 'GET', `/grants?cursor=${b64([1e30, 'g'])}`, undefined, '"cursor" is invalid'],
  ['cursor with a NUL in its id', 'GET', `/grants?cursor=${b64([1, 'g\u0000'])}`, undefined, '"cursor" is invalid'],
  ['cursor of the wrong shape', 'GET', `/grants?cursor=${b64({ a: 1 })}`, undefined, '"cursor" is invalid'],
  ['loose date Date.parse would guess', 'GET', '/grants?created_from=March%207', undefined, `"created_from" ${TIME}`],
  ['date without offset', 'GET', '/anomalies?since=2026-01-01T00:00:00', undefined, `"since" ${TIME}`],
  ['calendar date that does not exist', 'GET', '/grants?created_before=2026-02-30T00:00:00Z', undefined, `"created_before" ${TIME}`],
  ['epoch seconds beyond year 9999', 'GET', '/audit/events?since=99999999999999', undefined, `"since" ${TIME}`],
  ['unknown query parameter', 'GET', '/grants?bogus=1', undefined, 'unknown query parameter "bogus"'],
  ['bad status', 'GET', '/grants?status=weird', undefined, '"status" must be active or revoked'],
  ['bad flow status', 'GET', '/flows?status=lost', undefined, '"status" must be pending, approved, redeemed, denied, refused or expired'],
  ['bad include_retired', 'GET', '/devices?include_retired=yes', undefined, '"include_retired" must be true or false'],
  ['malformed jkt in the path', 'GET', '/devices/short', undefined, '"jkt" must be 43 base64url characters (RFC 7638 SHA-256 thumbprint)'],
  ['unknown revocation kind', 'POST', '/revocations', { kind: 'nope' }, '"kind" must be one of token, grant, user, client, jkt, before, pattern'],
  ['revocation without kind', 'POST', '/revocations', {}, '"kind" must be one of token, grant, user, client, jkt, before, pattern'],
  ['NUL byte in a body string', 'POST', '/revocations', { kind: 'user', username: 'a\u0000b' }, '"username" must not contain NUL or control characters'],
  ['kill-switch time beyond 64 bits', 'POST', '/revocations', { kind: 'before', time: 1e20 }, `"time" ${TIME}`],
  ['kill-switch time in words', 'POST', '/revocations', { kind: 'before', time: 'yesterday' }, `"time" ${TIME}`],
  ['unknown body member', 'POST', '/revocations', { kind: 'user', username: 'x', extra: 1 }, 'unknown body parameter "extra"'],
  ['dry_run that is not a boolean', 'POST', '/revocations', { kind: 'user', username: 'x', dry_run: 'yes' }, '"dry_run" must be a boolean'],
  ['device without jkt or jwk', 'POST', '/devices', { label: 'laptop' }, 'the body must carry "jkt" or "jwk"'],
  ['device label with a control character', 'POST', '/devices', { jkt: JKT, label: 'a\u0007' }, '"label" must not contain NUL or control characters'],
  ['label too long', 'POST', `/devices/${JKT}/label`, { label: 'x'.repeat(201) }, '"label" must be at most 200 characters'],
  ['body member on a bodiless action', 'POST', '/users/alice/disable', { now: true }, 'unknown body parameter "now"'],
  ['body nested deeper than 32 levels', 'POST', '/revocations', { kind: 'user', username: 'x', dry_run: JSON.parse('['.repeat(40) + ']'.repeat(40)) }, 'the body is nested deeper than 32 levels'],
  ['device label with a lone surrogate (RFC 8259 §8.2)', 'POST', '/devices', { jkt: JKT, label: 'a\uD800b' }, 'strings must be well-formed Unicode without U+0000'],
  ['member name with a lone surrogate', 'POST', '/revocations', { kind: 'user', username: 'x', '\uDC00': 1 }, 'strings must be well-formed Unicode without U+0000'],
]

async function adminServer(storageUrl?: string) {
  const file = await fixtureConfigFile()
  const admin = {
    client_id: 'admin',
    name: 'Admin console',
    type: 'confidential',
    client_secret_hash: await hash(FIXTURE.adminSecret),
    grant_types: ['client_credentials'],
    scopes: ['admin'],
    access_token_format: 'opaque',
  }
  const t = await startTestServer({ config: await fixtureConfigFile({ clients: [...file.clients, admin] }), ...(storageUrl ? { storageUrl } : {}) })
  const tok = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'admin' }, { authorization: basic('admin', FIXTURE.adminSecret) })
  return { t, token: tok.json.access_token as string }
}

const STORES: Array<{ name: string; run: boolean; url: () => Promise<{ url?: string; drop(): Promise<void> }> }> = [
  { name: 'sqlite', run: true, url: async () => ({ drop: async () => {} }) },
  {
    name: 'postgres',
    run: Boolean(PG_URL),
    url: () => freshPgSchema(PG_URL!, 'dg_admin_input'),
  },
]

for (const store of STORES) {
  describe.skipIf(!store.run)(`${store.name}: admin API input validation`, () => {
    let t: TestServer
    let token: string
    let drop = async () => {}
    beforeAll(async () => {
      const db = await store.url()
      drop = db.drop
      ;({ t, token } = await adminServer(db.url))
    })
    afterAll(async () => {
      await t?.close()
      await drop()
    })

    async function call(method: string, path: string, body?: unknown) {
      const res = await fetch(`${t.url}/admin/api${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
      return { status: res.status, cacheControl: res.headers.get('cache-control'), json: (await res.json()) as { error?: string; error_description?: string } }
    }

    it.each(BAD_INPUTS)('answers 400 invalid_request for %s', async (_name, method, path, body, description) => {
      const res = await call(method, path, body)
      expect(res.status).toBe(400)
      expect(res.cacheControl).toBe('no-store')
      // RFC 6749 §5.2: error_description excludes '"', so the server quotes names with "'".
      expect(res.json).toEqual({ error: 'invalid_request', error_description: description.replaceAll('"', "'") })
    })

    it('still answers the well-formed edge values: epoch 0, the largest after_seq, a date with an offset', async () => {
      for (const path of [
        '/audit/events?since=0&limit=1',
        '/audit/events?after_seq=9007199254740991',
        '/anomalies?since=2026-01-01T00:00:00%2B02:00',
        `/grants?cursor=${b64([1, 'g_1'])}&created_before=253402300799`,
        '/flows?status=refused&limit=1',
        '/flows?status=expired&client_id=cli',
        `/flows?cursor=${b64([1, 'dg_1'])}`,
      ]) {
        const res = await call('GET', path)
        expect(res.status, path).toBe(200)
      }
    })

    it('checks the token before the input: 401 for a bad input without a token', async () => {
      const res = await fetch(`${t.url}/admin/api/grants?limit=1&limit=2`)
      expect(res.status).toBe(401)
    })
  })
}

describe('admin API OpenAPI document is generated from the route schemas', () => {
  let t: TestServer
  beforeAll(async () => {
    ;({ t } = await adminServer())
  })
  afterAll(async () => t?.close())

  it('lists every route with exactly the query parameters its schema accepts, with their bounds', async () => {
    const doc = (await (await fetch(`${t.url}/admin/api/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string; schema: Record<string, unknown> }>; requestBody?: unknown }>>
    }
    for (const spec of Object.values(ADMIN_ROUTES) as AdminRouteSpec[]) {
      const op = doc.paths[spec.path.replace(/:([A-Za-z_]+)/g, '{$1}')]?.[spec.method.toLowerCase()]
      expect(op, `${spec.method} ${spec.path}`).toBeDefined()
      const query = (op!.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name)
      expect(query.sort()).toEqual(Object.keys(spec.query?.shape ?? {}).sort())
      expect(op!.requestBody !== undefined).toBe(spec.body !== undefined)
    }
    const limit = doc.paths['/grants']!.get!.parameters!.find((p) => p.name === 'limit')!
    expect(limit.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 1000 })
  })
})

describe.skipIf(!PG_URL)('PostgreSQL data exceptions (SQLSTATE class 22)', () => {
  it('recognises 22021 (NUL byte) and 22003 (integer beyond 64 bits) as request faults', async () => {
    const c = new pg.Client({ connectionString: PG_URL })
    await c.connect()
    try {
      const nul = await c.query('select $1::text', ['a\u0000b']).catch((e: unknown) => e)
      expect((nul as { code: string }).code).toBe('22021')
      expect(isDataException(nul)).toBe(true)
      const big = await c.query('select $1::bigint', ['18446744073709551616']).catch((e: unknown) => e)
      expect((big as { code: string }).code).toBe('22003')
      expect(isDataException(big)).toBe(true)
      const missing = await c.query('select * from no_such_table').catch((e: unknown) => e)
      expect(isDataException(missing)).toBe(false)
    } finally {
      await c.end()
    }
  })
})
