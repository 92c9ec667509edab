/**
 * Deprovisioning revokes unconditionally (issue 12 §3 and §4): deactivating or deleting a person —
 * through SCIM, a Shared Signals event (RISC `account-disabled` / `account-purged`, CAEP
 * `session-revoked` / `credential-change`) or the administrator (admin API, and the CLI through
 * the same `PrincipalAdmin`) — revokes every grant of theirs at once even when the
 * `orphaned_token` anomaly detector is switched off; the detector only decides whether an anomaly
 * is recorded besides.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hash } from '@node-rs/argon2'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { ensureBuilt, runCli } from './support/cli.js'
import { clientToken, confidentialClient, scimCaller } from './support/identity.js'
import { startFakeIdp, upstreamPageSession, type FakeIdp } from './support/fake-idp.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code'
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User'
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/'
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/'
const SCIM_SECRET = 'provisioner-secret-0123456789abcdef'

let t: TestServer
let idp: FakeIdp
let jwks: Server
let txIssuer: string
let txKey: CryptoKey
let scimToken: string
let adminToken: string
let nextClaims: Record<string, unknown> = {}
let jti = 0

beforeAll(async () => {
  idp = await startFakeIdp({ clientId: 'devicegate', subject: () => nextClaims })
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  txKey = privateKey
  const jwk = { ...(await exportJWK(publicKey)), kid: 'tx-1', alg: 'ES256', use: 'sig' }
  jwks = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ keys: [jwk] }))
  })
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', () => r()))
  txIssuer = `http://127.0.0.1:${(jwks.address() as { port: number }).port}`
  process.env.DG_TEST_DEPROVISION_UPSTREAM_SECRET = 'upstream-secret-0123456789'
  const file = await fixtureConfigFile()
  t = await startTestServer({
    config: await fixtureConfigFile({
      clients: [...file.clients, await confidentialClient('provisioner', SCIM_SECRET, 'scim'), await confidentialClient('admin', FIXTURE.adminSecret, 'admin')],
      users: [
        ...file.users,
        ...(await Promise.all(['dora', 'eve', 'finn', 'gus', 'hal'].map(async (username) => ({ username, password_hash: await hash(FIXTURE.attackerPassword) })))),
      ],
      governance: { anomalies: { orphaned_token: { enabled: false } } },
      identity: { scim: { enabled: true }, shared_signals: { transmitters: [{ issuer: txIssuer, jwks_uri: `${txIssuer}/jwks` }] } },
      identity_providers: [
        { id: 'corp', issuer: idp.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_DEPROVISION_UPSTREAM_SECRET', join: { attribute: 'userName', claim: 'preferred_username' } },
      ],
    }),
  })
  scimToken = await clientToken(t.url, 'provisioner', SCIM_SECRET, 'scim')
  adminToken = await clientToken(t.url, 'admin', FIXTURE.adminSecret, 'admin')
})
afterAll(async () => {
  await t?.close()
  await idp?.close()
  await new Promise((r) => jwks?.close(r))
})

const active = async (token: string) => (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active as boolean

/** A device-flow grant approved by a configured user (password sign-in). */
async function grantOf(username: string): Promise<string> {
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
  await approveAs(t.url, auth.json.user_code, 'approve', username)
  const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE, device_code: auth.json.device_code, client_id: 'cli' })
  expect(tok.status).toBe(200)
  expect(await active(tok.json.access_token)).toBe(true)
  return tok.json.access_token as string
}

/** A SCIM-provisioned person who signed in upstream and approved one device-flow grant. */
async function provisionedWithGrant(userName: string): Promise<{ id: string; accessToken: string }> {
  const created = await scim('POST', '/Users', { schemas: [USER], userName })
  expect(created.status).toBe(201)
  nextClaims = { sub: `sub-${userName}`, preferred_username: userName }
  const page = await upstreamPageSession(t.url, 'corp')
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
  expect(await page.decide(auth.json.user_code, 'approve')).toBe(200)
  const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE, device_code: auth.json.device_code, client_id: 'cli' })
  expect(await active(tok.json.access_token)).toBe(true)
  return { id: created.json.id as string, accessToken: tok.json.access_token as string }
}

const scim = scimCaller(() => ({ url: t.url, token: scimToken }))

async function pushEvent(type: string, subject: string): Promise<number> {
  const jwt = await new SignJWT({ jti: `deprov-${++jti}`, sub_id: { format: 'opaque', id: subject }, events: { [type]: {} } })
    .setProtectedHeader({ alg: 'ES256', kid: 'tx-1', typ: 'secevent+jwt' })
    .setIssuer(txIssuer)
    .setAudience(t.issuer)
    .setIssuedAt()
    .sign(txKey)
  return (await fetch(`${t.url}/ssf/push`, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt' }, body: jwt })).status
}

async function admin(path: string) {
  const res = await fetch(`${t.url}/admin/api${path}`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } })
  return { status: res.status, json: (await res.json()) as any }
}

/** No `orphaned_token` anomaly is recorded for the subject: the detector is off. */
async function expectNoAnomalyFor(subject: string): Promise<void> {
  const anomalies = await t.server.store.listAnomalies({ sinceTime: 0, kind: 'orphaned_token', limit: 1000 })
  expect(anomalies.filter((a) => a.subject === subject)).toEqual([])
}

describe('issue 12 §3: SCIM deprovisioning revokes every grant with the orphaned_token detector off', () => {
  it('active: false (PATCH, as Entra ID and Okta send it) revokes at once', async () => {
    const p = await provisionedWithGrant('ivy@example.com')
    const res = await scim('PATCH', `/Users/${p.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] })
    expect(res.status).toBe(200)
    expect(await active(p.accessToken)).toBe(false)
    await expectNoAnomalyFor(p.id)
    const revoked = (await t.server.store.listAuditEvents({ limit: 100_000 })).filter((e) => e.type === 'token.revoked' && e.subject === p.id)
    expect(revoked.map((e) => e.actor)).toContain('scim:provisioner')
  })

  it('DELETE revokes at once', async () => {
    const p = await provisionedWithGrant('jon@example.com')
    expect((await scim('DELETE', `/Users/${p.id}`)).status).toBe(204)
    expect(await active(p.accessToken)).toBe(false)
    await expectNoAnomalyFor(p.id)
  })
})

describe('issue 12 §4: Shared Signals events revoke with the orphaned_token detector off', () => {
  it.each([
    [`${RISC}account-disabled`, 'dora'],
    [`${RISC}account-purged`, 'eve'],
    [`${CAEP}session-revoked`, 'finn'],
    [`${CAEP}credential-change`, 'gus'],
  ])('%s revokes every grant of the subject', async (type, username) => {
    const token = await grantOf(username)
    expect(await pushEvent(type, username)).toBe(202)
    expect(await active(token)).toBe(false)
    await expectNoAnomalyFor(username)
  })
})

describe('issue 12 §2: the administrator disabling or deleting a person revokes with the orphaned_token detector off', () => {
  it('admin API disable revokes; delete revokes the grants approved since re-enabling', async () => {
    const first = await grantOf('hal')
    expect((await admin('/users/hal/disable')).json).toMatchObject({ state: 'disabled', revoked_grants: 1 })
    expect(await active(first)).toBe(false)
    expect((await admin('/users/hal/enable')).json.state).toBe('enabled')
    const second = await grantOf('hal')
    expect((await admin('/users/hal/delete')).json).toMatchObject({ state: 'deleted', revoked_grants: 1 })
    expect(await active(second)).toBe(false)
    await expectNoAnomalyFor('hal')
  })

  it('disabling a client (admin API and CLI share PrincipalAdmin) revokes its grants too', async () => {
    const cc = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect(await active(cc.json.access_token)).toBe(true)
    expect(await t.server.governance.principals.change('client', 'conf', 'disabled', 'admin:test')).toBe(1)
    expect(await active(cc.json.access_token)).toBe(false)
    await t.server.governance.principals.change('client', 'conf', 'enabled', 'admin:test')
  })
})

describe('issue 12 §2: `devicegate users disable` (CLI) revokes with the orphaned_token detector off', () => {
  beforeAll(() => ensureBuilt(), 180_000)

  it('revokes the person\'s grants in the shared database', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devicegate-deprovision-cli-'))
    const storageUrl = `sqlite:${join(dir, 'db.sqlite')}`
    const file = await fixtureConfigFile({ governance: { anomalies: { orphaned_token: { enabled: false } } } })
    const server = await startTestServer({ storageUrl, config: file })
    try {
      const auth = await postForm(`${server.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
      await approveAs(server.url, auth.json.user_code, 'approve', 'mallory')
      const tok = await postForm(`${server.url}/token`, { grant_type: DEVICE, device_code: auth.json.device_code, client_id: 'cli' })
      expect(tok.status).toBe(200)
      const configPath = join(dir, 'devicegate.yaml')
      writeFileSync(configPath, stringify({ ...file, issuer: server.issuer, storage: { url: storageUrl }, data_dir: dir, log_level: 'silent' }))
      const r = runCli(['users', 'disable', 'mallory', '--config', configPath])
      expect(r.status, r.stderr).toBe(0)
      expect((await postForm(`${server.url}/introspect`, { token: tok.json.refresh_token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active).toBe(false)
    } finally {
      await server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
