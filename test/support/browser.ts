/**
 * Test support: a person approving a device code in headless Chromium (Debian's
 * `/usr/bin/chromium`, or `DEVICEGATE_CHROMIUM`), finding everything by accessible names.
 */
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { FIXTURE } from './server.js'

export const CHROMIUM = process.env.DEVICEGATE_CHROMIUM ?? '/usr/bin/chromium'
export const HAVE_CHROMIUM = existsSync(CHROMIUM)

/** Launches headless Chromium. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
}

/**
 * Opens `verification_uri_complete` in a fresh profile, signs in as alice and presses Approve.
 * @throws when a step is not found or the final page is not "Device approved".
 */
export async function approveInChromium(browser: Browser, url: string): Promise<void> {
  const context = await browser.newContext()
  try {
    const page = await context.newPage()
    await page.goto(url)
    await page.getByLabel('Username').fill('alice')
    await page.getByLabel('Password').fill(FIXTURE.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('button', { name: 'Approve' }).click()
    await page.getByRole('heading', { level: 1, name: 'Device approved' }).waitFor({ timeout: 10_000 })
  } finally {
    await context.close()
  }
}
