/**
 * Token storage: the encrypted file store (mode 0600, atomic writes, refusal of wider modes,
 * nothing readable at rest), the memory store, the keyring probe and fallback, and where the
 * DPoP key lives.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  DPOP_KEY_RECORD,
  DeviceClient,
  FileTokenStore,
  KEY_FILE,
  MemoryTokenStore,
  defaultConfigDir,
  openTokenStore,
} from '../src/client/index.js'

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.secret-access-token-text.signature'
const REFRESH = 'dgr_secretRefreshTokenValue0123456789'
const record = JSON.stringify({ accessToken: TOKEN, refreshToken: REFRESH })
const posix = process.platform !== 'win32'

let dir: string
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'devicegate-client-store-')), 'devicegate')
})
afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }))

const mode = (path: string) => statSync(path).mode & 0o777

describe('file store: at rest', () => {
  it.runIf(posix)('creates the directory 0700 and the record and key files 0600', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    expect(mode(dir)).toBe(0o700)
    expect(mode(store.pathOf('grant-a'))).toBe(0o600)
    expect(mode(join(dir, KEY_FILE))).toBe(0o600)
  })

  it.runIf(posix)('keeps mode 0600 under a permissive umask', async () => {
    const old = process.umask(0)
    try {
      const store = new FileTokenStore({ dir })
      await store.set('grant-a', record)
      await store.set('grant-a', record + ' ')
      expect(mode(store.pathOf('grant-a'))).toBe(0o600)
      expect(mode(join(dir, KEY_FILE))).toBe(0o600)
    } finally {
      process.umask(old)
    }
  })

  it('holds no token text: not plain, not base64, not base64url', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    const onDisk = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n')
    for (const secret of [TOKEN, REFRESH, 'secret-access-token-text', 'secretRefreshTokenValue'])
      for (const form of [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url')])
        expect(onDisk).not.toContain(form)
    expect(await store.get('grant-a')).toBe(record)
  })

  it('round-trips through a new instance (same key file) and uses a fresh IV per write', async () => {
    const a = new FileTokenStore({ dir })
    await a.set('grant-a', record)
    const first = readFileSync(a.pathOf('grant-a'), 'utf8')
    await a.set('grant-a', record)
    expect(readFileSync(a.pathOf('grant-a'), 'utf8')).not.toBe(first)
    expect(await new FileTokenStore({ dir }).get('grant-a')).toBe(record)
    expect(await a.get('missing')).toBeUndefined()
  })

  it('writes atomically: no temporary files remain and concurrent writers leave one whole record', async () => {
    const store = new FileTokenStore({ dir })
    const values = Array.from({ length: 20 }, (_, i) => `${record}-${i}`)
    await Promise.all(values.map((v) => store.set('grant-a', v)))
    expect(values).toContain(await store.get('grant-a'))
    expect(readdirSync(dir).sort()).toEqual(['grant-a.enc', KEY_FILE].sort())
  })

  it('deletes a record and tolerates deleting a missing one', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    await store.delete('grant-a')
    await store.delete('grant-a')
    expect(await store.get('grant-a')).toBeUndefined()
  })

  it('rejects record names that could escape the directory', async () => {
    const store = new FileTokenStore({ dir })
    await expect(store.set('../evil', 'x')).rejects.toThrow(TypeError)
    await expect(store.get('a/b')).rejects.toThrow(TypeError)
  })
})

describe('file store: refusals', () => {
  it.runIf(posix)('refuses to read a world-readable record with a clear ERR_STORE_INSECURE', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    chmodSync(store.pathOf('grant-a'), 0o644)
    const err = await new FileTokenStore({ dir }).get('grant-a').catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'ClientError', code: 'ERR_STORE_INSECURE' })
    expect((err as Error).message).toContain('0644')
    expect((err as Error).message).toContain('chmod 600')
  })

  it.runIf(posix)('refuses a group-readable record (0640) and a world-readable key file', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    chmodSync(store.pathOf('grant-a'), 0o640)
    await expect(new FileTokenStore({ dir }).get('grant-a')).rejects.toMatchObject({ code: 'ERR_STORE_INSECURE' })
    chmodSync(store.pathOf('grant-a'), 0o600)
    chmodSync(join(dir, KEY_FILE), 0o604)
    await expect(new FileTokenStore({ dir }).get('grant-a')).rejects.toMatchObject({ code: 'ERR_STORE_INSECURE' })
  })

  it.runIf(posix)('accepts a narrower mode (0400)', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    chmodSync(store.pathOf('grant-a'), 0o400)
    expect(await new FileTokenStore({ dir }).get('grant-a')).toBe(record)
  })

  it.runIf(posix)('refuses a record that is a symbolic link', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    renameSync(store.pathOf('grant-a'), join(dir, 'elsewhere'))
    symlinkSync(join(dir, 'elsewhere'), store.pathOf('grant-a'))
    await expect(store.get('grant-a')).rejects.toMatchObject({ code: 'ERR_STORE_INSECURE' })
  })

  it.runIf(posix)('refuses a directory others can write', async () => {
    mkdirSync(dir, { recursive: true })
    chmodSync(dir, 0o777)
    await expect(new FileTokenStore({ dir }).set('grant-a', record)).rejects.toMatchObject({ code: 'ERR_STORE_INSECURE' })
  })

  it('detects tampering, a swapped record and the wrong key (ERR_STORE_CORRUPT)', async () => {
    const store = new FileTokenStore({ dir })
    await store.set('grant-a', record)
    await store.set('grant-b', 'other')
    // swap: grant-b's sealed bytes under grant-a's name fail the authenticated name
    writeFileSync(store.pathOf('grant-a'), readFileSync(store.pathOf('grant-b')), { mode: 0o600 })
    await expect(store.get('grant-a')).rejects.toMatchObject({ code: 'ERR_STORE_CORRUPT' })
    // flip one ciphertext character
    const env = JSON.parse(readFileSync(store.pathOf('grant-b'), 'utf8'))
    env.ct = (env.ct[0] === 'A' ? 'B' : 'A') + env.ct.slice(1)
    writeFileSync(store.pathOf('grant-b'), JSON.stringify(env), { mode: 0o600 })
    await expect(store.get('grant-b')).rejects.toMatchObject({ code: 'ERR_STORE_CORRUPT' })
    // another key
    await store.set('grant-c', record)
    await expect(new FileTokenStore({ dir, key: new Uint8Array(32).fill(7) }).get('grant-c')).rejects.toMatchObject({ code: 'ERR_STORE_CORRUPT' })
  })

  it('with a given key, never creates a key file', async () => {
    const store = new FileTokenStore({ dir, key: new Uint8Array(32).fill(1) })
    await store.set('grant-a', record)
    expect(readdirSync(dir)).toEqual(['grant-a.enc'])
    expect(await store.get('grant-a')).toBe(record)
  })
})

describe('store selection', () => {
  it('puts the file store under $XDG_CONFIG_HOME/devicegate, else ~/.config/devicegate', () => {
    expect(defaultConfigDir({ XDG_CONFIG_HOME: '/x/cfg', HOME: '/home/u' })).toBe(join('/x/cfg', 'devicegate'))
    expect(defaultConfigDir({ XDG_CONFIG_HOME: 'relative', HOME: '/home/u' })).toBe(join('/home/u', '.config', 'devicegate'))
    expect(defaultConfigDir({ HOME: '/home/u' })).toBe(join('/home/u', '.config', 'devicegate'))
  })

  it.runIf(process.platform === 'linux')('auto falls back to the file store, with a reason, on a Linux without a D-Bus session', async () => {
    const opened = await openTokenStore({ kind: 'auto', dir, service: 'devicegate-test', env: { HOME: '/nonexistent' } })
    expect(opened.store.kind).toBe('file')
    expect(opened.store.location).toBe(dir)
    expect(opened.fallbackReason).toMatch(/Secret Service/)
  })

  it('auto uses the keyring when it works and falls back to the file store with a reason otherwise', async () => {
    const opened = await openTokenStore({ kind: 'auto', dir, service: 'devicegate-test' })
    if (opened.store.kind === 'keyring') {
      expect(opened.fallbackReason).toBeUndefined()
      await opened.store.set('grant-probe', 'x')
      expect(await opened.store.get('grant-probe')).toBe('x')
      await opened.store.delete('grant-probe')
    } else {
      console.warn(`keyring unavailable here, testing the fallback: ${opened.fallbackReason}`)
      expect(opened.store.kind).toBe('file')
      expect(opened.fallbackReason).toMatch(/keyring/)
    }
  })

  it('memory store keeps records per instance only', async () => {
    const { store } = await openTokenStore({ kind: 'memory' })
    await store.set('grant-a', 'v')
    expect(await store.get('grant-a')).toBe('v')
    expect(await new MemoryTokenStore().get('grant-a')).toBeUndefined()
    await expect(openTokenStore({ kind: 'floppy' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
  })
})

describe('DPoP key per installation', () => {
  it('is generated once, stored only as a JWK in the store, and reloaded as non-extractable', async () => {
    const store = new FileTokenStore({ dir })
    const a = new DeviceClient({ issuer: 'https://as.example', clientId: 'cli', store })
    const key = await a.dpopKey()
    expect(key.isExtractable).toBe(false)
    const jwk = JSON.parse((await store.get(DPOP_KEY_RECORD))!)
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256' })
    expect(jwk.d).toBeTypeOf('string')
    // a second process (new client, same store) gets the same key
    const again = await new DeviceClient({ issuer: 'https://other.example', clientId: 'x', store: new FileTokenStore({ dir }) }).dpopKey()
    expect(again.thumbprint).toBe(key.thumbprint)
    expect(again.isExtractable).toBe(false)
    // and the private scalar is not readable on disk
    const onDisk = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n')
    expect(onDisk).not.toContain(jwk.d)
  })
})
