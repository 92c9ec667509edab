/**
 * Groups from an upstream provider drive policy, so an ID Token that only points at the groups —
 * a distributed claim (OpenID Connect Core §5.6.2), as Entra ID sends above 200 groups — must not
 * be read as "no groups" (that would lift every rule denying by group): the sign-in fails closed
 * with a page that says why, nobody is signed in, and the stored groups stay as they were.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeIdp, upstreamPageSession, type FakeIdp } from './support/fake-idp.js'
import { fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

let t: TestServer
let idp: FakeIdp
let nextClaims: Record<string, unknown> = {}

beforeAll(async () => {
  idp = await startFakeIdp({ clientId: 'devicegate', subject: () => nextClaims })
  process.env.DG_TEST_GROUPS_SECRET = 'upstream-secret-0123456789'
  t = await startTestServer({
    config: await fixtureConfigFile({ identity_providers: [{ id: 'corp', issuer: idp.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_GROUPS_SECRET' }] }),
  })
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

describe('OpenID Connect Core §5.6.2 distributed groups claim', () => {
  it('refuses the sign-in (400 page, no session, audited) and keeps the stored groups', async () => {
    nextClaims = { sub: 'sub-carl', preferred_username: 'carl@example.com', groups: ['contractors'] }
    await upstreamPageSession(t.url, 'corp')
    const carl = t.server.identity.directory.byUserName('carl@example.com')!
    expect(carl.groups).toEqual(['contractors'])

    nextClaims = { sub: 'sub-carl', preferred_username: 'carl@example.com', _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.example/v1.0/users/x/getMemberObjects' } } }
    const start = await fetch(`${t.url}/device/upstream/corp/start`, { redirect: 'manual' })
    const state = start.headers.getSetCookie().find((c) => c.startsWith('dg_upstream='))!.split(';')[0]!
    const atIdp = await fetch(start.headers.get('location')!, { redirect: 'manual' })
    const res = await fetch(atIdp.headers.get('location')!, { redirect: 'manual', headers: { cookie: state } })
    expect(res.status).toBe(400)
    expect(res.headers.getSetCookie().some((c) => c.startsWith('dg_session='))).toBe(false)
    expect(await res.text()).toContain('Groups not received')
    expect(t.server.identity.directory.person(carl.id)?.groups).toEqual(['contractors'])
    await t.server.governance.audit?.flush()
    const failed = (await t.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === 'session.upstream_failed')
    expect(JSON.parse(failed.at(-1)!.details)).toMatchObject({ provider: 'corp', failure: 'groups_unavailable' })
  })
})
