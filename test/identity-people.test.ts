/**
 * People and groups live in the database — configured users seeded at start, the admin API's list / show / disable / enable /
 * delete, and local password changes that revoke the person's grants (RFC 6819 §5.2.2.4), audited.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { parseConfig, resolveConfig } from '../src/config/load.js'
import { Identity } from '../src/identity/index.js'
import { PeopleDirectory, PeopleService } from '../src/identity/people.js'
import { openStore } from '../src/storage/index.js'
import type { Store } from '../src/storage/store.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, PageSession, postForm, startTestServer, type TestServer } from './support/server.js'

const NOW = 1_800_000_000

function sqlite() {
  let dir = ''
  return {
    async open() {
      dir = await mkdtemp(join(tmpdir(), 'devicegate-people-'))
      return openStore(`sqlite:${join(dir, 'db.sqlite')}`)
    },
    close: () => rm(dir, { recursive: true, force: true }),
  }
}

describe('seeding configured users', () => {
  let store: Store
  const a = sqlite()
  beforeAll(async () => {
    store = await a.open()
  })
  afterAll(async () => {
    await store.close()
    await a.close()
  })

  it('inserts configured users, keeps a locally changed password, and marks users removed from the configuration deleted', async () => {
    const people = store
    const clock = { nowSeconds: () => NOW }
    const service = () =>
      new PeopleService(new PeopleDirectory(people, { localPasswords: true }), people, { orphan: async () => 0, revoke: async () => 0 }, { record: async () => {} }, clock)
    const h1 = await hash('password-one')
    await service().seed([
      { username: 'ann', displayName: 'Ann', passwordHash: h1, disabled: false, groups: ['eng'], risk: 0 },
      { username: 'bob', displayName: 'Bob', passwordHash: h1, disabled: false, groups: [], risk: 0 },
    ])
    const s = service()
    await s.directory.refresh()
    await s.changePassword('ann', 'a new password', 'test')
    const h2 = await hash('password-two')
    const again = service()
    await again.seed([{ username: 'ann', displayName: 'Ann A.', passwordHash: h2, disabled: false, groups: ['eng', 'ops'], risk: 20 }])
    const ann = again.directory.get('ann')!
    expect(ann).toMatchObject({ displayName: 'Ann A.', groups: ['eng', 'ops'], risk: 20, disabled: false })
    expect(await again.directory.authenticate('ann', 'a new password')).toBeDefined()
    expect(await again.directory.authenticate('ann', 'password-two')).toBeUndefined()
    expect(again.directory.get('bob')).toBeUndefined()
    expect(again.directory.person('bob')?.status).toBe('deleted')
  })

  it('refuses every password when local passwords are switched off', async () => {
    const people = store
    const dir = new PeopleDirectory(people, { localPasswords: false })
    await dir.refresh()
    expect(dir.get('ann')).toBeDefined()
    expect(await dir.authenticate('ann', 'a new password')).toBeUndefined()
  })
})

describe('seeding from a command-line tool', () => {
  let store: Store
  const a = sqlite()
  beforeAll(async () => {
    store = await a.open()
  })
  afterAll(async () => {
    await store.close()
    await a.close()
  })

  it('a command that resolves the configuration without hashing secrets (users list) keeps the password_env hash the server stored', async () => {
    const file = parseConfig({ clients: [], users: [{ username: 'erin', password_env: 'DG_TEST_ERIN_PASSWORD' }] })
    const env = { DG_TEST_ERIN_PASSWORD: 'erin password 123' }
    const open = async (secrets: 'hash' | 'check') =>
      Identity.open({ config: await resolveConfig(file, {}, env, { secrets }), store, clock: { nowSeconds: () => NOW }, logger: pino({ level: 'silent' }) })
    await open('hash') // serve
    const tool = await open('check') // devicegate users list|show|disable…: stored '!unhashed' over the hash, so erin could not sign in
    expect(await tool.directory.authenticate('erin', 'erin password 123')).toBeDefined()
    expect((await store.findPerson('erin'))?.passwordHash).toMatch(/^\$argon2id\$/)
  })
})

describe('people through the admin API', () => {
  let t: TestServer
  let adminToken: string
  const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

  beforeAll(async () => {
    const file = await fixtureConfigFile()
    const admin = {
      client_id: 'admin',
      type: 'confidential',
      client_secret_hash: await hash(FIXTURE.adminSecret),
      grant_types: ['client_credentials'],
      scopes: ['admin'],
      access_token_format: 'opaque',
    }
    t = await startTestServer({ config: await fixtureConfigFile({ clients: [...file.clients, admin], users: [...file.users, { username: 'carol', password_hash: await hash(FIXTURE.attackerPassword), groups: ['eng'], risk: 30 }] }) })
    adminToken = (await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'admin' }, { authorization: basic('admin', FIXTURE.adminSecret) })).json.access_token
  })
  afterAll(async () => t?.close())

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${t.url}/admin/api${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, json: (await res.json()) as any }
  }
  const login = async (user: string) => {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
    await approveAs(t.url, auth.json.user_code, 'approve', user)
    const tok = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, client_id: 'cli' })
    expect(tok.status).toBe(200)
    return tok.json as { access_token: string; refresh_token: string }
  }
  const active = async (token: string) => (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active
  const auditTypes = async () => (await call('GET', '/audit/events?limit=10000')).json.items.map((e: any) => e.type) as string[]

  it('lists the configured users as people with status, source, groups and risk', async () => {
    const res = await call('GET', '/users')
    expect(res.status).toBe(200)
    expect(res.json.items.map((p: any) => p.id).sort()).toEqual(['alice', 'carol', 'mallory'])
    expect(res.json.items.find((p: any) => p.id === 'carol')).toMatchObject({ status: 'active', source: 'config', groups: ['eng'], risk: 30, has_password: true })
    expect((await call('GET', '/users/carol')).json.user_name).toBe('carol')
    expect((await call('GET', '/users/nobody')).status).toBe(404)
    expect((await call('GET', '/users?status=bogus')).json.error).toBe('invalid_request')
  })

  it('disables a person: grants revoked at once, sign-in refused, audited; enable lets them sign in again', async () => {
    const tokens = await login('alice')
    expect(await active(tokens.access_token)).toBe(true)
    const res = await call('POST', '/users/alice/disable')
    expect(res.json).toMatchObject({ state: 'disabled', revoked_grants: 1 })
    expect(await active(tokens.access_token)).toBe(false)
    expect((await call('GET', '/users/alice')).json.status).toBe('disabled')
    const page = new PageSession(t.url)
    await page.get('/device')
    const signIn = await page.post('/device/sign-in', { username: 'alice', password: FIXTURE.password })
    expect(signIn.status).toBe(401)
    expect(await auditTypes()).toContain('person.status_changed')
    expect((await call('POST', '/users/alice/enable')).json.state).toBe('enabled')
    await login('alice')
  })

  it('changes a local password: every grant of the person revoked (RFC 6819 §5.2.2.4), old password refused, audited', async () => {
    const tokens = await login('carol')
    const res = await call('POST', '/users/carol/password', { password: 'a brand new password' })
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ password_changed: true, revoked_grants: 1 })
    expect(await active(tokens.access_token)).toBe(false)
    const refresh = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: 'cli' })
    expect(refresh.json.error).toBe('invalid_grant')
    expect(await t.server.identity.directory.authenticate('carol', FIXTURE.attackerPassword)).toBeUndefined()
    expect(await t.server.identity.directory.authenticate('carol', 'a brand new password')).toBeDefined()
    const events = (await call('GET', '/audit/events?limit=10000')).json.items.filter((e: any) => e.type === 'person.password_changed')
    expect(events).toHaveLength(1)
    expect(JSON.stringify(events[0])).not.toContain('brand new')
    expect((await call('POST', '/users/carol/password', { password: 'short' })).json.error).toBe('invalid_request')
    expect((await call('POST', '/users/nobody/password', { password: 'long enough password' })).status).toBe(404)
  })

  it('refuses a password with NUL or control characters (400 invalid_request, as every admin API field), changing nothing', async () => {
    const changes = async () => (await call('GET', '/audit/events?limit=10000')).json.items.filter((e: any) => e.type === 'person.password_changed').length
    const before = await changes()
    for (const password of ['a brand\u0000 new secret', 'tab\tseparated secret', 'del\u007f character secret']) {
      const res = await call('POST', '/users/carol/password', { password })
      expect(res.status).toBe(400)
      expect(res.json).toMatchObject({ error: 'invalid_request', error_description: 'a password must not contain NUL or control characters' })
    }
    expect(await changes()).toBe(before)
    expect(await t.server.identity.directory.authenticate('carol', 'a brand new password')).toBeDefined()
  })

  it('deletes a person: gone from sign-in and from policy, listed as deleted', async () => {
    const tokens = await login('mallory')
    expect((await call('POST', '/users/mallory/delete')).json.revoked_grants).toBe(1)
    expect(await active(tokens.access_token)).toBe(false)
    expect(t.server.identity.directory.get('mallory')).toBeUndefined()
    expect((await call('GET', '/users?status=deleted')).json.items.map((p: any) => p.id)).toEqual(['mallory'])
  })
})

describe('README examples of the identity configuration', () => {
  it('parse with the configuration schema (Entra ID, Okta, SCIM, Shared Signals)', async () => {
    const { readFileSync } = await import('node:fs')
    const { parse } = await import('yaml')
    const { parseConfig } = await import('../src/config/load.js')
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    const section = readme.slice(readme.indexOf('## People and identity'), readme.indexOf('## Running several instances'))
    const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!)
    expect(blocks.length).toBe(3)
    for (const block of blocks) expect(() => parseConfig(parse(block))).not.toThrow()
    // An Entra ID and an Okta example (issue 12), each linked to its SCIM-provisioned people.
    const providers = parseConfig(parse(blocks[0]!)).identity_providers ?? []
    expect(providers.map((p) => p.id)).toEqual(['entra', 'okta'])
    expect(providers.every((p) => p.join !== undefined)).toBe(true)
  })
})
