/**
 * Trusted device registry: devices known by DPoP key thumbprint (RFC 9449 §6.1, RFC 7638);
 * retiring one revokes its tokens. Functions, and the `devicegate devices` CLI.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Command } from 'commander'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { registerDevicesCommands } from '../src/cli/devices.js'
import { createDeviceRegistry, type DeviceRegistry } from '../src/governance/devices.js'
import { dpopKey, makeProof, type DpopKey } from './support/dpop.js'
import { approveAs, basic, FIXTURE, postForm, startTestServer, type TestServer } from './support/server.js'

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

let t: TestServer
let registry: DeviceRegistry
let k1: DpopKey
let k2: DpopKey
beforeAll(async () => {
  t = await startTestServer()
  registry = createDeviceRegistry({ store: t.server.store, clock: t.clock })
  k1 = await dpopKey()
  k2 = await dpopKey('EdDSA')
})
afterAll(async () => t?.close())

/** A full device flow whose tokens are bound to `key`. */
async function boundTokens(key: DpopKey) {
  const da = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
  await approveAs(t.url, da.json.user_code)
  const res = await postForm(
    `${t.url}/token`,
    { grant_type: DEVICE_GRANT, device_code: da.json.device_code, client_id: 'cli' },
    { DPoP: await makeProof(key, { htu: `${t.url}/token`, now: t.clock.nowSeconds() }) },
  )
  expect(res.status).toBe(200)
  return res.json as { access_token: string; refresh_token: string }
}

const introspect = async (token: string) =>
  (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json

describe('trusted device registry', () => {
  it('registers by jkt or by public JWK, labels, lists, and answers isRegisteredDevice', async () => {
    const a = await registry.register({ jkt: k1.jkt, label: 'laptop', registeredBy: 'admin' })
    expect(a).toMatchObject({ jkt: k1.jkt, label: 'laptop', registeredBy: 'admin', retiredAt: null })
    const b = await registry.register({ jwk: k2.jwk, label: '  build agent 07 ' })
    expect(b.jkt).toBe(k2.jkt)
    expect(b.label).toBe('build agent 07')
    expect((await registry.label(k1.jkt, 'alice laptop')).label).toBe('alice laptop')
    expect((await registry.list()).map((d) => d.jkt)).toEqual(expect.arrayContaining([k1.jkt, k2.jkt]))
    expect(await registry.isRegisteredDevice(k1.jkt)).toBe(true)
    expect(await registry.isRegisteredDevice((await dpopKey()).jkt)).toBe(false)
    expect(await registry.isRegisteredDevice(null)).toBe(false)
  })

  it('refuses a malformed jkt, a private JWK, an empty label and a duplicate key with stable codes', async () => {
    await expect(registry.register({ jkt: 'short', label: 'x' })).rejects.toMatchObject({ code: 'ERR_DEVICE_INVALID' })
    await expect(registry.register({ jwk: (await dpopKey()).privateJwk, label: 'x' })).rejects.toMatchObject({ code: 'ERR_DEVICE_INVALID' })
    await expect(registry.register({ jkt: (await dpopKey()).jkt, label: '   ' })).rejects.toMatchObject({ code: 'ERR_DEVICE_INVALID' })
    await expect(registry.register({ jkt: k1.jkt, label: 'again' })).rejects.toMatchObject({ code: 'ERR_DEVICE_EXISTS' })
    await expect(registry.retire((await dpopKey()).jkt)).rejects.toMatchObject({ code: 'ERR_DEVICE_NOT_FOUND' })
  })

  it("shows a device's grants and, on retirement, revokes its tokens and only its tokens", async () => {
    const key = await dpopKey()
    const other = await dpopKey()
    await registry.register({ jkt: key.jkt, label: 'to retire' })
    const mine = await boundTokens(key)
    const theirs = await boundTokens(other)
    expect((await registry.get(key.jkt))?.grants).toHaveLength(1)
    expect(await introspect(mine.access_token)).toMatchObject({ active: true })

    const { device, grantsRevoked } = await registry.retire(key.jkt, 'admin')
    expect(grantsRevoked).toBe(1)
    expect(device.retiredAt).not.toBeNull()
    expect(await registry.isRegisteredDevice(key.jkt)).toBe(false)
    expect((await registry.list()).map((d) => d.jkt)).not.toContain(key.jkt)
    expect((await registry.list({ includeRetired: true })).map((d) => d.jkt)).toContain(key.jkt)

    expect(await introspect(mine.access_token)).toEqual({ active: false })
    const refresh = await postForm(
      `${t.url}/token`,
      { grant_type: 'refresh_token', refresh_token: mine.refresh_token, client_id: 'cli' },
      { DPoP: await makeProof(key, { htu: `${t.url}/token`, now: t.clock.nowSeconds() }) },
    )
    expect(refresh.json).toMatchObject({ error: 'invalid_grant' })
    expect(await introspect(theirs.access_token)).toMatchObject({ active: true })
  })
})

describe('devicegate devices CLI', () => {
  async function run(...args: string[]): Promise<string> {
    const config = join(t.server.config.dataDir, 'cli.yaml')
    writeFileSync(config, `storage:\n  url: ${JSON.stringify(t.server.config.storageUrl)}\nlog_level: silent\n`)
    const program = new Command().exitOverride()
    registerDevicesCommands(program)
    let out = ''
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out += String(chunk)
      return true
    })
    try {
      // `--config` right after the subcommand, so that a caller can end the options with `--`: a
      // thumbprint is base64url and starts with `-` one time in 64 (then it must follow `--`).
      const [sub, ...rest] = args
      await program.parseAsync(['node', 'devicegate', 'devices', ...(sub === undefined ? [] : [sub]), '--config', config, ...rest])
    } finally {
      spy.mockRestore()
    }
    return out
  }

  it('registers, lists, labels, shows grants and retires (revoking the tokens)', async () => {
    const key = await dpopKey()
    // `--` before each thumbprint: one in 64 starts with `-` and would be read as an option.
    expect(await run('register', '--label', 'ci runner', '--by', 'ops', '--', key.jkt)).toContain(key.jkt)
    expect(await run('list')).toMatch(new RegExp(`${key.jkt}\\s+"ci runner"`))
    expect(await run('label', '--', key.jkt, 'ci runner 2')).toContain('"ci runner 2"')
    const tokens = await boundTokens(key)
    const grants = JSON.parse(await run('grants', '--json', '--', key.jkt)) as Array<{ revokedAt: number | null }>
    expect(grants).toHaveLength(1)
    expect(grants[0]!.revokedAt).toBeNull()
    expect(await run('retire', '--', key.jkt)).toContain('revoked 1 token family')
    expect(await introspect(tokens.access_token)).toEqual({ active: false })
    expect(await run('list')).not.toContain(key.jkt)
    expect(await run('list', '--all')).toContain(key.jkt)
  })

  it('register --jwk-file with a missing or non-JSON file says so in one line and exits 2, without a stack trace', async () => {
    const notJson = join(t.server.config.dataDir, 'not-a-jwk.txt')
    writeFileSync(notJson, 'not json')
    for (const [file, message] of [
      [join(t.server.config.dataDir, 'missing.jwk'), `devicegate: --jwk-file: cannot read ${join(t.server.config.dataDir, 'missing.jwk')} (ENOENT)\n`],
      [notJson, `devicegate: --jwk-file: ${notJson} is not a JSON JWK\n`],
    ]) {
      let err = ''
      const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
        err += String(chunk)
        return true
      })
      const exit = vi.spyOn(process, 'exit').mockImplementation(((code: number) => {
        throw new Error(`exit ${code}`)
      }) as never)
      try {
        await expect(run('register', '--jwk-file', file!, '--label', 'x')).rejects.toThrow('exit 2')
      } finally {
        stderr.mockRestore()
        exit.mockRestore()
      }
      expect(err).toBe(message)
    }
  })
})
