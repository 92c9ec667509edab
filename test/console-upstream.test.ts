import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { html, page } from '../src/console/html.js'
import type { ConsoleExtension } from '../src/console/index.js'
import { sessionBridgeSignIn } from '../src/console/upstream-sign-in.js'
import { PageSession } from './support/server.js'
import { CONSOLE_PASSWORD, startConsoleServer, type ConsoleTestServer } from './support/console.js'

// Stands in for src/identity's beginUpstreamSignIn: the provider "returns" at once, and the
// browser's verification session is the one the upstream callback would have created.
const corp = sessionBridgeSignIn({ id: 'corp', label: 'Sign in with Corp SSO', begin: async (reply, returnTo) => reply.code(303).header('location', returnTo).send() })

// An extension in the console's slot (the real access-review inbox, console/pages/reviews.ts, is built in).
const reviews: ConsoleExtension = {
  nav: [{ href: '/console/extra', label: 'Extra page', needs: 'self' }],
  pages: [
    async (app, ctx) => {
      app.get('/extra', { config: { consolePermission: 'self' } }, async (request, reply) =>
        ctx.send(reply, 200, page({ title: 'Extra page', current: '/console/extra', viewer: ctx.session(request).viewer, nav: ctx.nav, body: html`<p>An extension page.</p>` })),
      )
    },
  ],
}

let t: ConsoleTestServer
beforeAll(async () => {
  t = await startConsoleServer(undefined, [corp], [reviews])
})
afterAll(async () => {
  await t?.close()
})

async function viaUpstream(username: string): Promise<Response> {
  const page = new PageSession(t.url)
  await page.signIn(username, CONSOLE_PASSWORD)
  const start = await fetch(`${t.url}/console/sign-in/corp`, { redirect: 'manual' })
  expect(start.status).toBe(303)
  return fetch(t.url + start.headers.get('location')!, { headers: { cookie: page.cookie }, redirect: 'manual' })
}

describe('console upstream sign-in seam (ConsoleSignIn)', () => {
  it('lists the method on the sign-in page', async () => {
    const res = await fetch(`${t.url}/console/sign-in`)
    expect(await res.text()).toContain('<a href="/console/sign-in/corp">Sign in with Corp SSO</a>')
  })

  it('turns a fresh upstream sign-in into a console session, audited with the method', async () => {
    const res = await viaUpstream('alice')
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console')
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith('dg_console='))!.split(';')[0]!
    const mine = await fetch(`${t.url}/console/my-devices`, { headers: { cookie }, redirect: 'manual' })
    expect(mine.status).toBe(200)
    await t.server.governance.audit?.flush()
    const ev = (await t.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === 'session.signed_in' && e.actor === 'alice').at(-1)!
    expect(JSON.parse(ev.details)).toMatchObject({ surface: 'console', method: 'upstream:corp', mfa: false })
  })

  it('refuses a role holder whose upstream sign-in had no second factor (403)', async () => {
    const res = await viaUpstream('otto')
    expect(res.status).toBe(403)
    expect(res.headers.getSetCookie().some((c) => c.startsWith('dg_console='))).toBe(false)
  })

  it('sends a stale upstream session back to the sign-in page', async () => {
    const page = new PageSession(t.url)
    await page.signIn('alice', CONSOLE_PASSWORD)
    t.clock.advance(300)
    const res = await fetch(`${t.url}/console/sign-in/corp/done`, { headers: { cookie: page.cookie }, redirect: 'manual' })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in')
  })
})

describe('console extension slot', () => {
  it('adds the page behind the console sign-in and its entry to everyone’s navigation', async () => {
    const anonymous = await fetch(`${t.url}/console/extra`, { redirect: 'manual' })
    expect(anonymous.status).toBe(303)
    const res = await viaUpstream('alice')
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith('dg_console='))!.split(';')[0]!
    const inbox = await fetch(`${t.url}/console/extra`, { headers: { cookie } })
    expect(inbox.status).toBe(200)
    const body = await inbox.text()
    expect(body).toContain('<a href="/console/extra" aria-current="page">Extra page</a>')
    expect(body).toContain('<a href="/console/reviews">Access reviews</a>')
    expect(body).toContain('An extension page.')
  })
})
