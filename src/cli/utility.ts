/**
 * `devicegate hash-secret`, `devicegate check-config`, `devicegate migrate`.
 */
import { isIP } from 'node:net'
import type { Command } from 'commander'
import { loadConfigFile, resolveConfig } from '../config/load.js'
import { checkStartup } from '../server.js'
import { openGeoLookup } from '../policy/geo-csv.js'
import { openStore } from '../storage/index.js'
import { hashPassword } from '../web/user-directory.js'
import { configFromOptions, exitWithError, withConfigOptions, type ConfigOptions } from './config-options.js'

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

/** Registers the utility commands. */
export function registerUtilityCommands(program: Command): void {
  program
    .command('hash-secret')
    .description('read a password or client secret on stdin and print its argon2id hash for the config file')
    .action(async () => {
      const secret = await readStdin()
      if (!secret) exitWithError(new Error('nothing on stdin'))
      process.stdout.write(`${await hashPassword(secret)}\n`)
    })
  program
    .command('check-config <file>')
    .description('check a configuration file as serve would: schema, environment variables, key and data files (writes nothing)')
    .action(async (file: string) => {
      try {
        const config = await resolveConfig(await loadConfigFile(file), {}, process.env, { secrets: 'check' })
        const notes = await checkStartup(config)
        for (const note of notes) process.stdout.write(`note: ${note}\n`)
        process.stdout.write(`${file}: ok\n`)
      } catch (err) {
        exitWithError(err)
      }
    })
  withConfigOptions(
    program
      .command('geo')
      .description('look up addresses in the configured IP data (networks, MaxMind DB, ip-location-db CSV): country and ASN')
      .argument('<ip...>', 'IPv4 or IPv6 addresses'),
  ).action(async (ips: string[], opts: ConfigOptions) => {
    // An argument that is no address is a usage error (exit 2), not a lookup that finds nothing.
    const invalid = ips.find((ip) => isIP(ip) === 0)
    if (invalid !== undefined) {
      process.stderr.write(`devicegate: ${JSON.stringify(invalid.slice(0, 100))} is not an IPv4 or IPv6 address\n`)
      process.exit(2)
    }
    try {
      const { config } = await configFromOptions(opts)
      const geo = await openGeoLookup(config.geo)
      for (const ip of ips) {
        const g = geo.lookup(ip)
        process.stdout.write(`${ip}  country ${g.country ?? 'unknown'}  asn ${g.asn === null ? 'unknown' : `AS${g.asn}`}${g.asOrg ? ` (${g.asOrg})` : ''}\n`)
      }
    } catch (err) {
      exitWithError(err)
    }
  })
  withConfigOptions(program.command('migrate').description('apply database migrations')).action(async (opts: ConfigOptions) => {
    try {
      const { config } = await configFromOptions(opts)
      const store = await openStore(config.storageUrl)
      await store.close()
      process.stdout.write(`migrated ${config.storageUrl.replace(/\/\/[^@]*@/, '//***@')}\n`)
    } catch (err) {
      exitWithError(err)
    }
  })
}
