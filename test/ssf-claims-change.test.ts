/**
 * CAEP token-claims-change (issue 13 §2): when the conditional-approval policy narrows the scope
 * of a refresh, the receivers get a token-claims-change SET with the new scope for that session.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EVENT_TYPES } from '../src/signals/ssf/events.js'
import { postForm, startTestServer, type TestServer } from './support/server.js'
import { clientToken, deviceLogin, json, signalsConfig } from './support/signals.js'

let t: TestServer
const dir = mkdtempSync(join(tmpdir(), 'devicegate-policy-'))
const policyFile = join(dir, 'policy.yaml')

beforeAll(async () => {
  writeFileSync(policyFile, 'version: 1\ninclude_baseline: false\ndefault_effect: allow\n')
  const config = await signalsConfig()
  t = await startTestServer({ config: { ...config, policy: { file: policyFile, watch: false } } })
})
afterAll(async () => {
  await t?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('CAEP token-claims-change', () => {
  it('is sent when the policy narrows a refresh, naming the session and the new scope; not for an unchanged refresh', async () => {
    const receiver = await clientToken(t.url, 'receiver')
    const stream = await json(`${t.url}/ssf/stream`, 'POST', receiver, { delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: [EVENT_TYPES.tokenClaimsChange] })
    const poll = (stream.body.delivery.endpoint_url as string).replace(t.issuer, t.url)
    const tokens = await deviceLogin(t.url, 'read write offline_access')
    const unchanged = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', client_id: 'cli', refresh_token: tokens.refresh_token })
    expect(unchanged.json.scope).toBe('read write offline_access')
    writeFileSync(
      policyFile,
      'version: 1\ninclude_baseline: false\ndefault_effect: allow\nrules:\n  - name: cli-read-only\n    when: { clients: [cli] }\n    effect: allow\n    constraints: { scopes: [read, offline_access] }\n',
    )
    expect(await t.server.policyHolder.reload()).toBe(true)
    const narrowed = await postForm(`${t.url}/token`, { grant_type: 'refresh_token', client_id: 'cli', refresh_token: unchanged.json.refresh_token })
    expect(narrowed.json.scope).toBe('read offline_access')
    const sid = decodeJwt(narrowed.json.access_token).sid
    const sets = Object.values((await json(poll, 'POST', receiver, { returnImmediately: true })).body.sets as Record<string, string>).map((s) => decodeJwt(s))
    expect(sets).toHaveLength(1)
    expect(sets[0]).toMatchObject({
      sub_id: { session: { format: 'opaque', id: sid } },
      events: { [EVENT_TYPES.tokenClaimsChange]: { claims: { scope: 'read offline_access' } } },
    })
  })
})
