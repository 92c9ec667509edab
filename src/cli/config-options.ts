/**
 * Options shared by every command that needs the server configuration.
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { newTotpSecret } from '../verification/totp.js'
import { ConfigError, DEV_ENV, devConfigFile, loadConfigFile, resolveConfig, type Config, type ConfigOverrides, type ResolveOptions } from '../config/load.js'
import { StoreUnavailableError } from '../storage/store.js'

/** Configuration file used when neither --config, --dev nor DEVICEGATE_CONFIG is given. */
export const DEFAULT_CONFIG_FILE = 'devicegate.yaml'

/** Parses a TCP port option. */
export function parsePort(value: string): number {
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new InvalidArgumentError('expected an integer between 0 and 65535')
  return port
}

/** Parsed `--config/--dev/--host/--port/--issuer/--data-dir`. */
export interface ConfigOptions {
  config?: string
  dev?: boolean
  host?: string
  port?: number
  issuer?: string
  dataDir?: string
}

/** Adds the configuration options to a command. */
export function withConfigOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'YAML configuration file (default: $DEVICEGATE_CONFIG, else ./devicegate.yaml)')
    .option('--dev', 'development preset: SQLite in ./data, demo client and user (not for production)')
    .option('--host <host>', 'interface to listen on (overrides listen.host)')
    .option('--port <port>', 'TCP port (overrides listen.port)', parsePort)
    .option('--issuer <url>', 'issuer URL (overrides issuer)')
    .option('--data-dir <dir>', 'data directory (overrides data_dir)')
}

/** Demo secrets the `--dev` preset generated (to be shown once), or none when taken from the environment. */
export interface DevSecrets {
  generatedPassword?: string
  generatedClientSecret?: string
  /** The demo user's generated TOTP secret (base32), for an authenticator app. */
  generatedTotpSecret?: string
}

/**
 * Resolves the configuration from options. Secrets from the environment are only checked, not
 * hashed, unless `resolveOptions.secrets` is `hash` (`serve`): hashing them all cost
 * `policy explain` over a second.
 * @throws {ConfigError} when neither `--config` nor `--dev` is given, or the file is invalid.
 */
export async function configFromOptions(opts: ConfigOptions, resolveOptions: ResolveOptions = { secrets: 'check' }): Promise<{ config: Config; dev: DevSecrets }> {
  const overrides: ConfigOverrides = {
    ...(opts.host !== undefined ? { host: opts.host } : {}),
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    ...(opts.issuer !== undefined ? { issuer: opts.issuer } : {}),
    ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
  }
  if (opts.config && opts.dev) throw new ConfigError('use either --config or --dev, not both')
  // As the README prints commands: without --config, DEVICEGATE_CONFIG, else ./devicegate.yaml.
  if (!opts.config && !opts.dev) {
    const found = process.env.DEVICEGATE_CONFIG || (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined)
    if (found !== undefined) opts = { ...opts, config: found }
  }
  if (opts.config) return { config: await resolveConfig(await loadConfigFile(opts.config), overrides, process.env, resolveOptions), dev: {} }
  if (!opts.dev) throw new ConfigError(`give --config <file> or --dev (or set DEVICEGATE_CONFIG, or run where ${DEFAULT_CONFIG_FILE} is)`)
  const envPassword = process.env[DEV_ENV.password]
  const envSecret = process.env[DEV_ENV.clientSecret]
  const password = envPassword || randomBytes(12).toString('base64url')
  const clientSecret = envSecret || randomBytes(24).toString('base64url')
  const envTotp = process.env[DEV_ENV.totpSecret]
  if (envTotp && !/^[A-Z2-7]{16,}=*$/i.test(envTotp)) throw new ConfigError(`${DEV_ENV.totpSecret}: expected a base32 TOTP secret of at least 16 characters`)
  const totpSecret = envTotp || newTotpSecret()
  const { file, env } = devConfigFile({ password, clientSecret, totpSecret })
  const config = await resolveConfig(file, overrides, env, resolveOptions)
  return {
    config,
    dev: {
      ...(envPassword ? {} : { generatedPassword: password }),
      ...(envSecret ? {} : { generatedClientSecret: clientSecret }),
      ...(envTotp ? {} : { generatedTotpSecret: totpSecret }),
    },
  }
}

/**
 * What a command does with the store: `read` commands (listings, `audit verify|export`, `report
 * compliance`) must not create a database; `write` commands (and `serve`) create it when missing.
 */
export type StoreAccess = 'read' | 'write'

/**
 * Refuses, before anything is opened, a read-only command whose SQLite database directory (the
 * data directory, or the directory of `storage.url`) does not exist: opening the store would
 * create it with an empty database and the command would report on that (`audit verify --data-dir
 * /typo` said `ok: 0 records`). PostgreSQL and `:memory:` URLs pass.
 *
 * @param storageUrl The resolved `storage.url` (`sqlite:/abs/path`, a bare path, or `postgres://…`).
 * @throws {ConfigError} naming the missing directory.
 */
export function requireExistingDatabaseDir(storageUrl: string): void {
  if (/^postgres(ql)?:\/\//i.test(storageUrl)) return
  const path = storageUrl.replace(/^sqlite:(\/\/)?/i, '')
  if (path === '' || path === ':memory:') return
  const dir = dirname(resolve(path))
  if (!existsSync(dir))
    throw new ConfigError(`data directory ${dir} does not exist; this command only reads and creates nothing (check --data-dir, data_dir or storage.url)`)
}

/** Prints a start-up failure without a stack and exits non-zero. */
export function exitWithError(err: unknown): never {
  if (err instanceof ConfigError) process.stderr.write(`devicegate: ${err.message}\n`)
  else if (err instanceof StoreUnavailableError) process.stderr.write(`devicegate: database unavailable: ${err.message}\n`)
  else process.stderr.write(`devicegate: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
}
