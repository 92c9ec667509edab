/**
 * Interop: two independent OAuth client libraries run their own RFC 8628 device-flow functions
 * against a listening devicegate, and a person approves in headless Chromium through the
 * verification pages (RFC 8628 §3.3), found by accessible names only. Then the token is
 * introspected (RFC 7662) and refreshed (RFC 6749 §6) with the same library.
 *
 * - openid-client v6: `discovery` (RFC 8414), `initiateDeviceAuthorization`,
 *   `pollDeviceAuthorizationGrant`, `tokenIntrospection`, `refreshTokenGrant`; public client.
 * - oauth4webapi: `deviceAuthorizationRequest` … `processDeviceCodeResponse`, its own polling
 *   loop, `introspectionRequest`, `refreshTokenGrantRequest`; confidential client with
 *   client_secret_basic.
 *
 * Chromium is Debian's `/usr/bin/chromium` (or `DEVICEGATE_CHROMIUM`); without it these tests are
 * skipped, loudly. The server's issuer is `http://127.0.0.1:PORT`: Chromium treats loopback as a
 * secure context, so it keeps the pages' `Secure` session cookie over plain http (asserted below).
 */
import { existsSync } from 'node:fs'
import * as oauth from 'oauth4webapi'
import * as client from 'openid-client'
import { chromium, type Browser, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FIXTURE, startTestServer, type TestServer } from './support/server.js'

const CHROMIUM = process.env.DEVICEGATE_CHROMIUM ?? '/usr/bin/chromium'
const HAVE_CHROMIUM = existsSync(CHROMIUM)
if (!HAVE_CHROMIUM) console.warn(`\n*** interop tests SKIPPED: no Chromium at ${CHROMIUM} (set DEVICEGATE_CHROMIUM) ***\n`)

let t: TestServer
let browser: Browser

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return
  t = await startTestServer()
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
})
afterAll(async () => {
  await browser?.close()
  await t?.close()
})

/**
 * A person approves in a fresh browser profile: opens the URL (verification_uri_complete, or
 * verification_uri and types the code), signs in as alice, checks the code and presses Approve.
 */
async function approveInBrowser(opts: { url: string; typeCode?: string; expectCode: string }): Promise<void> {
  const context: BrowserContext = await browser.newContext()
  try {
    const page = await context.newPage()
    await page.goto(opts.url)
    if (opts.typeCode !== undefined) {
      await page.getByLabel('Code').fill(opts.typeCode)
      await page.getByRole('button', { name: 'Continue' }).click()
    }
    await page.getByLabel('Username').fill('alice')
    await page.getByLabel('Password').fill(FIXTURE.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    // The Secure session cookie survived on http://127.0.0.1 (loopback is a secure context).
    const cookies = await context.cookies()
    expect(cookies.find((c) => c.name === 'dg_session')).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Lax' })
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toMatch(/^Allow .* to access your account\?$/)
    expect(await page.locator('.code-display').textContent()).toBe(opts.expectCode)
    await page.getByRole('button', { name: 'Approve' }).click()
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toBe('Device approved')
  } finally {
    await context.close()
  }
}

describe.skipIf(!HAVE_CHROMIUM)('interop: real clients, real browser (RFC 8628 §3.1–3.5, §3.3)', () => {
  it('openid-client v6 logs in with the device flow, introspects and refreshes the token', async () => {
    const options = { execute: [client.allowInsecureRequests], algorithm: 'oauth2' as const }
    const config = await client.discovery(new URL(t.url), 'cli', undefined, client.None(), options)
    expect(config.serverMetadata().device_authorization_endpoint).toBe(`${t.url}/device_authorization`)

    const device = await client.initiateDeviceAuthorization(config, { scope: 'read offline_access' })
    expect(device.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/)
    expect(device.interval).toBe(5)
    const [tokens] = await Promise.all([
      client.pollDeviceAuthorizationGrant(config, device),
      approveInBrowser({ url: device.verification_uri_complete!, expectCode: device.user_code }),
    ])
    expect(tokens.token_type).toBe('bearer') // oauth4webapi lower-cases token_type
    expect(tokens.scope).toBe('read offline_access')
    expect(tokens.refresh_token).toMatch(/^dgr_/)

    const rs = await client.discovery(new URL(t.url), 'rs', undefined, client.ClientSecretBasic(FIXTURE.rsSecret), options)
    const introspection = await client.tokenIntrospection(rs, tokens.access_token)
    expect(introspection).toMatchObject({ active: true, client_id: 'cli', sub: 'alice', scope: 'read offline_access', token_type: 'Bearer' })

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!)
    expect(refreshed.access_token).not.toBe(tokens.access_token)
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token) // rotated (RFC 9700 §4.14.2)
    expect((await client.tokenIntrospection(rs, refreshed.access_token)).active).toBe(true)
    expect((await client.tokenIntrospection(rs, tokens.refresh_token!)).active).toBe(false)
  })

  it('oauth4webapi logs a confidential client in with the device flow, introspects and refreshes', async () => {
    const issuer = new URL(t.url)
    const insecure = { [oauth.allowInsecureRequests]: true }
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
    expect(as.grant_types_supported).toContain('urn:ietf:params:oauth:grant-type:device_code')
    const conf: oauth.Client = { client_id: 'conf' }
    const confAuth = oauth.ClientSecretBasic(FIXTURE.confSecret)

    const device = await oauth.processDeviceAuthorizationResponse(
      as,
      conf,
      await oauth.deviceAuthorizationRequest(as, conf, confAuth, { scope: 'read write' }, insecure),
    )
    // The person types the code at the plain verification_uri, in lower case without the dash.
    const approval = approveInBrowser({
      url: device.verification_uri,
      typeCode: device.user_code.toLowerCase().replace('-', ''),
      expectCode: device.user_code,
    })
    const pollErrors: string[] = []
    const poll = async (): Promise<oauth.TokenEndpointResponse> => {
      let interval = device.interval ?? 5
      for (;;) {
        await new Promise((r) => setTimeout(r, interval * 1000))
        try {
          return await oauth.processDeviceCodeResponse(
            as,
            conf,
            await oauth.deviceCodeGrantRequest(as, conf, confAuth, device.device_code, insecure),
          )
        } catch (err) {
          if (!(err instanceof oauth.ResponseBodyError)) throw err
          pollErrors.push(err.error)
          if (err.error === 'slow_down') interval += 5
          else if (err.error !== 'authorization_pending') throw err
        }
      }
    }
    const [, tokens] = await Promise.all([approval, poll()])
    expect(pollErrors.every((e) => e === 'authorization_pending')).toBe(true)
    expect(tokens.token_type).toBe('bearer')
    expect(tokens.scope).toBe('read write')

    const rs: oauth.Client = { client_id: 'rs' }
    const rsAuth = oauth.ClientSecretBasic(FIXTURE.rsSecret)
    const introspect = async (token: string) =>
      oauth.processIntrospectionResponse(as, rs, await oauth.introspectionRequest(as, rs, rsAuth, token, insecure))
    expect(await introspect(tokens.access_token)).toMatchObject({ active: true, client_id: 'conf', sub: 'alice', scope: 'read write' })

    const refreshed = await oauth.processRefreshTokenResponse(
      as,
      conf,
      await oauth.refreshTokenGrantRequest(as, conf, confAuth, tokens.refresh_token!, insecure),
    )
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token)
    expect((await introspect(refreshed.access_token)).active).toBe(true)
  })
})
