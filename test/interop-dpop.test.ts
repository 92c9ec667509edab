/**
 * Interop: openid-client v6 with its own DPoP support (`getDPoPHandle`, RFC 9449) completes a
 * device flow against devicegate — the device code bound with `dpop_jkt` and an RFC 8707
 * `resource` — with approval in headless Chromium (HTTP page session when Chromium is missing),
 * then calls the example API with DPoP, refreshes, and sees the token refused by the resource
 * helper within the configured delay once revoked at the server. A second server requires DPoP
 * nonces (RFC 9449 §8), which openid-client learns and retries with by itself.
 */
import { calculateJwkThumbprint, exportJWK } from 'jose'
import * as client from 'openid-client'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildResourceApi } from '../examples/resource-api.js'
import { parseConfig } from '../src/config/load.js'
import { approveInChromium, CHROMIUM, HAVE_CHROMIUM, launchChromium } from './support/browser.js'
import { approveAs, FIXTURE, fixtureConfigFile, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
if (!HAVE_CHROMIUM) console.warn(`\n*** DPoP interop: no Chromium at ${CHROMIUM}; approving over HTTP instead ***\n`)

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => resolve(p))
    })
  })
}

async function startServer(audience: string, extra: Record<string, unknown> = {}): Promise<TestServer> {
  const base = await fixtureConfigFile()
  return startTestServer({
    config: parseConfig({
      ...base,
      ...extra,
      clients: [
        ...base.clients,
        { client_id: 'api-cli', name: 'API CLI', type: 'public', grant_types: [DEVICE_GRANT, 'refresh_token'], scopes: ['read', 'write', 'offline_access'], resources: [audience], dpop: { required: true } },
      ],
    }),
  })
}

let browser: Browser | undefined
beforeAll(async () => {
  if (HAVE_CHROMIUM) browser = await launchChromium()
})
afterAll(async () => browser?.close())

async function approve(t: TestServer, device: { verification_uri_complete?: string; user_code: string }) {
  if (browser) await approveInChromium(browser, device.verification_uri_complete!)
  else await approveAs(t.url, device.user_code)
}

/** The openid-client device flow with DPoP; returns the tokens, the handle and the key's jkt. */
async function deviceFlowWithDpop(t: TestServer, audience: string) {
  const config = await client.discovery(new URL(t.url), 'api-cli', undefined, client.None(), { execute: [client.allowInsecureRequests], algorithm: 'oauth2' })
  const keyPair = await client.randomDPoPKeyPair('ES256')
  const dpop = client.getDPoPHandle(config, keyPair)
  const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256')
  // openid-client sends no proof on the device authorization request: bind with dpop_jkt.
  const device = await client.initiateDeviceAuthorization(config, { scope: 'read offline_access', resource: audience, dpop_jkt: jkt })
  await approve(t, device)
  const tokens = await client.pollDeviceAuthorizationGrant(config, device, undefined, { DPoP: dpop })
  return { config, dpop, jkt, tokens }
}

describe('interop: openid-client v6 DPoP device flow, example API, revocation', () => {
  let t: TestServer
  let api: Awaited<ReturnType<typeof buildResourceApi>>
  let apiUrl = ''
  beforeAll(async () => {
    const port = await freePort()
    apiUrl = `http://127.0.0.1:${port}`
    t = await startServer(`${apiUrl}/`)
    api = await buildResourceApi({ issuer: t.url, audience: `${apiUrl}/`, baseUrl: apiUrl, credentials: { clientId: 'rs', clientSecret: FIXTURE.rsSecret } })
    await api.listen({ host: '127.0.0.1', port })
  })
  afterAll(async () => {
    await api?.close()
    await t?.close()
  })

  it('gets DPoP-bound tokens for the API, calls it with DPoP, refreshes, and is refused within 2 s of revocation', async () => {
    const { config, dpop, jkt, tokens } = await deviceFlowWithDpop(t, `${apiUrl}/`)
    expect(tokens.token_type?.toLowerCase()).toBe('dpop')
    const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1]!, 'base64url').toString())
    expect(claims).toMatchObject({ aud: `${apiUrl}/`, cnf: { jkt } })

    const me = await client.fetchProtectedResource(config, tokens.access_token, new URL(`${apiUrl}/me`), 'GET', undefined, undefined, { DPoP: dpop })
    expect(me.status).toBe(200)
    expect(await me.json()).toMatchObject({ sub: 'alice', client_id: 'api-cli', token_type: 'DPoP', jkt })

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!, undefined, { DPoP: dpop })
    expect(refreshed.token_type?.toLowerCase()).toBe('dpop')
    const access = refreshed.access_token
    const call = async () => {
      try {
        return (await client.fetchProtectedResource(config, access, new URL(`${apiUrl}/me`), 'GET', undefined, undefined, { DPoP: dpop })).status
      } catch (err) {
        // openid-client surfaces a WWW-Authenticate challenge as an error carrying the response.
        const cause = (err as { cause?: Response; response?: Response }).response ?? (err as { cause?: Response }).cause
        if (cause instanceof Response) return cause.status
        throw err
      }
    }
    expect(await call()).toBe(200)

    await client.tokenRevocation(config, refreshed.refresh_token!) // the whole family, RFC 7009 §2.1
    const started = Date.now()
    let status = 200
    while (status === 200 && Date.now() - started < 5000) {
      await new Promise((r) => setTimeout(r, 50))
      status = await call()
    }
    expect(status).toBe(401)
    expect(Date.now() - started).toBeLessThan(2000)
  })
})

describe('interop: openid-client v6 with a server that requires DPoP nonces (RFC 9449 §8)', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startServer('https://api.example.com/', { dpop: { require_nonce: true } })
  })
  afterAll(async () => t?.close())

  it('retries with the server nonce on its own and gets DPoP-bound tokens', async () => {
    const { tokens, jkt } = await deviceFlowWithDpop(t, 'https://api.example.com/')
    expect(tokens.token_type?.toLowerCase()).toBe('dpop')
    expect(JSON.parse(Buffer.from(tokens.access_token.split('.')[1]!, 'base64url').toString()).cnf).toEqual({ jkt })
  })
})
