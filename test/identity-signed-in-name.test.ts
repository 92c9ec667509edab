/**
 * People from an upstream provider (or SCIM) have an opaque id (a UUID): the verification pages'
 * "Signed in as" shows their display name — HTML-escaped — or, without one, their user name;
 * never the internal id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeIdp, upstreamPageSession, type FakeIdp } from './support/fake-idp.js'
import { fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

let t: TestServer
let idp: FakeIdp
let nextClaims: Record<string, unknown> = {}

beforeAll(async () => {
  idp = await startFakeIdp({ clientId: 'devicegate', subject: () => nextClaims })
  process.env.DG_TEST_SHOWN_NAME_SECRET = 'upstream-secret-0123456789'
  t = await startTestServer({
    config: await fixtureConfigFile({ identity_providers: [{ id: 'corp', issuer: idp.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_SHOWN_NAME_SECRET' }] }),
  })
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

describe('"Signed in as" for people from an upstream provider', () => {
  it('shows the display name, escaped, not the internal id', async () => {
    nextClaims = { sub: 'sub-dana', preferred_username: 'dana@example.com', name: 'Dana <img src=x onerror=alert(1)> & "Co"' }
    const page = await upstreamPageSession(t.url, 'corp')
    const id = t.server.identity.directory.byUserName('dana@example.com')!.id
    const body = (await page.get('/device')).body
    expect(body).toContain('Signed in as <strong>Dana &lt;img src=x onerror=alert(1)&gt; &amp; &quot;Co&quot;</strong>')
    expect(body).not.toContain('<img')
    expect(body).not.toContain(id)
  })

  it('falls back to the user name when the provider gives no display name', async () => {
    nextClaims = { sub: 'sub-eli', preferred_username: 'eli@example.com' }
    const page = await upstreamPageSession(t.url, 'corp')
    const id = t.server.identity.directory.byUserName('eli@example.com')!.id
    const body = (await page.get('/device')).body
    expect(body).toContain('Signed in as <strong>eli@example.com</strong>')
    expect(body).not.toContain(id)
  })
})
