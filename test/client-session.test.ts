/**
 * The SDK against a real devicegate: device login with DPoP binding, refresh with rotation
 * (written to the store before use), reuse handling, authorised requests with `ath` and nonces,
 * and logout revoking at the server (RFC 7009), checked through introspection (RFC 7662).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createHash } from 'node:crypto'
import { decodeJwt, EmbeddedJWK, calculateJwkThumbprint, jwtVerify, decodeProtectedHeader, type JWK } from 'jose'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ClientError,
  DeviceClient,
  DpopKey,
  MemoryTokenStore,
  OAuthResponseError,
  readStoredGrant,
  type DeviceClientOptions,
  type FetchLike,
  type FlowClock,
  type TokenStore,
} from '../src/client/index.js'
import { approveAs, basic, FIXTURE, postForm, startTestServer, type TestServer } from './support/server.js'

/** Client-side virtual clock starting at real time; sleeping moves it instead of waiting. */
class VirtualClock implements FlowClock {
  now = Math.floor(Date.now() / 1000)
  nowSeconds(): number {
    return this.now
  }
  async sleep(seconds: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    this.now += seconds
  }
}

/** Wraps a store and logs writes, to check what happened in which order. */
class LoggingStore implements TokenStore {
  readonly kind = 'memory'
  readonly location = 'test'
  readonly inner = new MemoryTokenStore()
  failWrites = false
  constructor(readonly log: string[]) {}
  get(name: string) {
    return this.inner.get(name)
  }
  async set(name: string, value: string) {
    if (this.failWrites && name.startsWith('grant-')) throw new Error('disk full')
    this.log.push(`set ${name}`)
    await this.inner.set(name, value)
  }
  async delete(name: string) {
    this.log.push(`delete ${name}`)
    await this.inner.delete(name)
  }
}

let ts: TestServer
beforeAll(async () => {
  ts = await startTestServer()
})
afterAll(() => ts.close())

async function introspect(token: string): Promise<Record<string, unknown>> {
  const res = await postForm(`${ts.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })
  expect(res.status).toBe(200)
  return res.json
}

function newClient(over: Partial<DeviceClientOptions> = {}) {
  const clock = new VirtualClock()
  const store = over.store ?? new MemoryTokenStore()
  const client = new DeviceClient({ issuer: ts.url, clientId: 'cli', scope: 'read offline_access', store, clock, ...over })
  return { client, clock, store }
}

/** Logs in, approving as alice when the code is shown. */
async function loggedIn(over: Partial<DeviceClientOptions> = {}) {
  const made = newClient(over)
  await made.client.login({ onPrompt: (a) => approveAs(ts.url, a.userCode) })
  const grant = (await readStoredGrant(made.store, made.client.account))!
  return { ...made, grant }
}

describe('device login against devicegate', () => {
  it('binds the tokens to the installation key with DPoP by default (cnf.jkt)', async () => {
    const { client, grant } = await loggedIn()
    const session = (await client.session())!
    const key = await client.dpopKey()
    expect(session).toMatchObject({ issuer: ts.url, clientId: 'cli', tokenType: 'DPoP', hasRefreshToken: true, dpopJkt: key.thumbprint })
    expect(JSON.stringify(session)).not.toContain(grant.accessToken)
    expect(decodeJwt(grant.accessToken)).toMatchObject({ sub: 'alice', client_id: 'cli', cnf: { jkt: key.thumbprint } })
    expect(await introspect(grant.accessToken)).toMatchObject({ active: true, sub: 'alice', cnf: { jkt: key.thumbprint } })
    expect(grant.revocationEndpoint).toBe(`${ts.url}/revoke`)
  })

  it('binds the device code to the installation key: a stolen code is refused without a proof or with another key (invalid_grant), the SDK\'s login completes', async () => {
    const { client, store } = newClient()
    const { key: thief } = await DpopKey.generate()
    const token = `${ts.url}/token`
    const attempts: { status: number; json: any }[] = []
    const session = await client.login({
      onPrompt: async (a) => {
        await approveAs(ts.url, a.userCode)
        // The user has approved: the code is now worth stealing.
        const form = { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: a.deviceCode, client_id: 'cli' }
        attempts.push(await postForm(token, form))
        attempts.push(await postForm(token, form, { DPoP: await thief.proof({ method: 'POST', url: token }) }))
      },
    })
    expect(attempts.map((r) => [r.status, r.json.error])).toEqual([
      [400, 'invalid_grant'],
      [400, 'invalid_grant'],
    ])
    const key = await client.dpopKey()
    expect(session).toMatchObject({ tokenType: 'DPoP', dpopJkt: key.thumbprint })
    const grant = (await readStoredGrant(store, client.account))!
    expect(await introspect(grant.accessToken)).toMatchObject({ active: true, sub: 'alice', cnf: { jkt: key.thumbprint } })
  })

  it('uses Bearer tokens when DPoP is off', async () => {
    const { grant } = await loggedIn({ dpop: 'off' })
    expect(grant.tokenType).toBe('Bearer')
    expect(grant.dpopJkt).toBeUndefined()
    expect(decodeJwt(grant.accessToken).cnf).toBeUndefined()
  })

  it('throws access_denied when the user denies, and stores nothing', async () => {
    const { client, store } = newClient()
    const err = await client.login({ onPrompt: (a) => approveAs(ts.url, a.userCode, 'deny') }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OAuthResponseError)
    expect(err).toMatchObject({ error: 'access_denied', status: 400 })
    expect(await readStoredGrant(store, client.account)).toBeUndefined()
  })

  it('throws invalid_client (401) for a client the server does not know', async () => {
    const { client } = newClient({ clientId: 'no-such-client' })
    await expect(client.login({ onPrompt: () => {} })).rejects.toMatchObject({ name: 'OAuthResponseError', error: 'invalid_client', status: 401 })
  })

  it('throws invalid_scope for a scope the client may not have', async () => {
    const { client } = newClient({ scope: 'admin' })
    await expect(client.login({ onPrompt: () => {} })).rejects.toMatchObject({ error: 'invalid_scope' })
  })
})

describe('a client whose clock is minutes off (issue 16 item 12, RFC 9449 §11.1)', () => {
  it('learns the server time from the iat refusal, retries once, and logs in with DPoP', async () => {
    const skewed = await startTestServer()
    try {
      skewed.clock.advance(300) // the server's clock is 5 minutes ahead of the client's
      // Without the correction a proof made now is refused, and the answer states the server's time.
      const k = await DpopKey.generate()
      const refused = await fetch(`${skewed.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await k.key.proof({ method: 'POST', url: `${skewed.url}/token` }) },
        body: 'grant_type=refresh_token&refresh_token=x&client_id=cli',
      })
      expect(refused.status).toBe(400)
      expect(((await refused.json()) as { error: string }).error).toBe('invalid_dpop_proof')
      expect(Math.abs(Date.parse(refused.headers.get('date')!) / 1000 - skewed.clock.nowSeconds())).toBeLessThanOrEqual(1)

      const store = new MemoryTokenStore()
      const client = new DeviceClient({ issuer: skewed.url, clientId: 'cli', scope: 'read offline_access', store, clock: new VirtualClock() })
      await client.login({ onPrompt: (a) => approveAs(skewed.url, a.userCode) })
      const grant = (await readStoredGrant(store, client.account))!
      expect(grant.tokenType).toBe('DPoP')
      const proofIat = (jwt: string) => decodeJwt(jwt).iat!
      // The proofs now carry iat on the server's clock.
      const key = await client.dpopKey()
      expect(Math.abs(proofIat(await key.proof({ method: 'POST', url: `${skewed.url}/token` })) - skewed.clock.nowSeconds())).toBeLessThanOrEqual(2)
    } finally {
      await skewed.close()
    }
  })

  it('adjusts only when the server Date differs by more than the tolerance, and only once per difference', async () => {
    const { key } = await DpopKey.generate()
    const now = Date.parse('2026-01-01T00:00:00Z')
    const at = (ms: number) => new Headers({ date: new Date(ms).toUTCString() })
    expect(key.adjustClock('https://as.example/token', at(now + 1000), now)).toBe(false)
    expect(key.adjustClock('https://as.example/token', at(now + 300_000), now)).toBe(true)
    expect(key.adjustClock('https://as.example/token', at(now + 300_000), now)).toBe(false)
    expect(key.adjustClock('https://as.example/token', new Headers(), now)).toBe(false)
  })
})

describe('refresh with rotation', () => {
  it('refreshes within 60 s of expiry, rotating the refresh token in the store', async () => {
    const { client, clock, store, grant } = await loggedIn()
    expect((await client.getAccessToken()).accessToken).toBe(grant.accessToken) // not due yet
    clock.now = grant.expiresAt! - 59
    const fresh = await client.getAccessToken()
    expect(fresh.accessToken).not.toBe(grant.accessToken)
    const stored = (await readStoredGrant(store, client.account))!
    expect(stored.accessToken).toBe(fresh.accessToken)
    expect(stored.refreshToken).toBeDefined()
    expect(stored.refreshToken).not.toBe(grant.refreshToken)
    expect(stored.dpopJkt).toBe(grant.dpopJkt)
    expect(decodeJwt(fresh.accessToken).cnf).toEqual({ jkt: grant.dpopJkt })
    expect(await introspect(fresh.accessToken)).toMatchObject({ active: true })
  })

  it('writes the rotated grant to the store before the new access token is used', async () => {
    const log: string[] = []
    const resource = await startResource(log)
    try {
      const { client, clock, grant } = await loggedIn({ store: new LoggingStore(log), fetch: (input, init) => globalThis.fetch(input, init) })
      log.length = 0
      clock.now = grant.expiresAt! // due
      const res = await client.fetch(`${resource.url}/api`)
      expect(res.status).toBe(200)
      expect(log).toEqual([`set grant-${client.account}`, 'resource GET /api'])
      const stored = (await readStoredGrant((client.store as LoggingStore).inner, client.account))!
      expect(resource.tokens.at(-1)).toBe(stored.accessToken)
    } finally {
      await resource.close()
    }
  })

  it('does not use the new access token when the rotated grant cannot be stored', async () => {
    const log: string[] = []
    const resource = await startResource(log)
    try {
      const store = new LoggingStore(log)
      const { client, clock, grant } = await loggedIn({ store })
      store.failWrites = true
      log.length = 0
      clock.now = grant.expiresAt!
      await expect(client.fetch(`${resource.url}/api`)).rejects.toThrow('disk full')
      expect(log).toEqual([])
    } finally {
      await resource.close()
    }
  })

  it('refuses a refresh of a DPoP-bound grant answered with token_type Bearer (RFC 9449 §5)', async () => {
    let downgrade = false
    const fetch = async (input: string | URL, init?: RequestInit) => {
      const res = await globalThis.fetch(input, init)
      if (!downgrade || !String(input).endsWith('/token') || res.status !== 200) return res
      const body = (await res.json()) as Record<string, unknown>
      return new Response(JSON.stringify({ ...body, token_type: 'Bearer' }), { status: 200, headers: { 'content-type': 'application/json' } })
    }
    const { client, store, grant } = await loggedIn({ fetch })
    expect(grant.dpopJkt).toBeDefined()
    downgrade = true
    const err = await client.refresh().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ClientError)
    expect(err).toMatchObject({ code: 'ERR_BAD_RESPONSE' })
    expect((await readStoredGrant(store, client.account))!.accessToken).toBe(grant.accessToken)
  })

  it('shares one refresh between concurrent callers, so rotation never looks like reuse', async () => {
    const { client, grant } = await loggedIn()
    const results = await Promise.all([client.refresh(), client.refresh(), client.getAccessToken({ forceRefresh: true })])
    expect(new Set(results.map((r) => r.accessToken)).size).toBe(1)
    expect(results[0]!.accessToken).not.toBe(grant.accessToken)
    expect(await introspect(results[0]!.accessToken)).toMatchObject({ active: true })
  })

  it('shares one refresh across processes through the lock file: one request, no reuse (issue 16 item 10)', async () => {
    const lockDir = mkdtempSync(join(tmpdir(), 'devicegate-locks-'))
    try {
      // Bearer tokens, so a second refresh with the same token would be reuse and revoke the family.
      const { client, store, clock } = await loggedIn({ dpop: 'off', lockDir })
      let refreshRequests = 0
      const counting: FetchLike = async (input, init) => {
        if (String(input).endsWith('/token') && String(init?.body).includes('grant_type=refresh_token')) refreshRequests++
        return globalThis.fetch(input, init)
      }
      clock.now += 590 // within the 60 s margin of the 600 s token
      // Two "processes": separate clients (no shared in-memory state) on one store and lock directory.
      const others = [0, 1, 2].map(() => new DeviceClient({ issuer: ts.url, clientId: 'cli', store, clock, dpop: 'off', lockDir, fetch: counting, account: client.account }))
      const results = await Promise.all(others.map((c) => c.getAccessToken()))
      expect(refreshRequests).toBe(1)
      expect(new Set(results.map((r) => r.accessToken)).size).toBe(1)
      expect(await introspect(results[0]!.accessToken)).toMatchObject({ active: true })
    } finally {
      rmSync(lockDir, { recursive: true, force: true })
    }
  })

  it('never refreshes a token younger than half its lifetime, whatever the margin (issue 16 item 10)', async () => {
    const { client, clock, grant } = await loggedIn({ refreshMarginSeconds: 3600 }) // margin > lifetime (600 s)
    expect((await client.getAccessToken()).accessToken).toBe(grant.accessToken)
    clock.now += 299
    expect((await client.getAccessToken()).accessToken).toBe(grant.accessToken)
    clock.now += 1
    expect((await client.getAccessToken()).accessToken).not.toBe(grant.accessToken)
  })

  it('on invalid_grant (a reused refresh token) wipes the stored grant and asks for a new login', async () => {
    const { client, store, grant } = await loggedIn()
    const name = `grant-${client.account}`
    const stale = (await store.get(name))!
    const rotated = await client.refresh()
    await store.set(name, stale) // e.g. a stale copy restored from a backup
    ts.clock.advance(11) // past the rotation grace (10 s), where a retry would still be answered
    const err = await client.refresh().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ClientError)
    expect(err).toMatchObject({ code: 'ERR_LOGIN_REQUIRED' })
    expect((err as ClientError).cause).toMatchObject({ error: 'invalid_grant' })
    expect(await store.get(name)).toBeUndefined()
    // the server revoked the whole family on reuse (RFC 9700 §4.14.2)
    expect(await introspect(rotated.accessToken)).toEqual({ active: false })
    expect(await introspect(grant.accessToken)).toEqual({ active: false })
    await expect(client.getAccessToken()).rejects.toMatchObject({ code: 'ERR_LOGIN_REQUIRED' })
  })

  it('asks for a new login when the access token expired and there is no refresh token', async () => {
    const { client, clock, grant, store } = await loggedIn({ scope: 'read' })
    if (grant.refreshToken) await store.set(`grant-${client.account}`, JSON.stringify({ ...grant, refreshToken: undefined }))
    clock.now = grant.expiresAt! + 1
    await expect(client.getAccessToken()).rejects.toMatchObject({ code: 'ERR_LOGIN_REQUIRED' })
  })
})

/** A tiny resource server that checks DPoP proofs (RFC 9449 §7) and first demands a nonce (§9). */
async function startResource(log: string[], nonceChallenge: string | string[] = 'DPoP error="use_dpop_nonce", error_description="nonce required"') {
  const tokens: string[] = []
  const proofs: Record<string, unknown>[] = []
  let nonceRequired = false
  const server: Server = createServer(async (req, res) => {
    log.push(`resource ${req.method} ${req.url}`)
    const auth = req.headers.authorization ?? ''
    const [scheme, token] = auth.split(' ')
    tokens.push(token!)
    if (scheme === 'DPoP') {
      const proof = req.headers.dpop as string
      const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' })
      proofs.push(payload)
      const jkt = await calculateJwkThumbprint(decodeProtectedHeader(proof).jwk as JWK)
      const ath = createHash('sha256').update(token!).digest('base64url')
      const cnf = (decodeJwt(token!).cnf as { jkt: string }).jkt
      if (nonceRequired && payload.nonce !== 'rs-nonce') {
        res.writeHead(401, { 'www-authenticate': nonceChallenge, 'dpop-nonce': 'rs-nonce' })
        res.end()
        return
      }
      if (payload.ath !== ath || jkt !== cnf || payload.htm !== req.method || payload.htu !== `http://127.0.0.1:${port}${req.url!.split("?")[0]}`) {
        res.writeHead(401, { 'www-authenticate': 'DPoP error="invalid_dpop_proof"' })
        res.end()
        return
      }
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ ok: true }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    tokens,
    proofs,
    requireNonce() {
      nonceRequired = true
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

describe('authorised requests', () => {
  // RFC 9110 §11.6.1: WWW-Authenticate is a list of challenges in any order, in one field line or several.
  for (const [name, challenge] of [
    ['after a Bearer challenge in the same field', 'Bearer realm="api", DPoP realm="api", algs="ES256 EdDSA", error="use_dpop_nonce"'],
    ['in a second WWW-Authenticate field', ['Bearer realm="api"', 'DPoP algs="ES256", error="use_dpop_nonce"']],
  ] as const)
    it(`retries once with a resource nonce asked for by a DPoP challenge ${name} (RFC 9449 §9, RFC 9110 §11.6.1)`, async () => {
      const log: string[] = []
      const resource = await startResource(log, challenge as string | string[])
      try {
        resource.requireNonce()
        const { client } = await loggedIn()
        const res = await client.fetch(`${resource.url}/api`, { method: 'GET' })
        expect(res.status).toBe(200)
        expect(log.filter((l) => l.startsWith('resource'))).toHaveLength(2)
        expect(resource.proofs[1]).toMatchObject({ nonce: 'rs-nonce' })
      } finally {
        await resource.close()
      }
    })

  it('sends Authorization: DPoP with a proof carrying ath, and retries once with a resource nonce', async () => {
    const log: string[] = []
    const resource = await startResource(log)
    try {
      resource.requireNonce()
      const { client, grant } = await loggedIn()
      const res = await client.fetch(`${resource.url}/api?x=1`, { method: 'GET' })
      expect(res.status).toBe(200)
      expect(log.filter((l) => l.startsWith('resource'))).toHaveLength(2)
      expect(resource.tokens).toEqual([grant.accessToken, grant.accessToken])
      expect(resource.proofs[1]).toMatchObject({ nonce: 'rs-nonce', htm: 'GET', htu: `${resource.url}/api` })
      expect(resource.proofs[0]!.jti).not.toBe(resource.proofs[1]!.jti)
    } finally {
      await resource.close()
    }
  })

  it('sends Authorization: Bearer for unbound tokens', async () => {
    const log: string[] = []
    const resource = await startResource(log)
    try {
      const { client, grant } = await loggedIn({ dpop: 'off' })
      expect((await client.fetch(`${resource.url}/api`)).status).toBe(200)
      expect(resource.tokens).toEqual([grant.accessToken])
      expect(resource.proofs).toEqual([])
    } finally {
      await resource.close()
    }
  })
})

describe('logout (RFC 7009)', () => {
  it('revokes the refresh and access tokens at the server, then deletes locally', async () => {
    const { client, store, grant } = await loggedIn()
    expect(await introspect(grant.refreshToken!)).toMatchObject({ active: true })
    const result = await client.logout()
    expect(result).toEqual({ wasLoggedIn: true, revoked: true })
    expect(await introspect(grant.refreshToken!)).toEqual({ active: false })
    expect(await introspect(grant.accessToken)).toEqual({ active: false })
    expect(await readStoredGrant(store, client.account)).toBeUndefined()
    expect(await client.logout()).toEqual({ wasLoggedIn: false, revoked: false })
  })

  it('still deletes locally when the server cannot be reached, and says revocation failed', async () => {
    const { client, store, grant } = await loggedIn()
    await store.set(`grant-${client.account}`, JSON.stringify({ ...grant, revocationEndpoint: 'http://127.0.0.1:9/revoke' }))
    const result = await client.logout()
    expect(result).toMatchObject({ wasLoggedIn: true, revoked: false, revocationError: { code: 'ERR_NETWORK' } })
    expect(await readStoredGrant(store, client.account)).toBeUndefined()
    expect(await introspect(grant.accessToken)).toMatchObject({ active: true }) // as said: not revoked
  })
})
