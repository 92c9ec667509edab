/**
 * Keys and files at rest.
 * - The SQLite database, its -wal and -shm are 0600 in a 0700 directory (also tightening files an
 *   older version left 0644).
 * - Private signing keys are sealed (JWE dir + A256GCM) with a key-encryption key before the
 *   store sees them; plaintext keys of an older database are sealed on first start without
 *   losing a key; `rewrap` moves them to a new KEK; a ciphertext moved to another row, or a
 *   KEK that is not configured, fails loudly instead of signing with garbage.
 * - A KEK file readable by group or others stops start-up (`serve` and `check-config`).
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { compactDecrypt, decodeProtectedHeader, exportJWK, generateKeyPair, calculateJwkThumbprint, jwtVerify, createLocalJWKSet, type JWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadKek, parseKek } from '../src/config/kek.js'
import { ConfigError } from '../src/config/load.js'
import { KeyEncryptionError, kekId, LocalKeyEncryption } from '../src/protocol/key-encryption.js'
import { KeyRing } from '../src/protocol/keys.js'
import { openStore } from '../src/storage/index.js'
import type { Store } from '../src/storage/store.js'
import { postForm, startTestServer, TestClock } from './support/server.js'

const ROOT = join(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin/devicegate.js')
const dirs: string[] = []
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'devicegate-rest-'))
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
const mode = (path: string) => statSync(path).mode & 0o777
const kek = () => randomBytes(32)

describe('SQLite files are private to the server user', () => {
  it('creates the directory 0700 and the database, -wal and -shm 0600', async () => {
    const dir = join(tempDir(), 'data')
    const file = join(dir, 'devicegate.db')
    const store = await openStore(`sqlite:${file}`)
    try {
      await store.ensureServerSecret('probe', 'x', 1)
      expect(mode(dir)).toBe(0o700)
      for (const f of [file, `${file}-wal`, `${file}-shm`]) {
        expect(existsSync(f), f).toBe(true)
        expect(mode(f), f).toBe(0o600)
      }
    } finally {
      await store.close()
    }
  })

  it('tightens a database an older version created 0644', async () => {
    const dir = tempDir()
    const file = join(dir, 'devicegate.db')
    const first = await openStore(`sqlite:${file}`)
    await first.close()
    chmodSync(file, 0o644)
    const again = await openStore(`sqlite:${file}`)
    try {
      await again.ensureServerSecret('probe', 'x', 1)
      expect(mode(file)).toBe(0o600)
      expect(mode(`${file}-wal`)).toBe(0o600)
    } finally {
      await again.close()
    }
  })
})

describe('private signing keys are sealed at rest', () => {
  let store: Store
  let file: string
  const clock = new TestClock()
  beforeAll(async () => {
    file = join(tempDir(), 'devicegate.db')
    store = await openStore(`sqlite:${file}`)
  })
  afterAll(async () => store?.close())
  const rows = () => {
    const db = new Database(file, { readonly: true })
    try {
      return db.prepare('select kid, private_jwk from signing_keys').all() as Array<{ kid: string; private_jwk: string }>
    } finally {
      db.close()
    }
  }

  it('stores only a JWE (dir, A256GCM) naming the KEK and bound to the key id', async () => {
    const key = kek()
    const ring = await KeyRing.open(store, 'ES256', clock, new LocalKeyEncryption(key))
    const active = await ring.activeKey()
    const [row] = rows()
    expect(row!.kid).toBe(active.kid)
    expect(row!.private_jwk).not.toContain('"d"')
    expect(row!.private_jwk.split('.')).toHaveLength(5)
    expect(decodeProtectedHeader(row!.private_jwk)).toMatchObject({ alg: 'dir', enc: 'A256GCM', kid: kekId(key), dg_sig_kid: active.kid })
    const { plaintext } = await compactDecrypt(row!.private_jwk, key)
    expect(JSON.parse(new TextDecoder().decode(plaintext))).toHaveProperty('d')
  })

  it('refuses a KEK that is not configured, and a ciphertext moved to another key, without changing the rows', async () => {
    const before = rows()
    await expect(KeyRing.open(store, 'ES256', clock, new LocalKeyEncryption(kek()))).rejects.toMatchObject({ code: 'ERR_KEK_UNKNOWN' })
    expect(rows()).toEqual(before)
    const enc = new LocalKeyEncryption(kek())
    const sealed = await enc.seal('{"kty":"EC"}', 'kid-a')
    await expect(enc.open(sealed, 'kid-b')).rejects.toBeInstanceOf(KeyEncryptionError)
    await expect(enc.open(sealed, 'kid-b')).rejects.toMatchObject({ code: 'ERR_KEK_DECRYPT' })
  })
})

describe('plaintext keys of an older database are sealed on first start', () => {
  it('keeps every key (same kid, same signature key) and leaves no plaintext', async () => {
    const file = join(tempDir(), 'old.db')
    const store = await openStore(`sqlite:${file}`)
    const clock = new TestClock()
    try {
      const kids: string[] = []
      for (const [i, retired] of [
        [0, true],
        [1, false],
      ] as const) {
        const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
        const publicJwk = await exportJWK(publicKey)
        const kid = await calculateJwkThumbprint(publicJwk)
        kids.push(kid)
        await store.insertSigningKey({
          kid,
          alg: 'ES256',
          publicJwk: JSON.stringify(publicJwk),
          privateJwk: JSON.stringify(await exportJWK(privateKey)),
          createdAt: clock.nowSeconds() - 100 + i,
          retiredAt: retired ? clock.nowSeconds() - 50 : null,
          publishUntil: retired ? clock.nowSeconds() + 500 : null,
        })
      }
      const key = kek()
      const ring = await KeyRing.open(store, 'ES256', clock, new LocalKeyEncryption(key))
      expect((await ring.activeKey()).kid).toBe(kids[1])
      const stored = await store.listSigningKeys()
      expect(stored.map((k) => k.kid).sort()).toEqual([...kids].sort())
      for (const k of stored) {
        expect(k.privateJwk.startsWith('{')).toBe(false)
        expect(decodeProtectedHeader(k.privateJwk).kid).toBe(kekId(key))
      }
    } finally {
      await store.close()
    }
  })
})

describe('KEK rotation with rewrap', () => {
  it('opens with the previous KEK, re-seals everything under the new one, then needs only the new one', async () => {
    const store = await openStore(`sqlite:${join(tempDir(), 'rot.db')}`)
    const clock = new TestClock()
    try {
      const oldKek = kek()
      const newKek = kek()
      const first = await KeyRing.open(store, 'ES256', clock, new LocalKeyEncryption(oldKek))
      await first.rotate(600)
      const both = await KeyRing.open(store, 'ES256', clock, new LocalKeyEncryption(newKek, [oldKek]))
      const result = await both.rewrap()
      expect(result.rewrapped).toHaveLength(2)
      expect(result.unchanged).toHaveLength(0)
      expect((await both.rewrap()).unchanged).toHaveLength(2)
      for (const k of await store.listSigningKeys()) expect(decodeProtectedHeader(k.privateJwk).kid).toBe(kekId(newKek))
      const onlyNew = await KeyRing.open(store, 'ES256', clock, new LocalKeyEncryption(newKek))
      expect((await onlyNew.activeKey()).kid).toBe((await first.activeKey()).kid)
      await expect(KeyRing.open(store, 'ES256', clock, new LocalKeyEncryption(oldKek))).rejects.toMatchObject({ code: 'ERR_KEK_UNKNOWN' })
    } finally {
      await store.close()
    }
  })
})

describe('loading the KEK', () => {
  const base = (over: Partial<{ kekFile: string; previousKekFiles: string[]; generatedKekFile: string }> = {}) => ({
    signingKek: { kekEnv: 'TEST_KEK', previousKekFiles: [], generatedKekFile: join(tempDir(), 'gen', 'signing.kek'), ...over },
  })

  it('refuses a KEK file readable by group or others, naming the file and the fix', async () => {
    const file = join(tempDir(), 'kek')
    writeFileSync(file, randomBytes(32).toString('base64'), { mode: 0o644 })
    chmodSync(file, 0o644)
    const err = await loadKek(base({ kekFile: file }), {}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toBe(
      `signing.kek_file: refusing to start: key-encryption key file ${file} is accessible by group or others (mode 0644); run chmod 600 ${file}`,
    )
    chmodSync(file, 0o600)
    expect((await loadKek(base({ kekFile: file }), {})).source).toBe(`file ${file}`)
  })

  it('reads the environment variable, else generates one 0600 in a 0700 directory and reuses it', async () => {
    const key = kek()
    const fromEnv = await loadKek(base(), { TEST_KEK: key.toString('hex') })
    expect(fromEnv.encryption.currentKeyId).toBe(kekId(key))
    const config = base()
    const generated = await loadKek(config, {})
    const file = config.signingKek.generatedKekFile
    expect(generated.generatedFile).toBe(file)
    expect(mode(file)).toBe(0o600)
    expect(mode(join(file, '..'))).toBe(0o700)
    const again = await loadKek(config, {})
    expect(again.generatedFile).toBeUndefined()
    expect(again.encryption.currentKeyId).toBe(generated.encryption.currentKeyId)
    expect(parseKek(readFileSync(file, 'utf8'), 'x')).toHaveLength(32)
  })

  it('refuses a malformed KEK', () => {
    expect(() => parseKek('too short', 'DEVICEGATE_KEK')).toThrow(ConfigError)
    expect(() => parseKek(randomBytes(16).toString('hex'), 'DEVICEGATE_KEK')).toThrow(/32 random bytes/)
  })
})

describe('a running server signs with the sealed key', () => {
  it('issues tokens that verify against its JWKS, with the KEK generated beside the database', async () => {
    const t = await startTestServer()
    try {
      const dir = t.server.config.dataDir
      expect(mode(join(dir, 'signing.kek'))).toBe(0o600)
      const res = await postForm(`${t.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { authorization: `Basic ${Buffer.from('rs:rs-secret-0123456789abcdef').toString('base64')}` })
      expect(res.status).toBe(200)
      const jwks = (await (await fetch(`${t.url}/jwks`)).json()) as { keys: JWK[] }
      const token = res.json.access_token as string
      if (token.split('.').length === 3) await jwtVerify(token, createLocalJWKSet(jwks))
    } finally {
      await t.close()
    }
  })
})

describe('the CLI refuses a readable KEK file', () => {
  beforeAll(() => {
    // Rebuild dist/ only when a source file is newer (`npm test` builds first anyway).
    const newest = (dir: string): number =>
      Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)))
    const out = join(ROOT, 'dist/cli/main.js')
    if (!existsSync(out) || newest(join(ROOT, 'src')) > statSync(out).mtimeMs)
      spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'ignore' })
  }, 120_000)

  it('serve exits 1 naming the file; keys rewrap re-seals after the KEK is fixed', () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'data'), { mode: 0o700 })
    const kekFile = join(dir, 'kek')
    writeFileSync(kekFile, randomBytes(32).toString('base64url'))
    chmodSync(kekFile, 0o640)
    const config = join(dir, 'devicegate.yaml')
    writeFileSync(config, `data_dir: ${JSON.stringify(join(dir, 'data'))}\nsigning:\n  kek_file: ${JSON.stringify(kekFile)}\nlog_level: silent\n`)
    const env = { ...process.env }
    delete env.DATABASE_URL
    delete env.DEVICEGATE_KEK
    const serve = spawnSync(process.execPath, [BIN, 'serve', '--config', config, '--port', '0', '--host', '127.0.0.1'], { env, encoding: 'utf8', timeout: 30_000 })
    expect(serve.status).toBe(1)
    expect(serve.stderr).toContain(`refusing to start: key-encryption key file ${kekFile} is accessible by group or others (mode 0640)`)
    chmodSync(kekFile, 0o600)
    const list = spawnSync(process.execPath, [BIN, 'keys', 'list', '--config', config], { env, encoding: 'utf8', timeout: 30_000 })
    expect(list.status).toBe(0)
    const rewrap = spawnSync(process.execPath, [BIN, 'keys', 'rewrap', '--config', config], { env, encoding: 'utf8', timeout: 30_000 })
    expect(rewrap.stdout).toBe('re-sealed 0 signing key(s) under the current key-encryption key; 1 already were\nre-sealed 0 Shared Signals push secret(s); 0 already were\n')
  }, 60_000)
})
