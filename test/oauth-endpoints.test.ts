/**
 * The standard surfaces around the device flow, each against a listening server:
 * metadata (RFC 8414), JWKS and key rotation (RFC 7517), JWT access tokens (RFC 9068), opaque
 * access tokens, refresh rotation with reuse detection (RFC 6749 §6, RFC 9700 §4.14.2),
 * client_credentials (RFC 6749 §4.4), revocation (RFC 7009), introspection (RFC 7662), client
 * authentication errors (RFC 6749 §5.2), secrets stored only as hashes, logs without secrets,
 * and `/healthz`.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { Writable } from 'node:stream'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../src/server.js'
import { approveAs, basic, FIXTURE, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const RS = { authorization: basic('rs', FIXTURE.rsSecret) }

let t: TestServer
const logLines: string[] = []
beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      done()
    },
  })
  t = await startTestServer({ logger: createLogger('trace', sink) })
})
afterAll(async () => t?.close())

interface Tokens {
  access_token: string
  refresh_token?: string
  token_type: string
  expires_in: number
  scope: string
}

/** Device authorization, approval by alice, and redemption: the tokens. */
async function deviceLogin(clientId = 'cli', scope = 'read', headers: Record<string, string> = {}): Promise<Tokens> {
  const a = await postForm(`${t.url}/device_authorization`, { ...(headers.authorization ? {} : { client_id: clientId }), scope }, headers)
  expect(a.status).toBe(200)
  await approveAs(t.url, a.json.user_code)
  const res = await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: a.json.device_code, ...(headers.authorization ? {} : { client_id: clientId }) }, headers)
  expect(res.status, res.text).toBe(200)
  return res.json as Tokens
}
const refresh = (token: string, clientId = 'cli') => postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: token, client_id: clientId })
const introspect = (token: string, headers: Record<string, string> = RS, extra: Record<string, string> = {}) => postForm(`${t.url}/introspect`, { token, ...extra }, headers)
const revoke = (token: string, form: Record<string, string> = { client_id: 'cli' }, headers: Record<string, string> = {}) =>
  postForm(`${t.url}/revoke`, { token, ...form }, headers)
async function jwks(): Promise<JSONWebKeySet> {
  return (await (await fetch(`${t.url}/jwks`)).json()) as JSONWebKeySet
}

describe('RFC 8414 authorization server metadata', () => {
  it('lists every endpoint, the device grant and the DPoP algorithms, cacheable', async () => {
    const res = await fetch(`${t.url}/.well-known/oauth-authorization-server`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(res.headers.get('cache-control')).toBe('public, max-age=300')
    const m = (await res.json()) as Record<string, unknown>
    expect(m).toMatchObject({
      issuer: t.url,
      device_authorization_endpoint: `${t.url}/device_authorization`,
      token_endpoint: `${t.url}/token`,
      revocation_endpoint: `${t.url}/revoke`,
      introspection_endpoint: `${t.url}/introspect`,
      jwks_uri: `${t.url}/jwks`,
    })
    expect(m.grant_types_supported).toEqual(expect.arrayContaining([DEVICE_GRANT, 'refresh_token', 'client_credentials']))
    expect(m.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(['none', 'client_secret_basic', 'client_secret_post']))
    expect(m.introspection_endpoint_auth_methods_supported).not.toContain('none')
    expect(m.dpop_signing_alg_values_supported).toContain('ES256')
    for (const alg of m.dpop_signing_alg_values_supported as string[]) expect(alg).not.toMatch(/^(none|HS\d+)$/)
    expect(m.scopes_supported).toEqual(expect.arrayContaining(['read', 'write', 'offline_access']))
    expect(Array.isArray(m.response_types_supported)).toBe(true)
  })
})

describe('RFC 7517 JWKS and signing-key rotation', () => {
  it('publishes one ES256 public key with kid, alg and use, never private members', async () => {
    const res = await fetch(`${t.url}/jwks`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/jwk-set\+json/)
    const { keys } = await jwks()
    expect(keys.length).toBeGreaterThanOrEqual(1)
    for (const k of keys) {
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
      expect(typeof k.kid).toBe('string')
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(k).not.toHaveProperty(secret)
    }
  })

  it('KeyRing.rotate signs new tokens with the new key and keeps the old key published until its tokens expire', async () => {
    const before = await deviceLogin()
    const oldKid = decodeProtectedHeader(before.access_token).kid
    const newKid = await t.server.keys.rotate(600)
    expect(newKid).not.toBe(oldKid)
    await t.server.keys.reload() // this instance switches at once; others within 60 s
    const after = await deviceLogin()
    expect(decodeProtectedHeader(after.access_token).kid).toBe(newKid)
    const kids = (await jwks()).keys.map((k) => k.kid)
    expect(kids).toEqual(expect.arrayContaining([oldKid, newKid]))
    // Both tokens verify against the published set.
    const set = createLocalJWKSet(await jwks())
    await jwtVerify(before.access_token, set, { issuer: t.url, typ: 'at+jwt' })
    await jwtVerify(after.access_token, set, { issuer: t.url, typ: 'at+jwt' })
    // Once every token the old key signed has expired (and the reload margin passed), it is gone.
    t.clock.advance(600 + 61)
    expect((await jwks()).keys.map((k) => k.kid)).not.toContain(oldKid)
    expect((await jwks()).keys.map((k) => k.kid)).toContain(newKid)
  })
})

describe('RFC 9068 JWT access tokens', () => {
  it('are at+jwt, signed by a published key, with iss, sub, aud, client_id, scope, jti, iat and exp', async () => {
    const tokens = await deviceLogin('cli', 'read write')
    expect(tokens).toMatchObject({ token_type: 'Bearer', expires_in: 600, scope: 'read write' })
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, createLocalJWKSet(await jwks()), {
      issuer: t.url,
      audience: t.url,
      typ: 'at+jwt',
      algorithms: ['ES256'],
      currentDate: new Date(t.clock.nowSeconds() * 1000),
    })
    expect(protectedHeader).toMatchObject({ typ: 'at+jwt', alg: 'ES256' })
    expect(typeof protectedHeader.kid).toBe('string')
    expect(payload).toMatchObject({ iss: t.url, sub: 'alice', aud: t.url, client_id: 'cli', scope: 'read write' })
    expect(typeof payload.jti).toBe('string')
    expect(payload.exp! - payload.iat!).toBe(600)
    expect(Math.abs(payload.iat! - t.clock.nowSeconds())).toBeLessThanOrEqual(2)
    expect(payload).not.toHaveProperty('cnf') // a bearer token carries no key binding
    // Two tokens never share a jti.
    const other = await deviceLogin()
    expect(decodeJwtPayload(other.access_token).jti).not.toBe(payload.jti)
  })
})

function decodeJwtPayload(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
}

describe('opaque access tokens (per client)', () => {
  it('are random handles, not JWTs, that introspection describes', async () => {
    const tokens = await deviceLogin('opaque-cli', 'read offline_access')
    expect(tokens.access_token).toMatch(/^dga_[A-Za-z0-9_-]{43}$/)
    expect(tokens.refresh_token).toMatch(/^dgr_/)
    const res = await introspect(tokens.access_token)
    expect(res.json).toMatchObject({ active: true, client_id: 'opaque-cli', sub: 'alice', scope: 'read offline_access', token_type: 'Bearer', iss: t.url })
    expect(res.json.exp - res.json.iat).toBe(600)
  })

  it('without offline_access a client with the default issuance gets no refresh token', async () => {
    const tokens = await deviceLogin('opaque-cli', 'read')
    expect(tokens.refresh_token).toBeUndefined()
  })
})

describe('RFC 6749 §6 refresh with rotation and RFC 9700 §4.14.2 reuse detection', () => {
  it('rotates on every use; replaying a used refresh token revokes the whole family', async () => {
    const first = await deviceLogin()
    const second = await refresh(first.refresh_token!)
    expect(second.status).toBe(200)
    expect(second.headers.get('cache-control')).toBe('no-store')
    expect(second.json.refresh_token).toMatch(/^dgr_/)
    expect(second.json.refresh_token).not.toBe(first.refresh_token)
    expect(second.json.access_token).not.toBe(first.access_token)
    expect(second.json.scope).toBe('read')
    // The rotated-out token is no longer active.
    expect((await introspect(first.refresh_token!)).json).toEqual({ active: false })
    // Reuse: invalid_grant, and every token of the family dies.
    const replay = await refresh(first.refresh_token!)
    expect(replay.status).toBe(400)
    expect(replay.json.error).toBe('invalid_grant')
    const afterReuse = await refresh(second.json.refresh_token)
    expect(afterReuse.status).toBe(400)
    expect(afterReuse.json.error).toBe('invalid_grant')
    for (const token of [first.access_token, second.json.access_token, second.json.refresh_token])
      expect((await introspect(token)).json).toEqual({ active: false })
  })

  it('may narrow the scope of the new access token, never widen it', async () => {
    const first = await deviceLogin('cli', 'read write')
    const narrowed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: first.refresh_token!, client_id: 'cli', scope: 'read' })
    expect(narrowed.status).toBe(200)
    expect(narrowed.json.scope).toBe('read')
    const widened = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', refresh_token: narrowed.json.refresh_token, client_id: 'cli', scope: 'read admin' })
    expect(widened.status).toBe(400)
    expect(widened.json.error).toBe('invalid_scope')
  })

  it("refuses another client's refresh token with invalid_grant and leaves it usable", async () => {
    const first = await deviceLogin()
    const stolen = await refresh(first.refresh_token!, 'short-cli')
    expect(stolen.status).toBe(400)
    expect(stolen.json.error).toBe('invalid_grant')
    expect((await refresh(first.refresh_token!)).status).toBe(200)
  })
})

describe('RFC 6749 §4.4 client_credentials', () => {
  it('issues a bearer token to an authenticated confidential client, without refresh token, sub = client_id', async () => {
    const res = await postForm(`${t.url}/token`, { grant_type: 'client_credentials' }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('pragma')).toBe('no-cache')
    // JSON is never sniffed as HTML; the page-only headers (CSP, cookies) stay on the pages.
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('content-security-policy')).toBeNull()
    expect(res.json).toMatchObject({ token_type: 'Bearer', expires_in: 600, scope: 'read write' })
    expect(res.json.refresh_token).toBeUndefined()
    expect(decodeJwtPayload(res.json.access_token)).toMatchObject({ sub: 'conf', client_id: 'conf' })
    const post = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', client_id: 'rs', client_secret: FIXTURE.rsSecret, scope: 'admin' })
    expect(post.status).toBe(200)
    expect(post.json.scope).toBe('admin')
  })

  it('refuses clients without the grant (unauthorized_client) and scopes outside the client (invalid_scope)', async () => {
    const publicClient = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', client_id: 'cli' })
    expect(publicClient.status).toBe(400)
    expect(publicClient.json.error).toBe('unauthorized_client')
    const scope = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'admin' }, { authorization: basic('conf', FIXTURE.confSecret) })
    expect(scope.status).toBe(400)
    expect(scope.json.error).toBe('invalid_scope')
  })
})

describe('RFC 6749 §5.2 invalid_client', () => {
  it('answers 401 with WWW-Authenticate: Basic when the client used HTTP Basic', async () => {
    const res = await postForm(`${t.url}/token`, { grant_type: 'client_credentials' }, { authorization: basic('conf', 'wrong-secret') })
    expect(res.status).toBe(401)
    expect(res.json.error).toBe('invalid_client')
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="devicegate"/)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const unknown = await postForm(`${t.url}/token`, { grant_type: 'client_credentials' }, { authorization: basic('nobody', 'x') })
    expect(unknown.status).toBe(401)
    expect(unknown.headers.get('www-authenticate')).toMatch(/^Basic /)
  })

  it('answers every 401 with a Basic challenge, also when the secret came in the body or the client is unknown (RFC 9110 §15.5.2)', async () => {
    const post = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', client_id: 'conf', client_secret: 'wrong-secret' })
    expect(post.status).toBe(401)
    expect(post.json.error).toBe('invalid_client')
    expect(post.headers.get('www-authenticate')).toMatch(/^Basic /)
    const unknown = await postForm(`${t.url}/device_authorization`, { client_id: 'nobody' })
    expect(unknown.status).toBe(401)
    expect(unknown.json.error).toBe('invalid_client')
    expect(unknown.headers.get('www-authenticate')).toMatch(/^Basic /)
    const bearer = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', client_id: 'conf' }, { authorization: 'Bearer not-a-client-credential' })
    expect(bearer.status).toBe(401)
    expect(bearer.headers.get('www-authenticate')).toMatch(/^Basic /)
  })

  it('refuses a compressed body with 415 invalid_request instead of parsing the bytes as a form (RFC 9110 §8.4)', async () => {
    const res = await postForm(`${t.url}/device_authorization`, { client_id: 'cli' }, { 'content-encoding': 'gzip' })
    expect(res.status).toBe(415)
    expect(res.json.error).toBe('invalid_request')
    expect(res.headers.get('cache-control')).toBe('no-store')
  })

  it('keeps error_description inside the RFC 6749 §5.2 character set, even when echoing input', async () => {
    const res = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'r\u00e9ad "x"' })
    expect(res.status).toBe(400)
    expect(res.json.error).toBe('invalid_scope')
    expect(res.json.error_description).toMatch(/^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/)
  })

  it('refuses a confidential client that sends no secret', async () => {
    const res = await postForm(`${t.url}/device_authorization`, { client_id: 'conf', scope: 'read' })
    expect(res.status).toBe(401)
    expect(res.json.error).toBe('invalid_client')
  })
})

describe('RFC 7009 revocation, then RFC 7662 introspection', () => {
  it('revoking a refresh token revokes its family: the access token is inactive at once', async () => {
    const tokens = await deviceLogin()
    const res = await revoke(tokens.refresh_token!, { client_id: 'cli', token_type_hint: 'refresh_token' })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect((await introspect(tokens.access_token)).json).toEqual({ active: false })
    expect((await introspect(tokens.refresh_token!)).json).toEqual({ active: false })
    expect((await refresh(tokens.refresh_token!)).json.error).toBe('invalid_grant')
  })

  it('revoking an access token revokes only it: the refresh token still works', async () => {
    const tokens = await deviceLogin()
    expect((await revoke(tokens.access_token, { client_id: 'cli', token_type_hint: 'access_token' })).status).toBe(200)
    expect((await introspect(tokens.access_token)).json).toEqual({ active: false })
    expect((await introspect(tokens.refresh_token!)).json).toMatchObject({ active: true, token_type: 'refresh_token' })
    const next = await refresh(tokens.refresh_token!)
    expect(next.status).toBe(200)
    expect((await introspect(next.json.access_token)).json.active).toBe(true)
  })

  it('a wrong token_type_hint only changes the search order', async () => {
    const tokens = await deviceLogin()
    expect((await revoke(tokens.refresh_token!, { client_id: 'cli', token_type_hint: 'access_token' })).status).toBe(200)
    expect((await introspect(tokens.access_token)).json).toEqual({ active: false })
  })

  it('answers 200 for unknown tokens and changes nothing', async () => {
    const tokens = await deviceLogin()
    expect((await revoke('dgr_never-issued-0123456789')).status).toBe(200)
    expect((await revoke('not-even-a-token', { client_id: 'cli', token_type_hint: 'refresh_token' })).status).toBe(200)
    expect((await introspect(tokens.access_token)).json.active).toBe(true)
  })

  it("refuses to revoke another client's tokens with unauthorized_client and changes nothing", async () => {
    const tokens = await deviceLogin()
    for (const token of [tokens.access_token, tokens.refresh_token!]) {
      const res = await revoke(token, {}, { authorization: basic('client-b', FIXTURE.clientBSecret) })
      expect(res.status).toBe(400)
      expect(res.json.error).toBe('unauthorized_client')
    }
    expect((await introspect(tokens.access_token)).json.active).toBe(true)
    expect((await refresh(tokens.refresh_token!)).status).toBe(200)
  })

  it('a confidential client revokes its own tokens with HTTP Basic', async () => {
    const tokens = await deviceLogin('conf', 'read', { authorization: basic('conf', FIXTURE.confSecret) })
    expect((await revoke(tokens.refresh_token!, {}, { authorization: basic('conf', FIXTURE.confSecret) })).status).toBe(200)
    expect((await introspect(tokens.access_token)).json).toEqual({ active: false })
  })
})

describe('RFC 7662 introspection', () => {
  it('describes a live access token: active, scope, client_id, sub, exp, iat, jti, token_type', async () => {
    const tokens = await deviceLogin('cli', 'read write')
    const res = await introspect(tokens.access_token)
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const claims = decodeJwtPayload(tokens.access_token)
    expect(res.json).toEqual({
      active: true,
      scope: 'read write',
      client_id: 'cli',
      sub: 'alice',
      exp: claims.exp,
      iat: claims.iat,
      jti: claims.jti,
      iss: t.url,
      token_type: 'Bearer',
    })
  })

  it('answers only {active:false} for unknown, expired and revoked tokens', async () => {
    expect((await introspect('never-issued')).json).toEqual({ active: false })
    const tokens = await deviceLogin()
    t.clock.advance(601)
    expect((await introspect(tokens.access_token)).json).toEqual({ active: false })
    expect((await introspect(tokens.refresh_token!)).json.active).toBe(true) // 30-day family
    await revoke(tokens.refresh_token!)
    expect((await introspect(tokens.refresh_token!)).json).toEqual({ active: false })
  })

  it('refuses public and unauthenticated callers with 401 invalid_client', async () => {
    const tokens = await deviceLogin()
    const asPublic = await introspect(tokens.access_token, {}, { client_id: 'cli' })
    expect(asPublic.status).toBe(401)
    expect(asPublic.json.error).toBe('invalid_client')
    const anonymous = await introspect(tokens.access_token, {})
    expect(anonymous.status).toBe(401)
    expect(anonymous.json.error).toBe('invalid_client')
    const wrong = await introspect(tokens.access_token, { authorization: basic('rs', 'wrong-secret') })
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Basic /)
  })

  it('a confidential client without the introspection right sees only its own tokens', async () => {
    const cliTokens = await deviceLogin()
    const b = { authorization: basic('client-b', FIXTURE.clientBSecret) }
    expect((await introspect(cliTokens.access_token, b)).json).toEqual({ active: false })
    const own = await deviceLogin('client-b', 'read', b)
    expect((await introspect(own.access_token, b)).json).toMatchObject({ active: true, client_id: 'client-b' })
  })
})

describe('secrets at rest and in logs', () => {
  it('stores device codes, refresh tokens, opaque access tokens and client secrets only as hashes', async () => {
    const a = await postForm(`${t.url}/device_authorization`, { client_id: 'opaque-cli', scope: 'read offline_access' })
    await approveAs(t.url, a.json.user_code)
    const tokens = (await postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: a.json.device_code, client_id: 'opaque-cli' })).json as Tokens
    const file = t.server.config.storageUrl.replace(/^sqlite:/, '')
    const dir = dirname(file)
    const bytes = readdirSync(dir)
      .filter((f) => f.startsWith('devicegate.db'))
      .map((f) => readFileSync(`${dir}/${f}`).toString('latin1'))
      .join('\n')
    // Control: the scan sees fresh rows (user codes are stored as typed lookups, not secrets).
    expect(bytes.includes(a.json.user_code.replace('-', ''))).toBe(true)
    for (const secret of [a.json.device_code, tokens.access_token, tokens.refresh_token!, FIXTURE.confSecret, FIXTURE.rsSecret, FIXTURE.password])
      expect(bytes.includes(secret)).toBe(false)
  })

  it('never logs a token, code, secret or password value (pino at trace level)', async () => {
    const tokens = await deviceLogin('cli', 'read')
    const next = (await refresh(tokens.refresh_token!)).json as Tokens
    await introspect(next.access_token)
    await postForm(`${t.url}/token`, { grant_type: 'client_credentials', client_id: 'conf', client_secret: FIXTURE.confSecret })
    await postForm(`${t.url}/token`, { grant_type: 'client_credentials' }, { authorization: basic('conf', 'a-wrong-secret-value') })
    await revoke(next.refresh_token!)
    const text = logLines.join('\n')
    expect(text).toContain('"path":"/token"') // requests are logged …
    for (const secret of [tokens.access_token, tokens.refresh_token!, next.access_token, next.refresh_token!, FIXTURE.confSecret, FIXTURE.rsSecret, FIXTURE.password, 'a-wrong-secret-value', basic('rs', FIXTURE.rsSecret).slice(6)])
      expect(text.includes(secret), 'a secret reached the logs').toBe(false)
  })
})

describe('/healthz', () => {
  it('answers 200 {status: ok} when the store is reachable, not cacheable', async () => {
    const res = await fetch(`${t.url}/healthz`)
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.json()).toEqual({ status: 'ok' })
  })
})
