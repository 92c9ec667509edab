import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestServer, type TestServer } from './support/server.js'

let t: TestServer

beforeAll(async () => {
  t = await startTestServer()
})

afterAll(async () => {
  await t.close()
})

describe('RFC 8628 §3.3 verification_uri as people type it', () => {
  it('serves GET /device/ (trailing slash) like /device', async () => {
    const res = await fetch(`${t.url}/device/`, { redirect: 'manual' })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = await res.text()
    expect(body).toContain('<h1>Connect a device</h1>')
    expect(body).toContain('action="/device"')
  })

  it('looks up ?user_code= on /device/ like on /device', async () => {
    const res = await fetch(`${t.url}/device/?user_code=BBBB-BBBB`, { redirect: 'manual' })
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('That code is not valid.')
  })
})
