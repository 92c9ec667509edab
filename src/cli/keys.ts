/**
 * `devicegate keys list|rotate`.
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { ConfigError } from '../config/load.js'
import { KEK_BYTES, type KeyEncryption } from '../protocol/key-encryption.js'
import { loadKek } from '../config/kek.js'
import { KeyRing } from '../protocol/keys.js'
import { sealStoredSecrets } from '../signals/secrets.js'
import { openStore } from '../storage/index.js'
import type { Store } from '../storage/store.js'
import { systemClock } from '../system.js'
import { configFromOptions, exitWithError, requireExistingDatabaseDir, withConfigOptions, type ConfigOptions, type StoreAccess } from './config-options.js'

async function withKeyRing(
  opts: ConfigOptions,
  fn: (ring: KeyRing, longestTtlSeconds: number, more: { store: Store; encryption: KeyEncryption }) => Promise<void>,
  access: StoreAccess = 'write',
): Promise<void> {
  try {
    const { config } = await configFromOptions(opts)
    if (access === 'read') requireExistingDatabaseDir(config.storageUrl)
    const store = await openStore(config.storageUrl)
    try {
      const encryption = (await loadKek(config)).encryption
      const ring = await KeyRing.open(store, config.signingAlg, systemClock, encryption)
      await fn(ring, Math.max(600, ...config.clients.map((c) => c.accessTokenTtlSeconds)), { store, encryption })
    } finally {
      await store.close()
    }
  } catch (err) {
    exitWithError(err)
  }
}

/** Registers `keys list`, `keys rotate`, `keys rewrap` and `keys generate-kek`. */
export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('manage access-token signing keys')
  withConfigOptions(keys.command('list').description('list signing keys (public data only)')).action((opts: ConfigOptions) =>
    withKeyRing(opts, async (ring) => {
      for (const k of ring.records()) {
        const state = k.retiredAt === null ? 'active' : `retired, published until ${new Date((k.publishUntil ?? 0) * 1000).toISOString()}`
        process.stdout.write(`${k.kid}  ${k.alg}  created ${new Date(k.createdAt * 1000).toISOString()}  ${state}\n`)
      }
    }, 'read'),
  )
  withConfigOptions(
    keys
      .command('rotate')
      .description('create a new signing key; the old one stays published until the tokens it signed have expired'),
  ).action((opts: ConfigOptions) =>
    withKeyRing(opts, async (ring, ttl) => {
      const kid = await ring.rotate(ttl)
      process.stdout.write(`new signing key ${kid}; every instance publishes it now and signs with it within 60 s; previous keys stay published for ${ttl + 60} s\n`)
    }),
  )
  withConfigOptions(
    keys
      .command('rewrap')
      .description('re-seal every private signing key and Shared Signals push secret under the current key-encryption key (after a KEK rotation; see README)'),
  ).action((opts: ConfigOptions) =>
    withKeyRing(opts, async (ring, _ttl, { store, encryption }) => {
      const { rewrapped, unchanged } = await ring.rewrap()
      process.stdout.write(`re-sealed ${rewrapped.length} signing key(s) under the current key-encryption key; ${unchanged.length} already were\n`)
      const secrets = await sealStoredSecrets(store, encryption, { rewrap: true })
      process.stdout.write(`re-sealed ${secrets.sealed} Shared Signals push secret(s); ${secrets.unchanged} already were\n`)
      if (secrets.failed.length > 0) throw new ConfigError(`push secrets of stream(s) ${secrets.failed.join(', ')} do not open with the configured key-encryption keys`)
    }),
  )
  keys
    .command('generate-kek')
    .description('write a new random key-encryption key (32 bytes, base64url) to a new file with mode 0600')
    .argument('<file>', 'file to create (must not exist)')
    .action(async (file: string) => {
      try {
        await writeFile(file, `${randomBytes(KEK_BYTES).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' })
        process.stdout.write(`wrote a new key-encryption key to ${file} (mode 0600)\n`)
      } catch (err) {
        exitWithError(new ConfigError(`cannot create ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`))
      }
    })
}
