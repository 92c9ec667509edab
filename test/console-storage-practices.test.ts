/**
 * Storage rules and the device flow used as a workaround, in the console (issue 18 §1, §3): the
 * grant list and a grant's page show the declared token storage in plain words; the clients
 * table shows each client's same-device approval share with the advice to use a browser-based
 * flow (authorization code + PKCE). Over HTTP against a real SQLite store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startConsoleServer, type ConsoleTestServer } from './support/console.js'

const LINUX_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36'

let t: ConsoleTestServer
let keyringGrant: string
let plainGrant: string
beforeAll(async () => {
  t = await startConsoleServer()
  // cli: approved from the requesting machine (same address, same platform) — the workaround.
  keyringGrant = await t.seedGrant({ client: 'cli', requestIp: '198.51.100.20', approveIp: '198.51.100.20', userAgent: LINUX_UA, storageClass: 'keyring' })
  // deploy-cli: requested on a server, approved from elsewhere; declares a plaintext store.
  plainGrant = await t.seedGrant({ client: 'deploy-cli', user: 'bob', requestIp: '192.0.2.44', storageClass: 'plaintext' })
})
afterAll(async () => {
  await t?.close()
})

describe('declared storage in the console (issue 18 §1)', () => {
  it('shows the storage class in plain words in the grant list', async () => {
    const c = await t.signIn('vera')
    const res = await c.get('/console/grants')
    expect(res.status).toBe(200)
    expect(res.body).toContain('<th scope="col">Keeps its sign-in in</th>')
    const row = (id: string) => res.body.split('<tr>').find((r) => r.includes(id.slice(-10)))!
    expect(row(keyringGrant)).toContain('<td>system keychain</td>')
    expect(row(plainGrant)).toContain('<td>plain file (readable by other programs)</td>')
  })

  it('says on the grant page where the tool keeps its sign-in, as a claim', async () => {
    const c = await t.signIn('vera')
    const keyring = await c.get(`/console/grants/${keyringGrant}`)
    expect(keyring.body).toContain('<dt>Token storage (declared)</dt><dd>This tool keeps its sign-in in the system keychain (the operating system’s protected credential store).')
    expect(keyring.body).toContain('the client’s claim, not verified')
    const plain = await c.get(`/console/grants/${plainGrant}`)
    expect(plain.body).toContain('This tool keeps its sign-in in a plain, unencrypted file or environment variable that other programs can read.')
  })
})

describe('same-device share per client in the console (issue 18 §3)', () => {
  it('shows each client’s same-device approvals with the browser-based-flow advice only where it happened', async () => {
    const c = await t.signIn('vera')
    const res = await c.get('/console/people')
    expect(res.status).toBe(200)
    expect(res.body).toContain('<th scope="col">Same-device approvals (90 days)</th>')
    const row = (id: string) => res.body.split('<tr>').find((r) => r.includes(`(<code>${id}</code>)</td>`))!
    expect(row('cli')).toContain('<td class="num">1 of 1 (100 %)</td>')
    expect(row('deploy-cli')).toContain('<td class="num">0 of 1 (0 %)</td>')
    expect(res.body).toMatch(/<li><strong>Test CLI<\/strong> \(<code>cli<\/code>\): [^<]*authorization code with PKCE/)
    expect(res.body).not.toContain('<li><strong>Deploy CLI</strong>')
  })
})
