/**
 * OpenID Connect for device-flow clients (issue 13 §1): the ID Token of the device-flow token
 * response (OpenID Connect Core 1.0 §2, §3.1.3.6), validated by openid-client v6 itself; the
 * UserInfo Endpoint (§5.3) with Bearer (RFC 6750) and DPoP (RFC 9449 §7) tokens and their errors;
 * the discovery document (Discovery 1.0 §3); `auth_time`/`amr`/`acr` in access tokens.
 */
import { hash } from '@node-rs/argon2'
import { decodeJwt } from 'jose'
import * as client from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ACR_VALUES } from '../src/protocol/oidc.js'
import { ath, dpopKey, makeProof } from './support/dpop.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, PageSession, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE = ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']
let t: TestServer

/** Fixture clients plus an OpenID Connect CLI (polls every second) and a user with an e-mail address. */
export async function oidcConfig() {
  const base = await fixtureConfigFile()
  return fixtureConfigFile({
    clients: [
      ...base.clients,
      { client_id: 'oidc-cli', name: 'OIDC CLI', type: 'public', grant_types: DEVICE, scopes: ['openid', 'profile', 'email', 'read', 'offline_access'], refresh_token_issuance: 'always', poll_interval_seconds: 1 },
    ],
    users: [
      { username: 'alice', display_name: 'Alice', email: 'alice@example.com', password_hash: await hash(FIXTURE.password) },
      { username: 'mallory', display_name: 'Mallory', password_hash: await hash(FIXTURE.attackerPassword) },
    ],
  })
}

beforeAll(async () => {
  t = await startTestServer({ config: await oidcConfig() })
})
afterAll(async () => {
  await t?.close()
})

/** Runs the device flow over HTTP (approved by the page helper) and returns the token response. */
async function deviceLogin(form: Record<string, string>, headers: (path: string) => Promise<Record<string, string>> = async () => ({})) {
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'oidc-cli', ...form }, await headers('/device_authorization'))
  expect(auth.status).toBe(200)
  await approveAs(t.url, auth.json.user_code)
  const res = await postForm(`${t.url}/token`, { grant_type: DEVICE[0]!, client_id: 'oidc-cli', device_code: auth.json.device_code }, await headers('/token'))
  expect(res.status).toBe(200)
  return res.json as { access_token: string; id_token?: string; refresh_token: string; token_type: string }
}

describe('OpenID Connect Discovery 1.0 §3', () => {
  it('serves /.well-known/openid-configuration with the userinfo endpoint and the ID Token algorithm', async () => {
    const res = await fetch(`${t.url}/.well-known/openid-configuration`)
    expect(res.status).toBe(200)
    const doc = (await res.json()) as Record<string, unknown>
    expect(doc).toMatchObject({
      issuer: t.issuer,
      userinfo_endpoint: `${t.issuer}/userinfo`,
      jwks_uri: `${t.issuer}/jwks`,
      device_authorization_endpoint: `${t.issuer}/device_authorization`,
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
      acr_values_supported: [ACR_VALUES.password, ACR_VALUES.mfa],
    })
    expect(doc.scopes_supported).toContain('openid')
  })
})

describe('OpenID Connect Core §3.1.3 ID Token from the device flow (openid-client v6)', () => {
  it('returns an ID Token that openid-client validates, with nonce, auth_time, amr and acr; userinfo answers', async () => {
    const options = { execute: [client.allowInsecureRequests] }
    const config = await client.discovery(new URL(t.url), 'oidc-cli', undefined, client.None(), options)
    const nonce = client.randomNonce()
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid profile email offline_access', nonce })
    const before = t.clock.nowSeconds()
    const [tokens] = await Promise.all([client.pollDeviceAuthorizationGrant(config, device), approveAs(t.url, device.user_code)])
    // openid-client verified signature (JWKS), iss, aud, exp, iat before returning.
    const claims = tokens.claims()!
    expect(claims).toMatchObject({ iss: t.issuer, sub: 'alice', aud: 'oidc-cli', nonce, amr: ['pwd'], acr: ACR_VALUES.password })
    expect(claims.auth_time).toBeGreaterThanOrEqual(before - 1)
    expect(claims.exp - claims.iat).toBe(600)
    expect(decodeJwt(tokens.access_token)).toMatchObject({ sub: 'alice', amr: ['pwd'], acr: ACR_VALUES.password, auth_time: claims.auth_time })

    const info = await client.fetchUserInfo(config, tokens.access_token, 'alice')
    expect(info).toMatchObject({ sub: 'alice', name: 'Alice', preferred_username: 'alice', email: 'alice@example.com', email_verified: true, amr: ['pwd'] })

    // §12.2: a refresh returns a new ID Token for the same user, without nonce.
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!)
    expect(refreshed.claims()).toMatchObject({ sub: 'alice', aud: 'oidc-cli', auth_time: claims.auth_time })
    expect(refreshed.claims()!.nonce).toBeUndefined()
  })

  it('issues no ID Token without the openid scope, and still records amr/acr in the access token', async () => {
    const tokens = await deviceLogin({ scope: 'read' })
    expect(tokens.id_token).toBeUndefined()
    expect(decodeJwt(tokens.access_token)).toMatchObject({ amr: ['pwd'], acr: ACR_VALUES.password })
  })

  it('states the sign-in time as auth_time, not the approval time (Core §2)', async () => {
    t.clock.freeze()
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'oidc-cli', scope: 'openid' })
    const page = new PageSession(t.url)
    await page.signIn('alice', FIXTURE.password)
    const signedInAt = t.clock.nowSeconds()
    t.clock.advance(120)
    expect(await page.decide(auth.json.user_code, 'approve')).toBe(200)
    const res = await postForm(`${t.url}/token`, { grant_type: DEVICE[0]!, client_id: 'oidc-cli', device_code: auth.json.device_code })
    expect(decodeJwt(res.json.id_token)).toMatchObject({ auth_time: signedInAt, amr: ['pwd'] })
    expect(decodeJwt(res.json.access_token)).toMatchObject({ auth_time: signedInAt })
  })

  it('refuses an over-long nonce with invalid_request', async () => {
    const res = await postForm(`${t.url}/device_authorization`, { client_id: 'oidc-cli', scope: 'openid', nonce: 'n'.repeat(256) })
    expect(res.status).toBe(400)
    expect(res.json).toMatchObject({ error: 'invalid_request' })
  })

  it('caps nonce at 255 characters with or without openid: a 10 KB nonce is 400 invalid_request (RFC 6749 §5.2), 255 is accepted', async () => {
    for (const scope of ['openid', 'read']) {
      const res = await postForm(`${t.url}/device_authorization`, { client_id: 'oidc-cli', scope, nonce: 'n'.repeat(10 * 1024) })
      expect(res.status, scope).toBe(400)
      expect(res.json, scope).toEqual({ error: 'invalid_request', error_description: "'nonce' must be at most 255 printable ASCII characters" })
    }
    const longest = await postForm(`${t.url}/device_authorization`, { client_id: 'oidc-cli', scope: 'openid', nonce: 'n'.repeat(255) })
    expect(longest.status).toBe(200)
  })
})

describe('OpenID Connect Core §5.3 UserInfo errors (RFC 6750 §3.1, RFC 9449 §7)', () => {
  it('answers 401 with a bare challenge when no token is sent', async () => {
    const res = await fetch(`${t.url}/userinfo`)
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="devicegate-userinfo"/)
    expect(res.headers.get('www-authenticate')).not.toMatch(/error=/)
  })

  it('answers 401 invalid_token for an unknown token', async () => {
    const res = await fetch(`${t.url}/userinfo`, { headers: { authorization: 'Bearer not-a-token' } })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/error="invalid_token"/)
    expect(await res.json()).toMatchObject({ error: 'invalid_token' })
  })

  it('answers 403 insufficient_scope for a token without openid', async () => {
    const tokens = await deviceLogin({ scope: 'read' })
    const res = await fetch(`${t.url}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
    expect(res.status).toBe(403)
    expect(res.headers.get('www-authenticate')).toMatch(/error="insufficient_scope", scope="openid"/)
  })

  it('answers 403 insufficient_scope for a client_credentials token (no openid, no user)', async () => {
    const cc = await postForm(`${t.url}/token`, { grant_type: 'client_credentials' }, { authorization: basic('rs', FIXTURE.rsSecret) })
    const res = await fetch(`${t.url}/userinfo`, { headers: { authorization: `Bearer ${cc.json.access_token}` } })
    expect(res.status).toBe(403)
  })

  it('accepts a DPoP-bound token with a proof (ath, key) and refuses it as a bearer token', async () => {
    const key = await dpopKey()
    const tokens = await deviceLogin({ scope: 'openid' }, async (path) => ({ dpop: await makeProof(key, { htu: t.issuer + path, now: t.clock.nowSeconds() }) }))
    expect(tokens.token_type).toBe('DPoP')
    const bearer = await fetch(`${t.url}/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
    expect(bearer.status).toBe(401)
    const proof = await makeProof(key, { htu: `${t.issuer}/userinfo`, htm: 'GET', ath: ath(tokens.access_token), now: t.clock.nowSeconds() })
    const ok = await fetch(`${t.url}/userinfo`, { headers: { authorization: `DPoP ${tokens.access_token}`, dpop: proof } })
    expect(ok.status).toBe(200)
    expect(await ok.json()).toMatchObject({ sub: 'alice' })
    // The same proof again is a replay (RFC 9449 §11.1).
    // A resource server answers a bad proof with 401 and a DPoP challenge (RFC 9449 §7.1), not the
    // token endpoint's 400 (§5).
    const replay = await fetch(`${t.url}/userinfo`, { headers: { authorization: `DPoP ${tokens.access_token}`, dpop: proof } })
    expect(replay.status).toBe(401)
    expect(replay.headers.get('www-authenticate')).toBe('DPoP realm="devicegate-userinfo", algs="ES256 EdDSA RS256 PS256", error="invalid_dpop_proof"')
    expect(await replay.json()).toMatchObject({ error: 'invalid_dpop_proof' })
    const other = await makeProof(await dpopKey(), { htu: `${t.issuer}/userinfo`, htm: 'GET', ath: ath(tokens.access_token), now: t.clock.nowSeconds() })
    const wrongKey = await fetch(`${t.url}/userinfo`, { headers: { authorization: `DPoP ${tokens.access_token}`, dpop: other } })
    // RFC 9449 §7.1's example: a failed key binding is invalid_token on the DPoP challenge.
    expect(wrongKey.status).toBe(401)
    expect(wrongKey.headers.get('www-authenticate')).toBe('DPoP realm="devicegate-userinfo", algs="ES256 EdDSA RS256 PS256", error="invalid_token"')
  })
})
