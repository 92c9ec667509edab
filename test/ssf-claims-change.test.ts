/**
 * CAEP token-claims-change (issue 13 §2): when the conditional-approval policy narrows the scope
 * of a refresh, the receivers get a token-claims-change SET with the new scope for that session.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
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

describe('CAEP token-claims-change is committed with the rotation (issue 13 §2, outbox)', () => {
  it('rolls the rotation back when its token-claims-change cannot be written, and sends it once when the refresh is retried', async () => {
    const own = mkdtempSync(join(tmpdir(), 'devicegate-claims-'))
    const file = join(own, 'devicegate.db')
    const ownPolicy = join(own, 'policy.yaml')
    writeFileSync(ownPolicy, 'version: 1\ninclude_baseline: false\ndefault_effect: allow\n')
    const s = await startTestServer({ config: { ...(await signalsConfig()), policy: { file: ownPolicy, watch: false } }, storageUrl: `sqlite:${file}` })
    const db = new Database(file)
    try {
      const receiver = await clientToken(s.url, 'receiver')
      const stream = await json(`${s.url}/ssf/stream`, 'POST', receiver, { delivery: { method: 'urn:ietf:rfc:8936' }, events_requested: [EVENT_TYPES.tokenClaimsChange] })
      const poll = (stream.body.delivery.endpoint_url as string).replace(s.issuer, s.url)
      const tokens = await deviceLogin(s.url, 'read write offline_access')
      writeFileSync(
        ownPolicy,
        'version: 1\ninclude_baseline: false\ndefault_effect: allow\nrules:\n  - name: cli-read-only\n    when: { clients: [cli] }\n    effect: allow\n    constraints: { scopes: [read, offline_access] }\n',
      )
      expect(await s.server.policyHolder.reload()).toBe(true)
      // A crash between the rotation and the event, simulated: the outbox refuses the row.
      db.exec("CREATE TRIGGER crash_claims BEFORE INSERT ON signal_outbox WHEN NEW.type = 'token.claims_changed' BEGIN SELECT RAISE(ABORT, 'simulated crash'); END")
      const failed = await postForm(`${s.url}/token`, { grant_type: 'refresh_token', client_id: 'cli', refresh_token: tokens.refresh_token })
      expect(failed.status).toBeGreaterThanOrEqual(500)
      db.exec('DROP TRIGGER crash_claims')
      // Nothing was rotated: the same refresh token still works (no reuse detection).
      const retried = await postForm(`${s.url}/token`, { grant_type: 'refresh_token', client_id: 'cli', refresh_token: tokens.refresh_token })
      expect(retried.status).toBe(200)
      expect(retried.json.scope).toBe('read offline_access')
      const sets = Object.values((await json(poll, 'POST', receiver, { returnImmediately: true })).body.sets as Record<string, string>).map((x) => decodeJwt(x))
      expect(sets).toHaveLength(1)
      expect(sets[0]).toMatchObject({ events: { [EVENT_TYPES.tokenClaimsChange]: { claims: { scope: 'read offline_access' } } } })
    } finally {
      db.close()
      await s.close()
      rmSync(own, { recursive: true, force: true })
    }
  })
})
