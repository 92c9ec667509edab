/**
 * SCIM 2.0 (RFC 7644) on PostgreSQL: what a request can carry that a PostgreSQL text column refuses
 * (U+0000, SQLSTATE 22021) is a client error — 400 `invalidValue` in a body, 404 in a resource id —
 * never a 500 (SCIM's own error handler is not reached by the app-wide data-exception backstop).
 */
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freshPgSchema } from './support/pg-schema.js'
import { basic, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('SCIM tests on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)')

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User'
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group'
const SECRET = 'provisioner-secret-0123456789abcdef'

describe.skipIf(!PG_URL)('SCIM on PostgreSQL: U+0000 is a client error, not a 500', () => {
  let t: TestServer
  let token: string
  let schema: { url: string; drop(): Promise<void> } | undefined

  beforeAll(async () => {
    schema = await freshPgSchema(PG_URL!, 'dg_scim_pg')
    const file = await fixtureConfigFile()
    t = await startTestServer({
      storageUrl: schema.url,
      config: await fixtureConfigFile({
        clients: [
          ...file.clients,
          { client_id: 'provisioner', type: 'confidential', client_secret_hash: await hash(SECRET), grant_types: ['client_credentials'], scopes: ['scim'], access_token_format: 'opaque' },
        ],
        identity: { scim: { enabled: true } },
      }),
    })
    token = (await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'scim' }, { authorization: basic('provisioner', SECRET) })).json.access_token as string
  })
  afterAll(async () => {
    await t?.close()
    await schema?.drop()
  })

  const scim = async (method: string, path: string, raw?: string) => {
    const res = await fetch(`${t.url}/scim/v2${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(raw !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
      ...(raw !== undefined ? { body: raw } : {}),
    })
    const text = await res.text()
    return { status: res.status, json: text ? (JSON.parse(text) as any) : undefined }
  }

  it('refuses U+0000 in a User or Group body with 400 invalidValue, storing nothing', async () => {
    for (const [path, raw] of [
      ['/Users', `{"schemas":["${USER}"],"userName":"nul\\u0000"}`],
      ['/Groups', `{"schemas":["${GROUP}"],"displayName":"nul\\u0000"}`],
    ] as const) {
      const res = await scim('POST', path, raw)
      expect(res.status, path).toBe(400)
      expect(res.json).toMatchObject({ status: '400', scimType: 'invalidValue' })
      expect((await scim('GET', path)).json.totalResults).toBe(0)
    }
  })

  it('answers 404 for a resource id with U+0000, whatever the method', async () => {
    for (const path of ['/Users/%00', '/Groups/%00', '/Groups/a%00b']) {
      expect((await scim('GET', path)).status, `GET ${path}`).toBe(404)
      expect((await scim('DELETE', path)).status, `DELETE ${path}`).toBe(404)
      expect((await scim('PUT', path, `{"schemas":["${GROUP}"],"displayName":"x"}`)).status, `PUT ${path}`).toBe(404)
    }
  })

  it('still works for well-formed requests afterwards', async () => {
    const u = await scim('POST', '/Users', `{"schemas":["${USER}"],"userName":"after"}`)
    expect(u.status).toBe(201)
    const g = await scim('POST', '/Groups', `{"schemas":["${GROUP}"],"displayName":"team","members":[{"value":"${u.json.id}"}]}`)
    expect(g.status).toBe(201)
    expect((await scim('GET', `/Groups/${g.json.id}`)).json.members).toHaveLength(1)
  })
})
