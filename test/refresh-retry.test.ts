/**
 * Refresh retries (issue 16 item 10): a sender-constrained client that retries a refresh — same
 * token, same client, same DPoP key, within `refresh_token_retry_grace_seconds` of the rotation,
 * as Okta's and Auth0's rotation leeway — gets fresh tokens instead of losing its session; outside
 * the grace, for another key, or from an unbound public client, reuse revokes the whole family
 * (RFC 9700 §4.14.2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseConfig } from '../src/config/load.js'
import { dpopKey, makeProof, type DpopKey } from './support/dpop.js'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
let t: TestServer
let k1: DpopKey
let k2: DpopKey
beforeAll(async () => {
  const base = await fixtureConfigFile()
  const config = parseConfig({
    ...base,
    clients: [
      ...base.clients,
      { client_id: 'no-grace-cli', name: 'No grace', grant_types: [DEVICE_GRANT, 'refresh_token'], scopes: ['read'], refresh_token_issuance: 'always', refresh_token_retry_grace_seconds: 0 },
    ],
  })
  t = await startTestServer({ config })
  k1 = await dpopKey()
  k2 = await dpopKey()
})
afterAll(async () => t?.close())

const proof = async (key: DpopKey) => makeProof(key, { htu: `${t.url}/token`, now: t.clock.nowSeconds() })

/** A device login of `clientId`, DPoP-bound to `key` when given; returns the token response. */
async function login(clientId: string, key?: DpopKey, headers: Record<string, string> = {}) {
  const form: Record<string, string> = clientId === 'conf' ? { scope: 'read' } : { client_id: clientId, scope: 'read' }
  const auth = await postForm(`${t.url}/device_authorization`, form, headers)
  expect(auth.status).toBe(200)
  await approveAs(t.url, auth.json.user_code)
  const tokenForm = { grant_type: DEVICE_GRANT, device_code: auth.json.device_code, ...(clientId === 'conf' ? {} : { client_id: clientId }) }
  const res = await postForm(`${t.url}/token`, tokenForm, { ...headers, ...(key ? { DPoP: await proof(key) } : {}) })
  expect(res.status).toBe(200)
  expect(res.json.refresh_token).toBeTruthy()
  return res.json as { access_token: string; refresh_token: string }
}

async function refresh(clientId: string, refreshToken: string, key?: DpopKey, headers: Record<string, string> = {}) {
  const form = { grant_type: 'refresh_token', refresh_token: refreshToken, ...(clientId === 'conf' ? {} : { client_id: clientId }) }
  return postForm(`${t.url}/token`, form, { ...headers, ...(key ? { DPoP: await proof(key) } : {}) })
}

const isActive = async (token: string) =>
  (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active as boolean

describe('refresh retries within the rotation grace (issue 16 item 10)', () => {
  it('answers a DPoP-bound retry with fresh tokens; the unused first answer is revoked, the session lives on', async () => {
    const first = await login('cli', k1)
    const answer = await refresh('cli', first.refresh_token, k1) // its response "got lost"
    expect(answer.status).toBe(200)
    t.clock.advance(3)
    const retry = await refresh('cli', first.refresh_token, k1)
    expect(retry.status).toBe(200)
    expect(retry.json.token_type).toBe('DPoP')
    expect(retry.json.refresh_token).not.toBe(answer.json.refresh_token)
    expect(await isActive(retry.json.access_token)).toBe(true)
    // Only one live refresh token per family: the first answer's is revoked (not a reuse).
    const stale = await refresh('cli', answer.json.refresh_token, k1)
    expect(stale.json.error).toBe('invalid_grant')
    expect(await isActive(retry.json.access_token)).toBe(true)
    expect((await refresh('cli', retry.json.refresh_token, k1)).status).toBe(200)
  })

  it('answers a confidential client\'s retry (its authentication constrains the sender)', async () => {
    const conf = { authorization: basic('conf', FIXTURE.confSecret) }
    const first = await login('conf', undefined, conf)
    expect((await refresh('conf', first.refresh_token, undefined, conf)).status).toBe(200)
    const retry = await refresh('conf', first.refresh_token, undefined, conf)
    expect(retry.status).toBe(200)
    expect(await isActive(retry.json.access_token)).toBe(true)
  })

  it('revokes the family for a retry after the grace (RFC 9700 §4.14.2)', async () => {
    const first = await login('cli', k1)
    expect((await refresh('cli', first.refresh_token, k1)).status).toBe(200)
    t.clock.advance(11) // the default grace is 10 s
    const late = await refresh('cli', first.refresh_token, k1)
    expect(late.status).toBe(400)
    expect(late.json.error).toBe('invalid_grant')
    expect(await isActive(first.access_token)).toBe(false)
  })

  it('revokes the family when the rotated token comes back without the key that rotated it', async () => {
    const first = await login('conf', undefined, { authorization: basic('conf', FIXTURE.confSecret) })
    const conf = { authorization: basic('conf', FIXTURE.confSecret) }
    expect((await refresh('conf', first.refresh_token, k1, conf)).status).toBe(200) // rotated with K1
    const other = await refresh('conf', first.refresh_token, k2, conf)
    expect(other.json.error).toBe('invalid_grant')
    expect(await isActive(first.access_token)).toBe(false)
  })

  it('gives an unbound public client no grace: its reuse revokes the family at once', async () => {
    const first = await login('cli')
    const answer = await refresh('cli', first.refresh_token)
    expect(answer.status).toBe(200)
    const again = await refresh('cli', first.refresh_token)
    expect(again.json.error).toBe('invalid_grant')
    expect(await isActive(answer.json.access_token)).toBe(false)
  })

  it('turns the leeway off with refresh_token_retry_grace_seconds: 0', async () => {
    const first = await login('no-grace-cli', k1)
    expect((await refresh('no-grace-cli', first.refresh_token, k1)).status).toBe(200)
    expect((await refresh('no-grace-cli', first.refresh_token, k1)).json.error).toBe('invalid_grant')
    expect(await isActive(first.access_token)).toBe(false)
  })

  it('answers concurrent retries by the same sender without revoking anything', async () => {
    const first = await login('cli', k1)
    expect((await refresh('cli', first.refresh_token, k1)).status).toBe(200)
    const results = await Promise.all(Array.from({ length: 5 }, () => refresh('cli', first.refresh_token, k1)))
    const ok = results.filter((r) => r.status === 200)
    expect(ok.length).toBeGreaterThanOrEqual(1)
    for (const r of results.filter((r) => r.status !== 200)) expect(r.json.error).toBe('invalid_grant')
    // Exactly one of the answers holds the family's live refresh token, and the family is alive.
    const live = await Promise.all(ok.map(async (r) => (await refresh('cli', r.json.refresh_token, k1)).status === 200))
    expect(live.filter(Boolean)).toHaveLength(1)
  })
})
