/**
 * The device_code format (issue 17): `<device grant id>.<secret>`, keyed as `<id>.` + SHA-256 of
 * the secret (the store finds it by the id and compares the key in constant time, see
 * test/migrations-device-code.test.ts); codes issued before (no separator, stored as the SHA-256
 * of the whole code) keep working until they expire. On SQLite and, with DEVICEGATE_TEST_PG_URL,
 * on PostgreSQL (batched read and pending-grant cache).
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { deviceCodeLookupKey, issueDeviceCode } from '../src/protocol/device-code-key.js'
import { recordId, sha256Hex, systemRandom } from '../src/system.js'
import { freshPgSchema } from './support/pg-schema.js'
import { approveAs, postForm, startTestServer, type TestServer } from './support/server.js'
import { userCode } from './support/store-fixtures.js'

const PG_URL = process.env.DEVICEGATE_TEST_PG_URL
if (!PG_URL) console.warn('device code format tests on PostgreSQL SKIPPED: set DEVICEGATE_TEST_PG_URL')

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
/** `<record id>.<secret>`: 12 hex digits of time, 14 base64url characters, `.`, 43 base64url characters. */
const NEW_CODE = /^([0-9a-f]{12}[A-Za-z0-9_-]{14})\.([A-Za-z0-9_-]{43})$/
const secret = () => randomBytes(32).toString('base64url')

describe('deviceCodeLookupKey (issue 17)', () => {
  it('keys a new code as "<id>." and the SHA-256 hex of its secret', () => {
    const id = recordId(systemRandom)
    const { code, key } = issueDeviceCode(id, systemRandom)
    const [, codeId, s] = NEW_CODE.exec(code)!
    expect(codeId).toBe(id)
    expect(Buffer.from(s!, 'base64url')).toHaveLength(32)
    expect(key).toBe(`${id}.${sha256Hex(s!)}`)
    expect(deviceCodeLookupKey(code)).toBe(key)
    expect(key).not.toContain(s)
  })

  it('keys a code without the separator (issued before) as the SHA-256 hex of the whole code', () => {
    const old = secret()
    expect(deviceCodeLookupKey(old)).toBe(sha256Hex(old))
    expect(deviceCodeLookupKey('x'.repeat(60_000))).toBe(sha256Hex('x'.repeat(60_000)))
  })

  it('sorts the keys of later codes after earlier ones (time-ordered index inserts)', () => {
    const ids = [0x18f0000000a, 0x18f0000000b, 0x190000000000].map((ms) => ms.toString(16).padStart(12, '0') + randomBytes(10).toString('base64url'))
    const keys = ids.map((id) => issueDeviceCode(id, systemRandom).key)
    expect([...keys].sort()).toEqual(keys)
  })

  it('has no key for a code with a separator and a malformed id or secret', () => {
    const id = recordId(systemRandom)
    for (const bad of ['.', `${id}.`, `.${secret()}`, `garbage.${secret()}`, `${id}.${secret()}.x`, `${id}..${secret()}`, `${id}.${secret()}=`,
      `${'a'.repeat(5000)}.${secret()}`, `${id.toUpperCase()}.${secret()}`, `${id}.${sha256Hex('s')}`, `${id.slice(1)}.${secret()}`])
      expect(deviceCodeLookupKey(bad), bad).toBeUndefined()
  })

  it('refuses to issue a code for an id that is not a record id', () => {
    expect(() => issueDeviceCode('dg_1', systemRandom)).toThrow(TypeError)
  })
})

const STORES: Array<{ name: string; run: boolean; url: () => Promise<{ url?: string; drop(): Promise<void> }> }> = [
  { name: 'sqlite', run: true, url: async () => ({ drop: async () => {} }) },
  { name: 'postgres', run: Boolean(PG_URL), url: () => freshPgSchema(PG_URL!, 'dg_device_code') },
]

for (const store of STORES) {
  describe.skipIf(!store.run)(`${store.name}: device_code format (RFC 8628 §3.2, §3.5; issue 17)`, () => {
    let t: TestServer
    let drop: () => Promise<void>
    beforeAll(async () => {
      const s = await store.url()
      drop = s.drop
      t = await startTestServer(s.url ? { storageUrl: s.url } : {})
    })
    afterAll(async () => {
      await t?.close()
      await drop?.()
    })

    const authorize = async () => {
      const res = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
      expect(res.status).toBe(200)
      return res.json as { device_code: string; user_code: string }
    }
    const poll = (deviceCode: string) => postForm(`${t.url}/token`, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: 'cli' })

    it('issues "<device grant id>.<secret>" with 256 random bits, stored only as "<id>." + SHA-256 of the secret', async () => {
      const { device_code, user_code } = await authorize()
      const [, id, s] = NEW_CODE.exec(device_code) ?? []
      expect(id, device_code).toBeDefined()
      expect(Buffer.from(s!, 'base64url')).toHaveLength(32)
      const grant = await t.server.store.findDeviceGrantByUserCode(user_code.replace('-', ''))
      expect(grant).toMatchObject({ id, deviceCodeHash: `${id}.${sha256Hex(s!)}` })
    })

    it('redeems a new code exactly once across concurrent polls, then answers invalid_grant', async () => {
      const { device_code, user_code } = await authorize()
      expect((await poll(device_code)).json.error).toBe('authorization_pending')
      await approveAs(t.url, user_code)
      const answers = await Promise.all(Array.from({ length: 8 }, () => poll(device_code)))
      const ok = answers.filter((r) => r.status === 200)
      expect(ok).toHaveLength(1)
      expect(ok[0]!.json).toMatchObject({ token_type: 'Bearer' })
      for (const r of answers.filter((a) => a.status !== 200)) expect([r.status, r.json.error]).toEqual([400, 'invalid_grant'])
      const again = await poll(device_code)
      expect([again.status, again.json.error]).toEqual([400, 'invalid_grant'])
    })

    it('still polls and redeems a code in the format issued before (stored as the SHA-256 of the whole code)', async () => {
      const old = secret()
      const code = userCode()
      const now = t.clock.nowSeconds()
      await t.server.store.createDeviceGrant({
        id: recordId(systemRandom), deviceCodeHash: sha256Hex(old), userCode: code, clientId: 'cli', scope: 'read offline_access', status: 'pending',
        createdAt: now, expiresAt: now + 600, intervalSeconds: 5, lastPolledAt: null, subject: null, decidedAt: null,
        requestIp: '127.0.0.1', requestUserAgent: null, dpopJkt: null, grantId: null,
      })
      const pending = await poll(old)
      expect([pending.status, pending.json.error]).toEqual([400, 'authorization_pending'])
      await approveAs(t.url, code)
      const ok = await poll(old)
      expect(ok.status).toBe(200)
      expect(ok.json.access_token).toEqual(expect.any(String))
      const again = await poll(old)
      expect([again.status, again.json.error]).toEqual([400, 'invalid_grant'])
    })

    it('answers a tampered code with 400 invalid_grant and leaves the real one redeemable', async () => {
      const { device_code, user_code } = await authorize()
      const other = await authorize()
      const [, id, s] = NEW_CODE.exec(device_code)!
      const [, otherId] = NEW_CODE.exec(other.device_code)!
      const grant = await t.server.store.findDeviceGrantByUserCode(user_code.replace('-', ''))
      await approveAs(t.url, user_code)
      const tampered = [
        `${id}.${secret()}`, // right id, wrong secret
        `${otherId}.${s}`, // another grant's id, right secret
        `${id!.slice(0, 12)}${'A'.repeat(14)}.${s}`, // right time, wrong random part
        `${id}.`, `.${s}`, `${id}.${s}.`, `${id}..${s}`, `garbage.${s}`, `${'f'.repeat(10_000)}.${s}`, '.',
        s!, // the secret alone, as a code of the old format
        grant!.deviceCodeHash, // the stored key itself
        sha256Hex(device_code),
      ]
      for (const code of tampered) {
        const r = await poll(code)
        expect([r.status, r.json.error], code.slice(0, 80)).toEqual([400, 'invalid_grant'])
        expect(r.headers.get('cache-control')).toBe('no-store')
      }
      expect((await poll(device_code)).status).toBe(200)
    })
  })
}
