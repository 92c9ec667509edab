/**
 * Conditional approval in a real browser (headless Chromium, no JavaScript on the pages): a
 * step_up approval with TOTP, a denied approval with its reason, and the proximity warning when
 * request and approval come from different countries. Each side's address is set with
 * X-Forwarded-For through 127.0.0.1, the configured trusted proxy; the IP database is a fake.
 */
import type { Browser } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { HAVE_CHROMIUM, launchChromium } from './support/browser.js'
import { NET, PASSWORD, startDeviceFlow, startPolicyServer, type PolicyTestServer } from './support/policy-fixture.js'
import { postForm } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

describe.skipIf(!HAVE_CHROMIUM)('conditional approval in Chromium', () => {
  let browser: Browser
  let t: PolicyTestServer
  beforeAll(async () => {
    browser = await launchChromium()
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
  })
  beforeEach(async () => {
    t = await startPolicyServer()
  })
  afterEach(async () => {
    await t.close()
  })

  async function openAs(ip: string, username: string, userCode: string) {
    const context = await browser.newContext({ extraHTTPHeaders: { 'X-Forwarded-For': ip } })
    const page = await context.newPage()
    await page.goto(`${t.url}/device`)
    await page.getByLabel('Code').fill(userCode)
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.getByLabel('Username').fill(username)
    await page.getByLabel('Password').fill(PASSWORD)
    await page.getByRole('button', { name: 'Sign in' }).click()
    return { context, page }
  }

  async function poll(clientId: string, deviceCode: string) {
    t.clock.advance(10)
    return postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId })
  }

  it('step_up: the admin app asks for a TOTP code, then a typed confirmation, then approves', async () => {
    const flow = await startDeviceFlow(t.url, 'admin-cli', 'admin', NET.home)
    const { context, page } = await openAs(NET.homePhone, 'alice', flow.json.user_code)
    try {
      await expect.poll(() => page.getByText('This app requires a second factor').count()).toBe(1)
      expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0)
      await page.getByLabel('Code from your authenticator app').fill(await t.totp())
      await page.getByRole('button', { name: 'Verify' }).click()
      await page.getByLabel(/Type the last 4 characters/).fill(flow.json.user_code.slice(-4))
      await page.getByRole('button', { name: 'Approve' }).click()
      await page.getByRole('heading', { level: 1, name: 'Device approved' }).waitFor({ timeout: 10_000 })
    } finally {
      await context.close()
    }
    const res = await poll('admin-cli', flow.json.device_code)
    expect(res.status).toBe(200)
    expect(res.json.scope).toBe('admin')
  })

  it('deny: a high-risk approver sees the reason, no Approve button, and the request is denied at once', async () => {
    const flow = await startDeviceFlow(t.url, 'cli', 'read', NET.home)
    const { context, page } = await openAs(NET.homePhone, 'carol', flow.json.user_code)
    try {
      const alert = page.locator('#policy_denied')
      await alert.waitFor()
      expect(await alert.textContent()).toContain('Your account is under review by the security team.')
      expect(await alert.textContent()).toContain('user_risk_too_high')
      expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0)
      // Denied when the review was shown (issue 16 §6): nothing left to press.
      expect(await alert.textContent()).toContain('It has been denied')
      expect(await page.getByRole('button', { name: 'Deny' }).count()).toBe(0)
    } finally {
      await context.close()
    }
    expect((await poll('cli', flow.json.device_code)).json.error).toBe('access_denied')
  })

  it('review page (issue 16 §19): Deny is primary under the location warning, the code never wraps, expiry is a clock time', async () => {
    const flow = await startDeviceFlow(t.url, 'cli', 'read', NET.home)
    const { context, page } = await openAs(NET.abroad, 'alice', flow.json.user_code)
    try {
      await page.locator('#location_warning').waitFor()
      const buttons = page.locator('#decision_buttons button')
      expect(await buttons.first().textContent()).toBe('Deny')
      // Runs in the page (the test's tsconfig has no DOM types).
      type Styled = { getComputedStyle(element: unknown): { backgroundColor: string } }
      const background = (element: unknown) => (globalThis as unknown as Styled).getComputedStyle(element).backgroundColor
      const fill = (name: string) => page.getByRole('button', { name }).evaluate(background)
      const card = await page.locator('.card').evaluate(background)
      expect(await fill('Approve')).toBe(card) // not the filled, primary look
      expect(await fill('Deny')).not.toBe(card)
      // A narrow phone: the code stays on one line.
      await page.setViewportSize({ width: 280, height: 640 })
      const lines = await page.locator('.code-display').first().evaluate((el) => el.getClientRects().length)
      expect(lines).toBe(1)
      expect((await page.locator('#expires_at').textContent())!.trim()).toMatch(/^\d\d:\d\d UTC \(UTC\+00:00\)$/)
    } finally {
      await context.close()
    }
    // Without the warning, Approve is primary.
    const flow2 = await startDeviceFlow(t.url, 'cli', 'read', NET.home)
    const near = await openAs(NET.homePhone, 'alice', flow2.json.user_code)
    try {
      const first = near.page.locator('#decision_buttons button').first()
      await first.waitFor()
      expect(await first.textContent()).toBe('Approve')
    } finally {
      await near.context.close()
    }
  })

  it('proximity: request from DE, approval from the US shows the strong warning with both locations', async () => {
    const flow = await startDeviceFlow(t.url, 'cli', 'read', NET.home)
    const { context, page } = await openAs(NET.abroad, 'alice', flow.json.user_code)
    try {
      const warning = page.getByRole('alert').filter({ hasText: 'different location' })
      await warning.waitFor()
      const text = (await warning.textContent())!.replace(/\s+/g, ' ')
      expect(text).toContain('(DE, AS3320)')
      expect(text).toContain('(US, AS7922)')
      expect(await page.getByText('198.51.100.10 · DE · AS3320 Deutsche Telekom').count()).toBe(1)
      expect(await page.getByText('203.0.113.9 · US · AS7922 Comcast').count()).toBe(1)
      expect(await page.getByText('Only approve if you started this on a device you are holding.').count()).toBe(1)
      // Standard tier: a warning, not a denial.
      await page.getByRole('button', { name: 'Approve' }).click()
      await page.getByRole('heading', { level: 1, name: 'Device approved' }).waitFor({ timeout: 10_000 })
    } finally {
      await context.close()
    }
    const res = await poll('cli', flow.json.device_code)
    expect(res.status).toBe(200)
    expect(res.json.expires_in).toBe(120)
  })
})
