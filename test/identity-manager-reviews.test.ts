/**
 * A person's manager, whatever its source — the configuration's `users[].manager`, SCIM's
 * enterprise extension `manager.value` (the manager's SCIM `id`, RFC 7643 §4.3), or a mapped
 * upstream claim — is stored on the person and drives access reviews with `reviewers: manager`
 * (issue 15 §1): the campaign item of a person's grant is assigned to their manager, who decides
 * it through the admin API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clientToken, confidentialClient, scimCaller } from './support/identity.js'
import { startFakeIdp, upstreamPageSession, type FakeIdp } from './support/fake-idp.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code'
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User'
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
const SCIM_SECRET = 'provisioner-secret-0123456789abcdef'

let t: TestServer
let idp: FakeIdp
let scimToken: string
let adminToken: string
let nextClaims: Record<string, unknown> = {}

beforeAll(async () => {
  idp = await startFakeIdp({ clientId: 'devicegate', subject: () => nextClaims })
  process.env.DG_TEST_MANAGER_UPSTREAM_SECRET = 'upstream-secret-0123456789'
  const file = await fixtureConfigFile()
  t = await startTestServer({
    config: await fixtureConfigFile({
      clients: [...file.clients, await confidentialClient('provisioner', SCIM_SECRET, 'scim'), await confidentialClient('admin', FIXTURE.adminSecret, 'admin')],
      // alice's manager is mallory (configuration).
      users: file.users.map((u) => (u.username === 'alice' ? { ...u, manager: 'mallory' } : u)),
      identity: { scim: { enabled: true } },
      identity_providers: [
        {
          id: 'corp',
          issuer: idp.issuer,
          client_id: 'devicegate',
          client_secret_env: 'DG_TEST_MANAGER_UPSTREAM_SECRET',
          claims: { manager: 'manager_email' },
          join: { attribute: 'userName', claim: 'preferred_username' },
        },
      ],
    }),
  })
  scimToken = await clientToken(t.url, 'provisioner', SCIM_SECRET, 'scim')
  adminToken = await clientToken(t.url, 'admin', FIXTURE.adminSecret, 'admin')
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
})

const scim = scimCaller(() => ({ url: t.url, token: scimToken }))

async function api(path: string, body?: unknown) {
  const res = await fetch(`${t.url}/admin/api${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, json: (await res.json()) as any }
}

const active = async (token: string) => (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active as boolean

/** Signs in upstream as `claims` and approves one device-flow grant; the access token. */
async function upstreamGrant(claims: Record<string, unknown>): Promise<string> {
  nextClaims = claims
  const page = await upstreamPageSession(t.url, 'corp')
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
  expect(await page.decide(auth.json.user_code, 'approve')).toBe(200)
  const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE, device_code: auth.json.device_code, client_id: 'cli' })
  expect(tok.status).toBe(200)
  return tok.json.access_token as string
}

describe('issue 15 §1 reviewers: manager, whatever the manager\'s source', () => {
  let managerId: string
  let ritaId: string
  let ritaToken: string
  let aliceToken: string
  let samToken: string

  it('stores the configuration\'s manager on the seeded person', () => {
    expect(t.server.identity.directory.person('alice')?.manager).toBe('mallory')
    expect(t.server.identity.directory.get('alice')?.manager).toBe('mallory')
  })

  it('stores SCIM\'s enterprise manager.value (RFC 7643 §4.3) and resolves the SCIM id to the manager', async () => {
    const manager = await scim('POST', '/Users', { schemas: [USER], userName: 'maria@example.com', displayName: 'Maria Manager', emails: [{ value: 'maria@example.com', primary: true }] })
    expect(manager.status).toBe(201)
    managerId = manager.json.id
    const report = await scim('POST', '/Users', { schemas: [USER, ENTERPRISE], userName: 'rita@example.com', [ENTERPRISE]: { manager: { value: managerId } } })
    expect(report.status).toBe(201)
    ritaId = report.json.id
    expect(report.json[ENTERPRISE].manager.value).toBe(managerId)
    expect(t.server.identity.directory.get(ritaId)?.manager).toBe(managerId)
    // Entra ID's PATCH shape (a bare id as the value) sets it too.
    const other = await scim('POST', '/Users', { schemas: [USER], userName: 'otto@example.com' })
    await scim('PATCH', `/Users/${other.json.id}`, { schemas: [PATCH], Operations: [{ op: 'Add', path: `${ENTERPRISE}:manager`, value: managerId }] })
    expect(t.server.identity.directory.get(other.json.id)?.manager).toBe(managerId)
  })

  it('sets the manager from a mapped upstream claim, resolved by the manager\'s email', async () => {
    samToken = await upstreamGrant({ sub: 'sub-sam', preferred_username: 'sam@example.com', email: 'sam@example.com', manager_email: 'MARIA@example.com' })
    const sam = t.server.identity.directory.byUserName('sam@example.com')!
    expect(sam.manager).toBe('MARIA@example.com')
    expect(t.server.identity.directory.get(sam.id)?.manager).toBe(managerId)
  })

  it('assigns each grant\'s campaign item to the person\'s manager, who decides it in the admin API', async () => {
    ritaToken = await upstreamGrant({ sub: 'sub-rita', preferred_username: 'rita@example.com' })
    expect(t.server.identity.directory.person(ritaId)?.upstreamSub).toBe('sub-rita')
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
    await approveAs(t.url, auth.json.user_code, 'approve', 'alice')
    aliceToken = (await postForm(`${t.url}/token`, { grant_type: DEVICE, device_code: auth.json.device_code, client_id: 'cli' })).json.access_token

    expect((await api('/reviews/campaigns', { id: 'managers', reviewers: 'manager', scope: { clients: ['cli'] }, duration_days: 7 })).status).toBe(201)
    expect((await api('/reviews/tick', {})).json.opened).toEqual(['managers.1'])
    const { items } = (await api('/reviews/rounds/managers.1')).json as { items: { id: string; subject: string; reviewers: string[] }[] }
    const itemOf = (subject: string) => items.find((i) => i.subject === subject)!
    expect(itemOf(ritaId).reviewers).toEqual([managerId])
    expect(itemOf(t.server.identity.directory.byUserName('sam@example.com')!.id).reviewers).toEqual([managerId])
    expect(itemOf('alice').reviewers).toEqual(['mallory'])

    expect((await api(`/reviews/inbox?reviewer=${managerId}`)).json.items.map((i: { id: string }) => i.id).sort()).toEqual(
      [itemOf(ritaId).id, itemOf(t.server.identity.directory.byUserName('sam@example.com')!.id).id].sort(),
    )
    // Only the manager may decide.
    const notTheirs = await api(`/reviews/items/${itemOf(ritaId).id}/decision`, { reviewer: 'mallory', decision: 'revoke', justification: 'not my report' })
    expect(notTheirs.status).toBe(403)
    const decided = await api(`/reviews/items/${itemOf(ritaId).id}/decision`, { reviewer: managerId, decision: 'revoke', justification: 'Rita moved teams' })
    expect(decided.status).toBe(200)
    expect(decided.json).toMatchObject({ decision: 'revoke', decidedBy: managerId })
    expect(await active(ritaToken)).toBe(false)
    expect(await active(samToken)).toBe(true)
    expect((await api(`/reviews/items/${itemOf('alice').id}/decision`, { reviewer: 'mallory', decision: 'keep', justification: 'still needed' })).status).toBe(200)
    expect(await active(aliceToken)).toBe(true)
  })

  it('reviewers: group takes the members of a SCIM group too (not only configured users)', async () => {
    const group = await scim('POST', '/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'access-reviewers', members: [{ value: managerId }] })
    expect(group.status).toBe(201)
    expect((await api('/reviews/campaigns', { id: 'by-group', reviewers: 'group', reviewer_group: 'access-reviewers', scope: { clients: ['cli'] } })).status).toBe(201)
    expect((await api('/reviews/tick', {})).json.opened).toEqual(['by-group.1'])
    const { items } = (await api('/reviews/rounds/by-group.1')).json as { items: { subject: string; reviewers: string[] }[] }
    expect(items.find((i) => i.subject === 'alice')?.reviewers).toEqual([managerId])
  })
})
