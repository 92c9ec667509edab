/**
 * declared token storage (`storage_class`, a devicegate extension of RFC 8628 §3.1 and
 * RFC 6749 §6), storage as policy with a reason code, the SDK declaring what it uses and saying so
 * when the server refuses it, and same-device detection (RFC 10027 cross-device guidance).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DeviceClient } from '../src/client/session.js'
import { ClientError } from '../src/client/errors.js'
import { MemoryTokenStore, openTokenStore, type DeclaredStorageClass, type TokenStore } from '../src/client/store.js'
import { compilePolicyText } from '../src/policy/compile.js'
import { evaluate } from '../src/policy/evaluate.js'
import type { NetworkFacts, PolicyFacts } from '../src/policy/model.js'
import { isSameDevice, platformOf } from '../src/policy/same-device.js'
import { describeStorageClass } from '../src/core/storage-class.js'
import { Approver, NET, startDeviceFlow, startPolicyServer, TEST_POLICY_YAML, type PolicyTestServer } from './support/policy-fixture.js'
import { PageSession, postForm } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

export const STORAGE_POLICY_YAML = `${TEST_POLICY_YAML}
  - name: high-tier-storage
    when: { tiers: [high, admin], storage: { not_in: [keyring, memory] } }
    effect: deny
    reason: storage_not_accepted
    message: This app must keep its sign-in in the system keychain.
  - name: cli-no-refresh-on-weak-storage
    when: { clients: [cli], storage: { in: [plaintext] } }
    effect: allow
    reason: storage_not_accepted
    constraints: { refresh: false }
`

const LINUX_FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
const IPHONE_SAFARI = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const SDK_LINUX = 'devicegate-client/0.1 (linux; x64) node/20.11.0'

describe('same-device classification (RFC 10027 §4: same IP and platform)', () => {
  it.each([
    [LINUX_FIREFOX, 'linux'],
    [IPHONE_SAFARI, 'ios'],
    [SDK_LINUX, 'linux'],
    ['mytool/2.0 (darwin; arm64)', 'macos'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36', 'windows'],
    ['curl/8.4.0', null],
    ['node', null],
    [null, null],
  ])('platformOf(%j) is %j', (ua, platform) => {
    expect(platformOf(ua)).toBe(platform)
  })

  it('is same-device for the same address and platform', () => {
    expect(isSameDevice({ requestIp: '198.51.100.10', requestUserAgent: SDK_LINUX, approverIp: '::ffff:198.51.100.10', approverUserAgent: LINUX_FIREFOX })).toBe(true)
  })
  it('is not same-device for a phone approving for a laptop behind the same NAT', () => {
    expect(isSameDevice({ requestIp: '198.51.100.10', requestUserAgent: SDK_LINUX, approverIp: '198.51.100.10', approverUserAgent: IPHONE_SAFARI })).toBe(false)
  })
  it('is not same-device from another address, whatever the platform', () => {
    expect(isSameDevice({ requestIp: '198.51.100.10', requestUserAgent: SDK_LINUX, approverIp: '198.51.100.77', approverUserAgent: LINUX_FIREFOX })).toBe(false)
  })
  it('cannot tell (null) when the device names no platform', () => {
    expect(isSameDevice({ requestIp: '198.51.100.10', requestUserAgent: 'curl/8.4.0', approverIp: '198.51.100.10', approverUserAgent: LINUX_FIREFOX })).toBeNull()
  })
})

describe('policy conditions storage and same_device', () => {
  const policy = compilePolicyText(
    `
version: 1
include_baseline: false
rules:
  - name: weak-storage
    when: { tiers: [high], storage: { not_in: [keyring, memory] } }
    effect: deny
    reason: storage_not_accepted
  - name: strict-weak-storage
    when: { clients: [strict], storage: { not_in: [keyring], registered_device_satisfies: false } }
    effect: deny
    reason: storage_not_accepted
  - name: same-device-warn
    when: { clients: [tool], same_device: true }
    effect: warn
    reason: same_device_approval
  - name: same-device-deny
    when: { clients: [strict-tool], same_device: true }
    effect: deny
    reason: same_device_approval
`,
    'storage.yaml',
  )
  const net: NetworkFacts = { ip: '198.51.100.10', country: null, asn: null, asOrg: null }
  const facts = (over: Partial<PolicyFacts> & { clientId?: string; tier?: PolicyFacts['client']['tier'] }): PolicyFacts => ({
    phase: 'approval',
    now: 1_800_000_000,
    client: { id: over.clientId ?? 'app', tier: over.tier ?? 'standard' },
    user: { username: 'alice', groups: [], risk: 0, disabled: false },
    mfaDone: false,
    request: net,
    approver: net,
    posture: { status: 'absent' },
    device: over.device ?? { jkt: null, registered: null },
    ...(over.storage !== undefined ? { storage: over.storage } : {}),
    ...(over.sameDevice !== undefined ? { sameDevice: over.sameDevice } : {}),
  })
  it.each([
    ['plaintext on a high-tier app', { tier: 'high', storage: 'plaintext' }, 'deny', ['storage_not_accepted']],
    ['nothing declared on a high-tier app (unknown)', { tier: 'high' }, 'deny', ['storage_not_accepted']],
    ['encrypted_file on a high-tier app', { tier: 'high', storage: 'encrypted_file' }, 'deny', ['storage_not_accepted']],
    ['keyring on a high-tier app', { tier: 'high', storage: 'keyring' }, 'allow', ['default_allow']],
    ['memory on a high-tier app', { tier: 'high', storage: 'memory' }, 'allow', ['default_allow']],
    ['plaintext on a standard app', { tier: 'standard', storage: 'plaintext' }, 'allow', ['default_allow']],
    ['plaintext with a registered device key (stronger evidence)', { tier: 'high', storage: 'plaintext', device: { jkt: 'k', registered: true } }, 'allow', ['default_allow']],
    ['plaintext with a registered key where the rule does not trust it', { clientId: 'strict', storage: 'plaintext', device: { jkt: 'k', registered: true } }, 'deny', ['storage_not_accepted']],
    ['same-device approval warns', { clientId: 'tool', sameDevice: true }, 'allow', ['same_device_approval', 'default_allow']],
    ['same-device approval denied', { clientId: 'strict-tool', sameDevice: true }, 'deny', ['same_device_approval']],
    ['cross-device approval', { clientId: 'strict-tool', sameDevice: false }, 'allow', ['default_allow']],
    ['unknown same-device never matches', { clientId: 'strict-tool', sameDevice: null }, 'allow', ['default_allow']],
  ] as const)('%s → %s', (_name, over, decision, codes) => {
    const d = evaluate(policy, facts(over as Partial<PolicyFacts>))
    expect(d.decision).toBe(decision)
    expect(d.reasons.map((r) => r.code)).toEqual(codes)
  })

  it('rejects a storage condition with both in and not_in, or an unknown class', () => {
    expect(() => compilePolicyText('version: 1\nrules:\n  - name: x\n    when: { storage: { in: [keyring], not_in: [plaintext] } }\n    effect: deny\n', 'bad.yaml')).toThrow(/exactly one of in, not_in/)
    expect(() => compilePolicyText('version: 1\nrules:\n  - name: x\n    when: { storage: { in: [disk] } }\n    effect: deny\n', 'bad.yaml')).toThrow(/storage\.in/)
  })

  it('describes each class in plain words', () => {
    expect(describeStorageClass('keyring')).toBe('This tool keeps its sign-in in the system keychain (the operating system’s protected credential store).')
    expect(describeStorageClass('plaintext')).toMatch(/plain, unencrypted file/)
  })
})

describe('storage_class at the endpoints (devicegate extension of RFC 8628 §3.1)', () => {
  let t: PolicyTestServer
  beforeEach(async () => {
    t = await startPolicyServer(STORAGE_POLICY_YAML)
  })
  afterEach(async () => {
    await t.close()
  })

  it('lists the declarable classes in the metadata (RFC 8414 extension)', async () => {
    const meta = (await (await fetch(`${t.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>
    expect(meta.storage_classes_supported).toEqual(['keyring', 'memory', 'encrypted_file', 'plaintext'])
  })

  it('refuses a plaintext declaration for a high-tier app with unauthorized_client and devicegate_reason', async () => {
    const res = await startDeviceFlow(t.url, 'deploy-cli', 'deploy', NET.home, { storage_class: 'plaintext' })
    expect(res.status).toBe(400)
    expect(res.json).toMatchObject({ error: 'unauthorized_client', devicegate_reason: 'storage_not_accepted', storage_class: 'plaintext' })
    expect(res.json.error_description).toContain("'plaintext'")
    expect(res.json.device_code).toBeUndefined()
    const events = await t.server.store.listAuditEvents({ limit: 100 })
    const decided = JSON.parse(events.find((e) => e.type === 'policy.decided')!.details)
    expect(decided).toMatchObject({ phase: 'authorization', decision: 'deny', storageClass: 'plaintext' })
    expect(decided.reasons.map((r: { code: string }) => r.code)).toContain('storage_not_accepted')
  })

  it('refuses a high-tier app that declares nothing (unknown) and accepts one that declares keyring', async () => {
    const silent = await startDeviceFlow(t.url, 'deploy-cli', 'deploy', NET.home)
    expect(silent.json).toMatchObject({ error: 'unauthorized_client', devicegate_reason: 'storage_not_accepted', storage_class: 'unknown' })
    const keyring = await startDeviceFlow(t.url, 'deploy-cli', 'deploy', NET.home, { storage_class: 'keyring' })
    expect(keyring.status).toBe(200)
    const events = await t.server.store.listAuditEvents({ limit: 100 })
    expect(JSON.parse(events.find((e) => e.type === 'device_authorization.requested')!.details)).toMatchObject({ storageClass: 'keyring' })
  })

  it('answers invalid_request for an unknown storage_class', async () => {
    const res = await startDeviceFlow(t.url, 'cli', 'read', NET.home, { storage_class: 'disk' })
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('invalid_request')
    expect(res.json.error_description).toContain('storage_class')
  })

  it('refuses a refresh that declares plaintext again (re-declaration on refresh) with the reason', async () => {
    const flow = await startDeviceFlow(t.url, 'cli', 'read offline_access', NET.home, { storage_class: 'keyring' })
    const page = new Approver(t.url, NET.homePhone)
    await page.signIn('alice')
    await page.review(flow.json.user_code)
    expect((await page.post('/device', { user_code: flow.json.user_code, decision: 'approve' })).status).toBe(200)
    t.clock.advance(10)
    const tokens = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: flow.json.device_code, client_id: 'cli' })
    expect(tokens.status).toBe(200)
    expect(tokens.json.refresh_token).toBeDefined()
    const bad = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token, client_id: 'cli', storage_class: 'nowhere' })
    expect(bad.json.error).toBe('invalid_request')
    const moved = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token, client_id: 'cli', storage_class: 'plaintext' })
    expect(moved.status).toBe(400)
    expect(moved.json).toMatchObject({ error: 'invalid_grant', devicegate_reason: 'storage_not_accepted', storage_class: 'plaintext' })
    // Declaring keyring again is accepted: the refusal did not rotate or revoke the family.
    const back = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token, client_id: 'cli', storage_class: 'keyring' })
    expect(back.status).toBe(200)
  })
})

/** A store (in memory) that declares what its test says it is. */
class DeclaringStore implements TokenStore {
  readonly kind = 'test'
  readonly location: string
  readonly #inner = new MemoryTokenStore()
  constructor(public storageClass: DeclaredStorageClass) {
    this.location = `a ${storageClass} test store`
  }
  get(name: string) {
    return this.#inner.get(name)
  }
  set(name: string, value: string) {
    return this.#inner.set(name, value)
  }
  delete(name: string) {
    return this.#inner.delete(name)
  }
}

describe('SDK declares the store it uses and reports a refusal', () => {
  let t: PolicyTestServer
  beforeEach(async () => {
    t = await startPolicyServer(STORAGE_POLICY_YAML)
  })
  afterEach(async () => {
    await t.close()
  })

  /** A fetch that records the form bodies sent to the device authorization endpoint. */
  function recordingFetch(sent: URLSearchParams[]) {
    return async (input: string | URL, init?: RequestInit) => {
      if (String(input).endsWith('/device_authorization')) sent.push(new URLSearchParams(String(init?.body)))
      return globalThis.fetch(input, init)
    }
  }

  it.runIf(process.platform === 'linux')('keyring unavailable → encrypted file store, declared as encrypted_file', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dir = mkdtempSync(join(tmpdir(), 'devicegate-sdk-'))
    try {
      const opened = await openTokenStore({ kind: 'auto', dir, service: 'devicegate-test', env: { HOME: '/nonexistent' } })
      expect(opened.fallbackReason).toBeDefined()
      expect(opened.store.storageClass).toBe('encrypted_file')
      const sent: URLSearchParams[] = []
      const client = new DeviceClient({ issuer: t.url, clientId: 'cli', scope: 'read', store: opened.store, dpop: 'off', fetch: recordingFetch(sent) })
      const stop = new Error('stop after the device authorization')
      await expect(client.login({ onPrompt: () => Promise.reject(stop) })).rejects.toBe(stop)
      expect(sent[0]?.get('storage_class')).toBe('encrypted_file')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it.each([
    ['memory', new MemoryTokenStore()],
    ['keyring', new DeclaringStore('keyring')],
  ] as const)('declares %s for that store', async (declared, store) => {
    const sent: URLSearchParams[] = []
    const client = new DeviceClient({ issuer: t.url, clientId: 'cli', scope: 'read', store, dpop: 'off', fetch: recordingFetch(sent) })
    const stop = new Error('stop')
    await expect(client.login({ onPrompt: () => Promise.reject(stop) })).rejects.toBe(stop)
    expect(sent[0]?.get('storage_class')).toBe(declared)
  })

  it('says clearly that plaintext storage is not accepted for a high-tier app, and stores nothing', async () => {
    const store = new DeclaringStore('plaintext')
    const client = new DeviceClient({ issuer: t.url, clientId: 'deploy-cli', scope: 'deploy', store, dpop: 'off' })
    const err = await client.login({ onPrompt: () => {} }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ClientError)
    expect((err as ClientError).code).toBe('ERR_STORAGE_NOT_ACCEPTED')
    expect((err as ClientError).message).toContain('a plaintext test store')
    expect((err as ClientError).message).toContain('storage "plaintext"')
    expect((err as ClientError).message).toContain('Nothing was stored in another place')
    expect(await client.session()).toBeUndefined()
  })

  it('on a refused refresh, deletes the stored login and reports the storage, never a silent fallback', async () => {
    const store = new DeclaringStore('keyring')
    const client = new DeviceClient({ issuer: t.url, clientId: 'cli', scope: 'read offline_access', store, dpop: 'off' })
    const login = client.login({
      onPrompt: async (auth) => {
        const page = new Approver(t.url, NET.homePhone)
        await page.signIn('alice')
        await page.review(auth.userCode)
        await page.post('/device', { user_code: auth.userCode, decision: 'approve' })
      },
    })
    const info = await login
    expect(info.hasRefreshToken).toBe(true)
    expect((await client.storedGrant())?.storageClass).toBe('keyring')
    // The tool now keeps its tokens in plaintext: the re-declaration is refused.
    store.storageClass = 'plaintext'
    const err = await client.refresh().catch((e: unknown) => e)
    expect((err as ClientError).code).toBe('ERR_STORAGE_NOT_ACCEPTED')
    expect((err as ClientError).message).toContain('storage "plaintext"')
    expect(await client.session()).toBeUndefined()
  })
})

describe('the review page and the approval record (storage in plain words, same-device)', () => {
  let t: PolicyTestServer
  beforeEach(async () => {
    t = await startPolicyServer(`${STORAGE_POLICY_YAML}
  - name: cli-same-device
    when: { clients: [cli], same_device: true }
    effect: warn
    reason: same_device_approval
    message: This sign-in was approved on the same computer that asked for it; a browser sign-in fits this tool better.
`)
  })
  afterEach(async () => {
    await t.close()
  })

  /** A device authorization from `ip` with the SDK's User-Agent, declaring `storage`. */
  async function request(storage: string | undefined, ip: string = NET.home) {
    const res = await fetch(`${t.url}/device_authorization`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip, 'user-agent': SDK_LINUX },
      body: new URLSearchParams({ client_id: 'cli', scope: 'read', ...(storage ? { storage_class: storage } : {}) }).toString(),
    })
    return (await res.json()) as Record<string, string>
  }

  async function approvedEvent() {
    await t.server.governance.audit?.flush()
    const events = await t.server.store.listAuditEvents({ limit: 1000 })
    return JSON.parse(events.filter((e) => e.type === 'device_code.approved').at(-1)!.details) as Record<string, unknown>
  }

  it('says where the tool keeps its sign-in, in plain words, and keeps the class with the grant', async () => {
    const flow = await request('keyring')
    const page = new PageSession(t.url, t.url, { 'x-forwarded-for': NET.homePhone, 'user-agent': IPHONE_SAFARI })
    await page.signIn('alice', 'correct horse battery staple')
    const review = await page.post('/device', { user_code: flow.user_code! })
    expect(review.body).toContain('<dt>Where it keeps your sign-in</dt>')
    expect(review.body).toContain('This tool keeps its sign-in in the system keychain')
    expect((await page.post('/device', { user_code: flow.user_code!, decision: 'approve' })).status).toBe(200)
    expect(await approvedEvent()).toMatchObject({ storageClass: 'keyring', sameDevice: false, requestUserAgent: SDK_LINUX, approverUserAgent: IPHONE_SAFARI })
    const grant = await t.server.store.findDeviceGrantByUserCode(flow.user_code!.replace('-', ''))
    expect((await t.server.store.findStorageClass(grant!.id))?.storageClass).toBe('keyring')
  })

  it('says so when the tool did not declare its storage', async () => {
    const flow = await request(undefined)
    const page = new PageSession(t.url, t.url, { 'x-forwarded-for': NET.homePhone })
    await page.signIn('alice', 'correct horse battery staple')
    const review = await page.post('/device', { user_code: flow.user_code! })
    expect(review.body).toContain('somewhere it did not say')
  })

  it('records a same-device approval (same IP and platform) and warns with the policy reason', async () => {
    const flow = await request('keyring', NET.home)
    const page = new PageSession(t.url, t.url, { 'x-forwarded-for': NET.home, 'user-agent': LINUX_FIREFOX })
    await page.signIn('alice', 'correct horse battery staple')
    const review = await page.post('/device', { user_code: flow.user_code! })
    expect(review.body).toContain('approved on the same computer that asked for it')
    expect((await page.post('/device', { user_code: flow.user_code!, decision: 'approve' })).status).toBe(200)
    expect(await approvedEvent()).toMatchObject({ sameDevice: true })
    const grant = await t.server.store.findDeviceGrantByUserCode(flow.user_code!.replace('-', ''))
    const explained = JSON.parse((await t.server.store.findDeviceGrantPolicy(grant!.id))!.explanationJson!)
    expect(explained.facts).toMatchObject({ sameDevice: true, storage: 'keyring' })
  })
})
