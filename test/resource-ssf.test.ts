/**
 * The resource helper joins in (issue 13 §5): `devicegate/resource` takes revocations from a Shared
 * Signals stream — poll (RFC 8936) or push (RFC 8935) — instead of the revocation feed, and in
 * introspection mode reports where a token was used (`client_ip`), so last use and the
 * new-network detector see replays at the API.
 */
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createResourceServer, ResourceAuthError, type ResourceServer } from '../src/resource/index.js'
import { sha256Hex } from '../src/system.js'
import { FIXTURE, postForm, startTestServer, type TestServer } from './support/server.js'
import { deviceLogin, RECEIVER_SECRET, signalsConfig } from './support/signals.js'

let t: TestServer
beforeAll(async () => {
  t = await startTestServer({ config: await signalsConfig() })
})
afterAll(async () => {
  await t?.close()
})

const bearer = (token: string) => ({ method: 'GET', url: '/things', headers: { authorization: `Bearer ${token}`, host: 'api.test' } })

async function refusedWithin(rs: ResourceServer, token: string, ms: number): Promise<ResourceAuthError> {
  const end = Date.now() + ms
  for (;;) {
    try {
      await rs.verifyRequest(bearer(token))
    } catch (err) {
      if (err instanceof ResourceAuthError) return err
      throw err
    }
    if (Date.now() > end) throw new Error('the revoked token was still accepted')
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('revocations from a Shared Signals stream', () => {
  it('poll (RFC 8936): a revoked session\'s access token is refused within about a second', async () => {
    const rs = createResourceServer({ issuer: t.issuer, audience: t.issuer, revocation: { mode: 'ssf', credentials: { clientId: 'receiver', clientSecret: RECEIVER_SECRET }, pollIntervalMs: 100 } })
    try {
      const tokens = await deviceLogin(t.url)
      const other = await deviceLogin(t.url)
      expect((await rs.verifyRequest(bearer(tokens.access_token))).subject).toBe('alice')
      await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })
      const err = await refusedWithin(rs, tokens.access_token, 3000)
      expect(err.status).toBe(401)
      expect(err.error).toBe('invalid_token')
      // Another session of the same user is not touched.
      expect((await rs.verifyRequest(bearer(other.access_token))).subject).toBe('alice')
    } finally {
      rs.close()
    }
  })

  it('push (RFC 8935): the API mounts the receiver; pushes with the wrong credentials are refused', async () => {
    let rs: ResourceServer | undefined
    const api: Server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', async () => {
        const answer = await rs!.receiveSsfPush!({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers })
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body ? JSON.stringify(answer.body) : undefined)
      })
    })
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', () => r()))
    const pushUrl = `http://127.0.0.1:${(api.address() as { port: number }).port}/ssf-events`
    try {
      rs = createResourceServer({
        issuer: t.issuer,
        audience: t.issuer,
        revocation: { mode: 'ssf', credentials: { clientId: 'receiver-2', clientSecret: RECEIVER_SECRET }, delivery: { push: { endpointUrl: pushUrl } } },
      })
      const forged = await fetch(pushUrl, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt', authorization: 'Bearer guess' }, body: 'x.y.z' })
      expect(forged.status).toBe(401)
      await new Promise((r) => setTimeout(r, 300)) // stream registration
      const tokens = await deviceLogin(t.url)
      expect((await rs.verifyRequest(bearer(tokens.access_token))).subject).toBe('alice')
      await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })
      const err = await refusedWithin(rs, tokens.access_token, 5000)
      expect(err.error).toBe('invalid_token')
    } finally {
      rs?.close()
      await new Promise((r) => api.close(r))
    }
  })
})

describe('introspection mode reports where the token was used (client_ip)', () => {
  it('records the API caller\'s address as last use and raises token_used_from_new_ip_range', async () => {
    const rs = createResourceServer({ issuer: t.issuer, audience: t.issuer, revocation: { mode: 'introspection', credentials: { clientId: 'rs', clientSecret: FIXTURE.rsSecret } } })
    const tokens = await deviceLogin(t.url)
    const grantId = (await t.server.store.findRefreshTokenByHash(sha256Hex(tokens.refresh_token)))!.grantId
    await rs.verifyRequest(bearer(tokens.access_token), { clientIp: '198.51.100.7' })
    const lineage = await t.server.store.findGrantLineage(grantId)
    expect(lineage!.grant.lastUsedIp).toBe('198.51.100.7')
    const anomalies = await t.server.store.listAnomalies({ sinceTime: 0, kind: 'token_used_from_new_ip_range', limit: 100 })
    expect(anomalies.some((a) => a.grantId === grantId && a.ip === '198.51.100.7')).toBe(true)
    rs.close()
  })
})
