/**
 * `devicegate keys list|rotate`.
 */
import type { Command } from 'commander'
import { KeyRing } from '../protocol/keys.js'
import { openStore } from '../storage/index.js'
import { systemClock } from '../system.js'
import { configFromOptions, exitWithError, withConfigOptions, type ConfigOptions } from './config-options.js'

async function withKeyRing(opts: ConfigOptions, fn: (ring: KeyRing, longestTtlSeconds: number) => Promise<void>): Promise<void> {
  try {
    const { config } = await configFromOptions(opts)
    const store = await openStore(config.storageUrl)
    try {
      const ring = await KeyRing.open(store, config.signingAlg, systemClock)
      await fn(ring, Math.max(600, ...config.clients.map((c) => c.accessTokenTtlSeconds)))
    } finally {
      await store.close()
    }
  } catch (err) {
    exitWithError(err)
  }
}

/** Registers `keys list` and `keys rotate`. */
export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('manage access-token signing keys')
  withConfigOptions(keys.command('list').description('list signing keys (public data only)')).action((opts: ConfigOptions) =>
    withKeyRing(opts, async (ring) => {
      for (const k of ring.records()) {
        const state = k.retiredAt === null ? 'active' : `retired, published until ${new Date((k.publishUntil ?? 0) * 1000).toISOString()}`
        process.stdout.write(`${k.kid}  ${k.alg}  created ${new Date(k.createdAt * 1000).toISOString()}  ${state}\n`)
      }
    }),
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
}
