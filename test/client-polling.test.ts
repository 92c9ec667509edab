/**
 * RFC 8628 §3.4–3.5 polling, RFC 8414 discovery and RFC 9449 §8 nonces, from the client's side,
 * against a scripted fake server so every error the RFC lists can be produced on demand.
 * Time is virtual: the SDK's clock advances when it sleeps, so a 10-minute expiry runs in
 * milliseconds and the gaps between polls can be asserted exactly.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify, type JWK } from 'jose'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  ClientError,
  DeviceClient,
  DpopKey,
  MemoryTokenStore,
  OAuthResponseError,
  discover,
  pollForToken,
  startDeviceAuthorization,
  type DeviceAuthorization,
  type FlowClock,
  type PollProgress,
} from '../src/client/index.js'

/** A clock whose sleep moves time instead of waiting. */
class VirtualClock implements FlowClock {
  now = 1_700_000_000
  sleeps: number[] = []
  nowSeconds(): number {
    return this.now
  }
  async sleep(seconds: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    this.sleeps.push(seconds)
    this.now += seconds
    await Promise.resolve()
  }
}

interface Reply {
  status: number
  body?: unknown
  headers?: Record<string, string>
}
interface Seen {
  path: string
  form: URLSearchParams
  headers: IncomingMessage['headers']
  /** Virtual time of the request. */
  at: number
}

let server: Server
let base: string
let clock: VirtualClock
let script: Array<Reply | ((seen: Seen) => Reply)> = []
let seen: Seen[] = []
let metadataDoc: Record<string, unknown> | undefined

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const path = req.url!.split('?')[0]!
      const send = (r: Reply) => {
        res.writeHead(r.status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...r.headers })
        res.end(r.body === undefined ? '' : JSON.stringify(r.body))
      }
      if (path === '/.well-known/oauth-authorization-server')
        return metadataDoc ? send({ status: 200, body: metadataDoc }) : send({ status: 404, body: { error: 'invalid_request' } })
      if (path === '/.well-known/openid-configuration') return send({ status: 200, body: { ...meta(), fromOidc: true } })
      const s: Seen = { path, form: new URLSearchParams(body), headers: req.headers, at: clock.now }
      seen.push(s)
      const next = script.shift()
      if (!next) return send({ status: 500, body: { error: 'server_error', error_description: 'script exhausted' } })
      send(typeof next === 'function' ? next(s) : next)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))
afterEach(() => {
  script = []
  seen = []
  metadataDoc = undefined
})

function meta() {
  return { issuer: base, device_authorization_endpoint: `${base}/device_authorization`, token_endpoint: `${base}/token` }
}
const pending: Reply = { status: 400, body: { error: 'authorization_pending' } }
const slowDown: Reply = { status: 400, body: { error: 'slow_down' } }
const success: Reply = { status: 200, body: { access_token: 'at-1', token_type: 'Bearer', expires_in: 600, refresh_token: 'rt-1', scope: 'read' } }

function authorization(overrides: Partial<DeviceAuthorization> = {}): DeviceAuthorization {
  return {
    deviceCode: 'dc-1',
    userCode: 'BCDF-GHJK',
    verificationUri: `${base}/device`,
    expiresInSeconds: 600,
    expiresAt: clock.now + 600,
    intervalSeconds: 5,
    ...overrides,
  }
}
/** Gaps between consecutive token requests, starting from when polling began. */
function gaps(start: number): number[] {
  const times = [start, ...seen.map((s) => s.at)]
  return times.slice(1).map((t, i) => t - times[i]!)
}

describe('RFC 8628 §3.5 polling', () => {
  it('waits the interval before each poll and keeps polling through authorization_pending', async () => {
    clock = new VirtualClock()
    script = [pending, pending, success]
    const start = clock.now
    const tokens = await pollForToken(meta(), authorization(), { clientId: 'cli', clock })
    expect(tokens).toMatchObject({ accessToken: 'at-1', tokenType: 'Bearer', refreshToken: 'rt-1', scope: 'read', expiresAt: clock.now + 600 })
    expect(gaps(start)).toEqual([5, 5, 5])
    expect(seen[0]!.form.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:device_code')
    expect(seen[0]!.form.get('device_code')).toBe('dc-1')
    expect(seen[0]!.form.get('client_id')).toBe('cli')
  })

  it('adds 5 seconds on slow_down and keeps the longer interval for every later poll', async () => {
    clock = new VirtualClock()
    script = [pending, slowDown, pending, slowDown, pending, success]
    const start = clock.now
    await pollForToken(meta(), authorization(), { clientId: 'cli', clock })
    expect(gaps(start)).toEqual([5, 5, 10, 10, 15, 15])
  })

  it('uses 5 seconds when the server gave no interval', async () => {
    clock = new VirtualClock()
    script = [
      { status: 200, body: { device_code: 'd', user_code: 'U', verification_uri: `${base}/device`, expires_in: 60 } },
      success,
    ]
    const auth = await startDeviceAuthorization(meta(), { clientId: 'cli', clock })
    expect(auth.intervalSeconds).toBe(5)
    expect(auth.expiresAt).toBe(clock.now + 60)
  })

  it('throws access_denied with the status and description when the user denies', async () => {
    clock = new VirtualClock()
    script = [pending, { status: 400, body: { error: 'access_denied', error_description: 'the user denied the request' } }]
    const err = await pollForToken(meta(), authorization(), { clientId: 'cli', clock }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OAuthResponseError)
    expect(err).toMatchObject({ error: 'access_denied', error_description: 'the user denied the request', status: 400 })
    expect(seen).toHaveLength(2)
  })

  it('throws expired_token when the server says the code expired', async () => {
    clock = new VirtualClock()
    script = [{ status: 400, body: { error: 'expired_token' } }]
    await expect(pollForToken(meta(), authorization(), { clientId: 'cli', clock })).rejects.toMatchObject({ error: 'expired_token', status: 400 })
  })

  it('stops at the local deadline with expired_token (status 0) and no poll after it', async () => {
    clock = new VirtualClock()
    script = Array.from({ length: 10 }, () => pending)
    const start = clock.now
    const err = await pollForToken(meta(), authorization({ expiresAt: start + 12 }), { clientId: 'cli', clock }).catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'OAuthResponseError', error: 'expired_token', status: 0 })
    expect(seen.map((s) => s.at - start)).toEqual([5, 10])
    expect(clock.now - start).toBe(12)
  })

  it.each([
    [401, 'invalid_client', 'client authentication failed'],
    [400, 'invalid_grant', 'device code is unknown'],
    [400, 'unsupported_grant_type', undefined],
  ])('passes any other error through (%i %s) as OAuthResponseError', async (status, error, description) => {
    clock = new VirtualClock()
    script = [{ status, body: { error, ...(description ? { error_description: description } : {}) } }]
    const err = (await pollForToken(meta(), authorization(), { clientId: 'cli', clock }).catch((e: unknown) => e)) as OAuthResponseError
    expect(err).toBeInstanceOf(OAuthResponseError)
    expect([err.status, err.error, err.error_description]).toEqual([status, error, description])
  })

  it('answers a non-OAuth failure (HTML 502) with ERR_BAD_RESPONSE, not a hang', async () => {
    clock = new VirtualClock()
    script = [{ status: 502 }]
    await expect(pollForToken(meta(), authorization(), { clientId: 'cli', clock })).rejects.toMatchObject({ name: 'ClientError', code: 'ERR_BAD_RESPONSE' })
  })

  it('backs off exponentially after a network failure and then goes on polling', async () => {
    clock = new VirtualClock()
    script = [pending, success]
    let failures = 1
    const flaky = async (input: string | URL, init?: RequestInit) => {
      if (failures-- > 0) throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } })
      return fetch(input, init)
    }
    const start = clock.now
    await pollForToken(meta(), authorization(), { clientId: 'cli', clock, fetch: flaky })
    // first attempt (t=5) failed before reaching the server; then 10 s, then 10 s.
    expect(seen.map((s) => s.at - start)).toEqual([15, 25])
  })

  it('reports progress with the seconds left and the grown interval', async () => {
    clock = new VirtualClock()
    script = [slowDown, success]
    const progress: PollProgress[] = []
    await pollForToken(meta(), authorization({ expiresAt: clock.now + 100 }), { clientId: 'cli', clock, onProgress: (p) => progress.push(p) })
    expect(progress[0]).toEqual({ secondsLeft: 100, intervalSeconds: 5, polls: 0 })
    const lefts = progress.map((p) => p.secondsLeft)
    expect([...lefts].sort((a, b) => b - a)).toEqual(lefts)
    expect(progress.some((p) => p.intervalSeconds === 10 && p.polls === 1)).toBe(true)
    // at least once a second while waiting
    expect(Math.max(...clock.sleeps)).toBeLessThanOrEqual(1)
  })

  it('cancels cleanly: an abort during the wait rejects with AbortError and sends no more polls', async () => {
    clock = new VirtualClock()
    script = [pending, pending, pending]
    const controller = new AbortController()
    const p = pollForToken(meta(), authorization(), {
      clientId: 'cli',
      clock,
      signal: controller.signal,
      onProgress: (pr) => {
        if (pr.polls === 1) controller.abort()
      },
    })
    await expect(p).rejects.toMatchObject({ name: 'AbortError' })
    expect(seen).toHaveLength(1)
  })
})

describe('RFC 8628 §3.1–3.2 device authorization request', () => {
  it('sends client_id and scope and maps the response', async () => {
    clock = new VirtualClock()
    script = [{ status: 200, body: { device_code: 'd', user_code: 'BCDF-GHJK', verification_uri: `${base}/device`, verification_uri_complete: `${base}/device?user_code=BCDFGHJK`, expires_in: 900, interval: 7 } }]
    const auth = await startDeviceAuthorization(meta(), { clientId: 'cli', scope: 'read write', clock })
    expect(auth).toEqual({
      deviceCode: 'd',
      userCode: 'BCDF-GHJK',
      verificationUri: `${base}/device`,
      verificationUriComplete: `${base}/device?user_code=BCDFGHJK`,
      expiresInSeconds: 900,
      expiresAt: clock.now + 900,
      intervalSeconds: 7,
    })
    expect(Object.fromEntries(seen[0]!.form)).toEqual({ client_id: 'cli', scope: 'read write' })
  })

  it('refuses a response without the required members (ERR_BAD_RESPONSE)', async () => {
    clock = new VirtualClock()
    script = [{ status: 200, body: { device_code: 'd', verification_uri: 'x', expires_in: 10 } }]
    await expect(startDeviceAuthorization(meta(), { clientId: 'cli', clock })).rejects.toMatchObject({ code: 'ERR_BAD_RESPONSE' })
  })

  it('surfaces invalid_client with its 401 status', async () => {
    clock = new VirtualClock()
    script = [{ status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } }]
    await expect(startDeviceAuthorization(meta(), { clientId: 'nope', clock })).rejects.toMatchObject({ error: 'invalid_client', status: 401 })
  })
})

describe('device code bound to the DPoP key with dpop_jkt (devicegate extension, RFC 9449 §10 parameter)', () => {
  const issued: Reply = { status: 200, body: { device_code: 'dc-1', user_code: 'BCDF-GHJK', verification_uri: 'http://127.0.0.1/device', expires_in: 600, interval: 5 } }
  const dpopSuccess: Reply = { status: 200, body: { ...(success.body as object), token_type: 'DPoP' } }

  it('sends dpop_jkt = the key\'s RFC 7638 thumbprint, given the key or the thumbprint, and remembers it', async () => {
    clock = new VirtualClock()
    const { key } = await DpopKey.generate()
    const jkt = await calculateJwkThumbprint(key.publicJwk as JWK, 'sha256')
    script = [issued, issued]
    const byKey = await startDeviceAuthorization(meta(), { clientId: 'cli', clock, dpopKey: key })
    const byThumbprint = await startDeviceAuthorization(meta(), { clientId: 'cli', clock, dpopKey: jkt })
    expect(seen.map((s) => Object.fromEntries(s.form))).toEqual([{ client_id: 'cli', dpop_jkt: jkt }, { client_id: 'cli', dpop_jkt: jkt }])
    expect(byKey.dpopJkt).toBe(jkt)
    expect(byThumbprint.dpopJkt).toBe(jkt)
  })

  it('sends no dpop_jkt without a key', async () => {
    clock = new VirtualClock()
    script = [issued]
    const auth = await startDeviceAuthorization(meta(), { clientId: 'cli', clock })
    expect(seen[0]!.form.has('dpop_jkt')).toBe(false)
    expect(auth.dpopJkt).toBeUndefined()
  })

  it('refuses a malformed thumbprint (TypeError) without sending anything', async () => {
    clock = new VirtualClock()
    await expect(startDeviceAuthorization(meta(), { clientId: 'cli', clock, dpopKey: 'abc' })).rejects.toBeInstanceOf(TypeError)
    expect(seen).toEqual([])
  })

  it('refuses to poll a bound code without its key or with another key (TypeError), sending nothing', async () => {
    clock = new VirtualClock()
    const { key } = await DpopKey.generate()
    const { key: other } = await DpopKey.generate()
    const bound = authorization({ dpopJkt: key.thumbprint })
    await expect(pollForToken(meta(), bound, { clientId: 'cli', clock })).rejects.toBeInstanceOf(TypeError)
    await expect(pollForToken(meta(), bound, { clientId: 'cli', clock, dpopKey: other })).rejects.toBeInstanceOf(TypeError)
    expect(seen).toEqual([])
  })

  it('DeviceClient.login sends dpop_jkt equal to the thumbprint of the key its polls\' proofs carry when the server advertises DPoP', async () => {
    clock = new VirtualClock()
    metadataDoc = { ...meta(), dpop_signing_alg_values_supported: ['ES256'] }
    script = [issued, pending, dpopSuccess]
    const client = new DeviceClient({ issuer: base, clientId: 'cli', store: new MemoryTokenStore(), clock })
    const session = await client.login({ onPrompt: () => {} })
    const [authorize, ...polls] = seen
    expect(authorize!.path).toBe('/device_authorization')
    expect(polls).toHaveLength(2)
    for (const poll of polls) {
      const jwk = decodeProtectedHeader(poll.headers.dpop as string).jwk as JWK
      expect(authorize!.form.get('dpop_jkt')).toBe(await calculateJwkThumbprint(jwk, 'sha256'))
    }
    expect(authorize!.form.get('dpop_jkt')).toBe((await client.dpopKey()).thumbprint)
    expect(session.dpopJkt).toBe(authorize!.form.get('dpop_jkt'))
  })

  it('DeviceClient.login sends no dpop_jkt when the server does not advertise DPoP, or DPoP is off', async () => {
    clock = new VirtualClock()
    metadataDoc = meta()
    script = [issued, success]
    await new DeviceClient({ issuer: base, clientId: 'cli', store: new MemoryTokenStore(), clock }).login({ onPrompt: () => {} })
    metadataDoc = { ...meta(), dpop_signing_alg_values_supported: ['ES256'] }
    script = [issued, success]
    await new DeviceClient({ issuer: base, clientId: 'cli', store: new MemoryTokenStore(), clock, dpop: 'off' }).login({ onPrompt: () => {} })
    expect(seen.map((s) => s.path)).toEqual(['/device_authorization', '/token', '/device_authorization', '/token'])
    for (const s of seen) {
      expect(s.form.has('dpop_jkt')).toBe(false)
      expect(s.headers.dpop).toBeUndefined()
    }
  })
})

describe('RFC 8414 discovery', () => {
  it('uses /.well-known/oauth-authorization-server first', async () => {
    metadataDoc = meta()
    const doc = await discover(base)
    expect(doc.token_endpoint).toBe(`${base}/token`)
    expect(doc.fromOidc).toBeUndefined()
  })
  it('falls back to /.well-known/openid-configuration', async () => {
    const doc = await discover(base)
    expect(doc.fromOidc).toBe(true)
  })
  it('refuses metadata for another issuer (RFC 8414 §3.3)', async () => {
    metadataDoc = { ...meta(), issuer: 'https://evil.example' }
    await expect(discover(base)).rejects.toMatchObject({ code: 'ERR_DISCOVERY' })
  })
  it('refuses a server without a device_authorization_endpoint', async () => {
    metadataDoc = { issuer: base, token_endpoint: `${base}/token` }
    await expect(discover(base)).rejects.toThrow(/does not offer the device authorization grant/)
  })
  it('says the server cannot be reached (ERR_NETWORK)', async () => {
    const closed = createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as AddressInfo).port
    await new Promise<void>((r) => closed.close(() => r()))
    const err = await discover(`http://127.0.0.1:${port}`).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ClientError)
    expect(err).toMatchObject({ code: 'ERR_NETWORK', message: expect.stringContaining('connection refused') })
  })
  it('refuses plain http except on loopback', async () => {
    await expect(discover('http://auth.example.com')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
  })
})

describe('RFC 9449 DPoP proofs at the token endpoint', () => {
  it('signs each poll with a fresh proof and retries once with the nonce on use_dpop_nonce', async () => {
    clock = new VirtualClock()
    const { key } = await DpopKey.generate()
    script = [
      { status: 400, body: { error: 'use_dpop_nonce' }, headers: { 'DPoP-Nonce': 'n-1' } },
      { status: 200, body: { ...success.body as object, token_type: 'DPoP' }, headers: { 'DPoP-Nonce': 'n-2' } },
    ]
    const tokens = await pollForToken(meta(), authorization(), { clientId: 'cli', clock, dpopKey: key })
    expect(tokens.tokenType).toBe('DPoP')
    expect(seen).toHaveLength(2)
    const proofs = await Promise.all(seen.map(async (s) => {
      const proof = s.headers.dpop as string
      const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' })
      return { payload, protectedHeader }
    }))
    for (const { payload, protectedHeader } of proofs) {
      expect(protectedHeader.alg).toBe('ES256')
      expect(protectedHeader.jwk).not.toHaveProperty('d')
      expect(payload).toMatchObject({ htm: 'POST', htu: `${base}/token` })
      expect(typeof payload.jti).toBe('string')
      expect(typeof payload.iat).toBe('number')
      expect(payload.ath).toBeUndefined()
    }
    expect(proofs[0]!.payload.nonce).toBeUndefined()
    expect(proofs[1]!.payload.nonce).toBe('n-1')
    expect(proofs[0]!.payload.jti).not.toBe(proofs[1]!.payload.jti)
    expect(decodeProtectedHeader(seen[0]!.headers.dpop as string).typ).toBe('dpop+jwt')
  })

  it('refuses a Bearer reply to a poll with a proof when the metadata advertises DPoP', async () => {
    clock = new VirtualClock()
    const { key } = await DpopKey.generate()
    script = [success]
    const err = await pollForToken({ ...meta(), dpop_signing_alg_values_supported: ['ES256'] }, authorization(), { clientId: 'cli', clock, dpopKey: key }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ClientError)
    expect(err).toMatchObject({ code: 'ERR_BAD_RESPONSE', message: expect.stringContaining('token_type "Bearer"') })
    expect(seen).toHaveLength(1)
    expect(seen[0]!.headers.dpop).toBeTypeOf('string')
  })

  it('accepts a Bearer reply to a poll with a proof when the metadata does not advertise DPoP', async () => {
    clock = new VirtualClock()
    const { key } = await DpopKey.generate()
    script = [success, { status: 200, body: { ...success.body as object, token_type: 'dpop' } }]
    expect((await pollForToken(meta(), authorization(), { clientId: 'cli', clock, dpopKey: key })).tokenType).toBe('Bearer')
    // token_type is case insensitive (RFC 6749 §5.1).
    const dpop = await pollForToken({ ...meta(), dpop_signing_alg_values_supported: ['ES256'] }, authorization(), { clientId: 'cli', clock, dpopKey: key })
    expect(dpop.tokenType).toBe('dpop')
  })

  it('does not loop when the server keeps asking for the same nonce', async () => {
    clock = new VirtualClock()
    const { key } = await DpopKey.generate()
    const again: Reply = { status: 400, body: { error: 'use_dpop_nonce' }, headers: { 'DPoP-Nonce': 'same' } }
    script = [again, again, again]
    await expect(pollForToken(meta(), authorization(), { clientId: 'cli', clock, dpopKey: key })).rejects.toMatchObject({ error: 'use_dpop_nonce' })
    expect(seen).toHaveLength(2)
  })

  it('keeps the private key non-extractable and the proof header free of private members', async () => {
    const { key, privateJwk } = await DpopKey.generate()
    expect(key.isExtractable).toBe(false)
    expect(privateJwk.d).toBeTypeOf('string')
    expect(Object.keys(key.publicJwk).sort()).toEqual(['crv', 'kty', 'x', 'y'])
    const reloaded = await DpopKey.fromJwk(privateJwk)
    expect(reloaded.thumbprint).toBe(key.thumbprint)
    expect(reloaded.isExtractable).toBe(false)
  })
})
