/**
 * The caller's IP is derived once per request — from the connection, or from X-Forwarded-For
 * only when the connection comes from a configured trusted proxy, the right-most untrusted hop
 * winning — and that one value is what the review page shows (RFC 8628 §3.3, §5.4) and what the
 * code-entry limit counts (RFC 8628 §5.1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClientAddressResolver } from '../src/http/client-address.js'
import { fixtureConfigFile, FIXTURE, PageSession, postForm, startTestServer, type TestServer } from './support/server.js'

describe('createClientAddressResolver: right-most untrusted hop', () => {
  const resolve = createClientAddressResolver(['10.0.0.0/8', '::1', '192.0.2.1'])
  it.each([
    ['no proxies configured: the peer, whatever the header says', createClientAddressResolver([]), '127.0.0.1', '203.0.113.9', '127.0.0.1'],
    ['an untrusted peer: its own address, the header is ignored', resolve, '198.51.100.20', '203.0.113.9', '198.51.100.20'],
    ['a trusted peer without the header: the peer', resolve, '10.1.2.3', undefined, '10.1.2.3'],
    ['a trusted peer: the right-most untrusted hop', resolve, '10.1.2.3', '203.0.113.9, 198.51.100.7', '198.51.100.7'],
    ['trusted hops are skipped right to left', resolve, '10.1.2.3', '203.0.113.9, 10.9.9.9, 192.0.2.1', '203.0.113.9'],
    ['a forged left-most entry cannot win', resolve, '10.1.2.3', '1.1.1.1, 203.0.113.9', '203.0.113.9'],
    ['a malformed hop stops the walk at the last trusted hop', resolve, '10.1.2.3', '203.0.113.9, not-an-ip', '10.1.2.3'],
    ['IPv4-mapped IPv6 peers are canonical', resolve, '::ffff:10.1.2.3', '203.0.113.9', '203.0.113.9'],
    ['IPv6 loopback proxy and IPv6 client', resolve, '::1', '2001:db8::7', '2001:db8::7'],
    ['repeated headers are read as one list', resolve, '10.1.2.3', ['203.0.113.9', '198.51.100.7, 10.2.2.2'], '198.51.100.7'],
  ])('%s', (_name, fn, peer, header, want) => {
    expect(fn(peer, header)).toBe(want)
  })

  it('refuses a trusted_proxies entry that is not an IP or CIDR at start-up', () => {
    expect(() => createClientAddressResolver(['proxy.internal'])).toThrow(/trusted_proxies: "proxy\.internal" is not an IP address or CIDR/)
  })
})

/** Starts a device authorization as the device at `forwardedFor` and returns its user code. */
async function startFlow(t: TestServer, headers: Record<string, string>): Promise<string> {
  const res = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read write' }, headers)
  expect(res.status).toBe(200)
  return res.json.user_code as string
}

async function reviewPage(t: TestServer, userCode: string): Promise<string> {
  const page = new PageSession(t.url)
  await page.signIn('alice', FIXTURE.password)
  const res = await page.post('/device', { user_code: userCode })
  expect(res.status).toBe(200)
  return res.body
}

/** The `<dd>` after the `<dt>` named `label`, whitespace collapsed. */
function field(html: string, label: string): string {
  const m = new RegExp(`<dt>${label}</dt>\\s*<dd>([\\s\\S]*?)</dd>`).exec(html)
  expect(m, `review page field ${label}`).not.toBeNull()
  return m![1]!.replace(/<[^>]+>/g, '').replace(/\s+/g, ' ').trim()
}

/** The request's IP as the review page shows it: alone, or first in "IP · country · network" (with policy). */
function requestIp(html: string): string {
  const label = html.includes('<dt>Requested from</dt>') ? 'Requested from' : 'From IP address'
  return field(html, label).split(' · ')[0]!
}

describe('RFC 8628 §3.3 review page: what, who, from where, when, how long', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer()
  })
  afterAll(async () => t?.close())

  it('names the app, the scopes in plain words, the request IP and user agent, and the time left', async () => {
    t.clock.freeze() // the sign-in below takes real time; "8 minutes" must not become "7 minutes 59 seconds"
    const code = await startFlow(t, { 'user-agent': 'acme-cli/2.1 (linux)', 'x-forwarded-for': '203.0.113.9' })
    t.clock.advance(120)
    const html = await reviewPage(t, code)
    expect(html).toContain('Allow <strong>Test CLI</strong> to access your account?')
    expect(html).toContain(`<span class="code-display">${code}</span>`)
    expect(html).toMatch(/<li>Read your data <span class="muted">\(read\)<\/span><\/li>/)
    expect(html).toMatch(/<li>Change your data <span class="muted">\(write\)<\/span><\/li>/)
    // No trusted proxy is configured: the header is ignored, the connection's address is shown.
    expect(requestIp(html)).toBe('127.0.0.1')
    expect(field(html, 'Device software')).toBe('acme-cli/2.1 (linux)')
    expect(field(html, 'Requested')).toMatch(/^2 minutes ago, at \d\d:\d\d UTC \(UTC\+00:00\)$/)
    expect(field(html, 'Expires')).toMatch(/^at \d\d:\d\d UTC \(UTC\+00:00\), in 8 minutes$/)
    expect(html).toMatch(/<button name="decision" value="approve">Approve<\/button>/)
    expect(html).toMatch(/<button name="decision" value="deny">Deny<\/button>/)
  })

  it('says when the device reported no user agent', async () => {
    const res = await fetch(`${t.url}/device_authorization`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': '' },
      body: 'client_id=cli&scope=read',
    })
    const { user_code } = (await res.json()) as { user_code: string }
    expect(field(await reviewPage(t, user_code), 'Device software')).toBe('Not reported')
  })
})

describe('trusted proxies: X-Forwarded-For only from configured proxies', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ config: await fixtureConfigFile({ trusted_proxies: ['127.0.0.1', '10.0.0.0/8'] }) })
  })
  afterAll(async () => t?.close())

  it('shows the right-most untrusted hop on the review page', async () => {
    const code = await startFlow(t, { 'x-forwarded-for': '1.1.1.1, 203.0.113.9, 10.0.0.5' })
    expect(requestIp(await reviewPage(t, code))).toBe('203.0.113.9')
  })

  it('counts failed code entries per derived client IP: a spoofed left-most hop does not escape the limit', async () => {
    // Anonymous sessions are limited per IP; each attempt uses a fresh cookie.
    const attempt = async (xff: string) => {
      const page = new PageSession(t.url)
      await page.get('/device')
      const res = await fetch(`${t.url}/device`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: page.cookie, origin: t.url, 'x-forwarded-for': xff },
        body: new URLSearchParams({ csrf_token: page.csrf, user_code: 'BCDF-GHJK' }).toString(),
      })
      return res.status
    }
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) statuses.push(await attempt(`198.51.100.${i}, 203.0.113.77`))
    expect(statuses).toEqual([400, 400, 400, 400, 400, 429])
    // Another real client behind the same proxy is not affected.
    expect(await attempt('203.0.113.78')).toBe(400)
  })
})
