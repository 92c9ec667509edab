/**
 * Upstream sign-in end to end: real Chromium through both sites — devicegate's verification pages and
 * node-oidc-provider as the organisation's provider (started here on 127.0.0.1:0). A groups claim
 * drives a policy rule (deny for contractors); an `amr` without a second factor meets a `step_up`
 * rule, and devicegate sends the person back upstream (prompt=login, max_age=0) until the provider
 * reports one, then the approval goes through.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HAVE_CHROMIUM, launchChromium } from './support/browser.js'
import { fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'
import { startUpstreamOp, type UpstreamOp } from './support/upstream-op.js'

if (!HAVE_CHROMIUM) console.warn('Chromium not found: upstream sign-in browser tests skipped')

const POLICY = `
version: 1
rules:
  - name: contractors-blocked
    when: { groups: [contractors] }
    effect: deny
    reason: contractors_not_allowed
    message: Contractors may not approve devices.
  - name: engineers-need-mfa
    when: { groups: [eng] }
    effect: step_up
    reason: engineers_need_mfa
`

describe.runIf(HAVE_CHROMIUM)('upstream OpenID Connect sign-in in Chromium (node-oidc-provider upstream)', () => {
  let op: UpstreamOp
  let t: TestServer
  let browser: Browser
  let dir: string

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devicegate-upstream-'))
    writeFileSync(join(dir, 'policy.yaml'), POLICY)
    process.env.DG_TEST_OP_SECRET = 'op-client-secret-0123456789abcdef'
    op = await startUpstreamOp({
      clientId: 'devicegate',
      clientSecret: process.env.DG_TEST_OP_SECRET,
      accounts: {
        ann: { email: 'ann@example.com', name: 'Ann Engineer', groups: ['eng'] },
        cory: { email: 'cory@example.com', name: 'Cory Contractor', groups: ['contractors'] },
      },
    })
    t = await startTestServer({
      config: await fixtureConfigFile({
        policy: { file: join(dir, 'policy.yaml'), watch: false },
        identity_providers: [
          { id: 'corp', name: 'Corp SSO', issuer: op.issuer, client_id: 'devicegate', client_secret_env: 'DG_TEST_OP_SECRET', scopes: ['openid', 'profile', 'email', 'groups'] },
        ],
      }),
    })
    op.register(`${t.issuer}/device/upstream/corp/callback`)
    browser = await launchChromium()
  }, 60_000)
  afterAll(async () => {
    await browser?.close()
    await t?.close()
    await op?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  async function newDeviceCode(): Promise<{ userCode: string; complete: string }> {
    const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read' })
    return { userCode: auth.json.user_code, complete: auth.json.verification_uri_complete }
  }

  async function signInAtProvider(page: Page, account: string, securityKey: boolean): Promise<void> {
    await page.getByRole('heading', { name: 'Corp sign-in' }).waitFor({ timeout: 10_000 })
    await page.getByLabel('Username').fill(account)
    if (securityKey) await page.getByLabel('Use my security key').check()
    await page.getByRole('button', { name: 'Sign in' }).click()
  }

  it('a contractor (groups claim) is signed in and then denied by the policy rule', async () => {
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const code = await newDeviceCode()
      await page.goto(code.complete)
      await page.getByRole('link', { name: 'Sign in with Corp SSO' }).click()
      await signInAtProvider(page, 'cory', false)
      // Back at the same code's review page, signed in.
      await page.getByRole('heading', { level: 1 }).filter({ hasText: /Test CLI/ }).waitFor({ timeout: 10_000 })
      expect(await page.locator('#policy_denied').textContent()).toContain('Contractors may not approve devices.')
      expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0)
    } finally {
      await context.close()
    }
  })

  it('an engineer without a second factor is sent back upstream for one (prompt=login), then approves', async () => {
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const code = await newDeviceCode()
      await page.goto(code.complete)
      await page.getByRole('link', { name: 'Sign in with Corp SSO' }).click()
      await signInAtProvider(page, 'ann', false)
      await page.locator('#step_up').waitFor({ timeout: 10_000 })
      expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0)
      // No TOTP enrolled here: no code form; the second factor comes from the provider.
      expect(await page.getByLabel('Code from your authenticator app').count()).toBe(0)
      await page.getByRole('link', { name: 'Verify with Corp SSO' }).click()
      await signInAtProvider(page, 'ann', true)
      await page.getByRole('button', { name: 'Approve' }).click()
      await page.getByRole('heading', { level: 1, name: 'Device approved' }).waitFor({ timeout: 10_000 })
      expect(op.logins.filter((l) => l.accountId === 'ann').map((l) => [l.mfa, l.prompt])).toEqual([
        [false, undefined],
        [true, 'login'],
      ])
      const person = t.server.identity.directory.all().find((p) => p.upstreamSub === 'ann')!
      expect(person).toMatchObject({ source: 'provider', upstreamIssuer: op.issuer, groups: ['eng'], email: 'ann@example.com' })
    } finally {
      await context.close()
    }
  })
})
