/**
 * Loading and resolving configuration: YAML file (or the `--dev` preset) → validated → frozen
 * {@link Config}. Read once at start-up.
 */
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { hash as argon2Hash } from '@node-rs/argon2'
import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { GRANT_TYPES, OFFLINE_ACCESS, type Client, type ClientAuthMethod, type User } from '../core/model.js'
import { resolveConsoleConfig, type ConsoleConfig } from './console.js'
import { resolveGovernanceConfig, type GovernanceConfig } from './governance.js'
import { resolveReviewsConfig, type ReviewsConfig } from './reviews.js'
import { resolveIdentityConfig, type IdentityConfig } from './identity.js'
import { configSchema, type ConfigFile } from './schema.js'
import { resolveSignalsConfig, type SignalsConfig } from './signals.js'

/** The resolved, frozen configuration every other module reads. */
export interface Config {
  /** Issuer URL without trailing slash (RFC 8414 §2). */
  readonly issuer: string
  readonly host: string
  readonly port: number
  readonly dataDir: string
  /** `sqlite:PATH` or `postgres://…`. */
  readonly storageUrl: string
  /** PostgreSQL pool settings (unset: the adapter's defaults). */
  readonly storagePool: {
    readonly poolSize?: number
    readonly connectionTimeoutMillis?: number
    readonly statementTimeoutMillis?: number
  }
  /**
   * PostgreSQL: where poll times and DPoP jtis live (`storage.ephemeral`); unset: UNLOGGED tables
   * (see `storage/ephemeral.ts`).
   */
  readonly storageEphemeral?: { readonly kind: 'redis'; readonly url: string; readonly keyPrefix: string }
  readonly trustedProxies: readonly string[]
  /** HTTP listener limits (`listen.*`), in seconds. */
  readonly http: { readonly requestTimeoutSeconds: number; readonly shutdownDeadlineSeconds: number }
  readonly signingAlg: 'ES256' | 'EdDSA' | 'RS256' | 'PS256'
  /**
   * Where the key-encryption key for private signing keys comes from: `kekFile`,
   * else the environment variable `kekEnv`, else `generatedKekFile` (created 0600 on first
   * start). `previousKekFiles` only open keys during a KEK rotation.
   */
  readonly signingKek: {
    readonly kekFile?: string
    readonly kekEnv: string
    readonly previousKekFiles: readonly string[]
    readonly generatedKekFile: string
  }
  readonly verification: {
    readonly maxFailedEntries: number
    readonly windowSeconds: number
    readonly signedInSourceMaxFailedEntries: number
    readonly serverMaxFailedEntries: number
    readonly ipv6PrefixLength: number
    readonly reviewClaimSeconds: number
    readonly timeZone: string
    readonly sessionTtlSeconds: number
  }
  /** DPoP server settings (RFC 9449 §8). */
  readonly dpop: { readonly requireNonce: boolean }
  readonly scopeDescriptions: Readonly<Record<string, string>>
  readonly clients: readonly Client[]
  readonly users: readonly User[]
  readonly logLevel: ConfigFile['log_level']
  /** Audit log, anomaly detectors, admin API, metrics. */
  readonly governance: GovernanceConfig
  /** Access-review campaigns and compliance-report limits. */
  readonly reviews: ReviewsConfig
  /** Governance console: role grants, session lifetime. */
  readonly console: ConsoleConfig
  /** People and groups: upstream OpenID Connect providers, local passwords, SCIM, Shared Signals. */
  readonly identity: IdentityConfig
  /** Outbox delivery, Shared Signals transmitter, global token revocation, webhooks. */
  readonly signals: SignalsConfig
  /** Conditional approval: policy file (absent: the built-in baseline) and whether to watch it. */
  readonly policy?: { readonly file?: string; readonly watch: boolean }
  /** IP database for country/ASN conditions. */
  readonly geo?: {
    readonly countryDb?: string
    readonly asnDb?: string
    /** ip-location-db CSV files (absolute paths). */
    readonly countryCsv: readonly string[]
    readonly asnCsv: readonly string[]
    readonly networks: readonly { cidr: string; country?: string; asn?: number; asOrg?: string }[]
  }
  /** Device posture assertion verification; absent: `device_posture` is recorded as not configured. */
  readonly devicePosture?: { readonly keyFile: string; readonly issuer: string; readonly audience: string; readonly maxAgeSeconds: number }
}

/** Start-up configuration problem; `message` names the field and the problem. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  readonly code = 'ERR_CONFIG'
}

/** Command-line overrides (`--port`, `--host`, `--issuer`, `--data-dir`). */
export interface ConfigOverrides {
  host?: string
  port?: number
  issuer?: string
  dataDir?: string
}

/** Formats zod issues as `clients[2].access_token_ttl_seconds: expected …, got "1h"`. */
export function formatConfigIssues(error: z.ZodError, input: unknown): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.reduce<string>(
        (acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)),
        '',
      )
      let got = input as unknown
      for (const key of issue.path) got = got != null && typeof got === 'object' ? (got as Record<PropertyKey, unknown>)[key] : undefined
      const shown = got === undefined || (typeof got === 'object' && got !== null) ? '' : `, got ${JSON.stringify(got)}`
      return `${path || '(root)'}: ${issue.message}${shown}`
    })
    .join('\n')
}

/** Validates a parsed YAML/JSON document. @throws {ConfigError} naming every bad field. */
export function parseConfig(input: unknown): ConfigFile {
  const result = configSchema.safeParse(input ?? {})
  if (!result.success) throw new ConfigError(`invalid configuration:\n${formatConfigIssues(result.error, input)}`)
  return result.data
}

/** Reads and validates a YAML configuration file. @throws {ConfigError} */
export async function loadConfigFile(path: string): Promise<ConfigFile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read configuration file ${path}: ${(err as Error).message}`)
  }
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    throw new ConfigError(`${path}: not valid YAML: ${(err as Error).message}`)
  }
  return parseConfig(doc)
}

/**
 * Stands in for the hash of a secret read from the environment when the configuration is resolved
 * for a command that never verifies secrets (`policy explain`, `keys`, governance commands). It is
 * not a PHC string, so it can never verify a secret.
 */
export const UNHASHED_SECRET = '!unhashed'

/** Options of {@link resolveConfig}. */
export interface ResolveOptions {
  /**
   * `hash` (default): hash `client_secret_env` / `password_env` values with argon2id, as a server
   * needs. `check`: only check that the variables are set (commands that verify no secret).
   */
  secrets?: 'hash' | 'check'
}

function secretFromEnv(env: Readonly<Record<string, string | undefined>>, name: string, field: string): string {
  const value = env[name]
  if (!value) throw new ConfigError(`${field}: environment variable ${name} is not set`)
  return value
}

/**
 * Resolves a validated file into the runtime {@link Config}: defaults that depend on other fields,
 * secrets from `env` (default: `process.env`) hashed with argon2id (the plain value is dropped), paths made
 * absolute, everything frozen.
 * @throws {ConfigError} when a referenced environment variable is missing.
 */
export async function resolveConfig(
  file: ConfigFile,
  overrides: ConfigOverrides = {},
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: ResolveOptions = {},
): Promise<Config> {
  // argon2id costs ~100 ms a secret on purpose; only a serving process needs the hashes.
  const hashSecret = options.secrets === 'check' ? async () => UNHASHED_SECRET : argon2Hash
  const host = overrides.host ?? file.listen.host
  const port = overrides.port ?? file.listen.port
  const dataDir = resolve(overrides.dataDir ?? file.data_dir)
  const issuer = (overrides.issuer ?? file.issuer ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(/\/+$/, '')
  if (overrides.issuer !== undefined) {
    const checked = configSchema.shape.issuer.safeParse(overrides.issuer)
    if (!checked.success) throw new ConfigError(`--issuer: ${checked.error.issues[0]?.message ?? 'invalid URL'}`)
  }
  const envUrl = env.DATABASE_URL
  const storageUrl = file.storage.url ?? envUrl ?? `sqlite:${resolve(dataDir, 'devicegate.db')}`
  const sqlitePath = storageUrl.startsWith('sqlite:') ? storageUrl.slice('sqlite:'.length) : undefined
  const finalStorageUrl = sqlitePath !== undefined && !isAbsolute(sqlitePath) ? `sqlite:${resolve(sqlitePath)}` : storageUrl
  if (file.storage.ephemeral !== undefined && !/^postgres(ql)?:\/\//i.test(finalStorageUrl))
    throw new ConfigError('storage.ephemeral: only PostgreSQL storage shares ephemeral state (SQLite keeps poll times in the process); remove it or use a postgres:// storage.url')

  const clients = await Promise.all(
    file.clients.map(async (c, i): Promise<Client> => {
      const isConfidential = c.type === 'confidential'
      const secretHash =
        c.client_secret_hash ??
        (c.client_secret_env ? await hashSecret(secretFromEnv(env, c.client_secret_env, `clients[${i}].client_secret_env`)) : undefined)
      const authMethods: ClientAuthMethod[] = isConfidential
        ? (c.token_endpoint_auth_methods ?? ['client_secret_basic', 'client_secret_post'])
        : ['none']
      return Object.freeze({
        id: c.client_id,
        name: c.name ?? c.client_id,
        isConfidential,
        ...(secretHash ? { secretHash } : {}),
        authMethods: Object.freeze(authMethods),
        grantTypes: Object.freeze([...c.grant_types]),
        scopes: Object.freeze([...c.scopes]),
        defaultScopes: Object.freeze(c.default_scopes ?? c.scopes.filter((s) => s !== OFFLINE_ACCESS)),
        accessTokenFormat: c.access_token_format,
        accessTokenTtlSeconds: c.access_token_ttl_seconds,
        refreshTokenTtlSeconds: c.refresh_token_ttl_seconds,
        refreshTokenIssuance: c.refresh_token_issuance,
        refreshRetryGraceSeconds: c.refresh_token_retry_grace_seconds,
        deviceCodeTtlSeconds: c.device_code_ttl_seconds,
        pollIntervalSeconds: c.poll_interval_seconds,
        canIntrospect: c.introspection,
        disabled: c.disabled,
        riskTier: c.risk_tier,
        requiresDpop: c.dpop.required,
        requiresBoundDeviceCode: c.dpop.bind_device_code,
        resources: Object.freeze([...c.resources]),
        owners: Object.freeze([...c.owners]),
      })
    }),
  )
  const users = await Promise.all(
    file.users.map(async (u, i): Promise<User> =>
      Object.freeze({
        username: u.username,
        displayName: u.display_name ?? u.username,
        passwordHash: u.password_hash ?? (await hashSecret(secretFromEnv(env, u.password_env!, `users[${i}].password_env`))),
        disabled: u.disabled,
        groups: Object.freeze([...u.groups]),
        risk: u.risk,
        ...(u.manager !== undefined ? { manager: u.manager } : {}),
        ...(u.email !== undefined ? { email: u.email } : {}),
        ...(u.mfa ? { totpSecret: secretFromEnv(env, u.mfa.totp_secret_env, `users[${i}].mfa.totp_secret_env`) } : {}),
      }),
    ),
  )
  return Object.freeze({
    issuer,
    host,
    port,
    dataDir,
    storageUrl: finalStorageUrl,
    storagePool: Object.freeze({
      ...(file.storage.pool_size !== undefined ? { poolSize: file.storage.pool_size } : {}),
      ...(file.storage.connect_timeout_seconds !== undefined ? { connectionTimeoutMillis: file.storage.connect_timeout_seconds * 1000 } : {}),
      ...(file.storage.query_timeout_seconds !== undefined ? { statementTimeoutMillis: file.storage.query_timeout_seconds * 1000 } : {}),
    }),
    ...(file.storage.ephemeral
      ? { storageEphemeral: Object.freeze({ kind: 'redis' as const, url: file.storage.ephemeral.url, keyPrefix: file.storage.ephemeral.key_prefix }) }
      : {}),
    trustedProxies: Object.freeze([...file.trusted_proxies]),
    http: Object.freeze({ requestTimeoutSeconds: file.listen.request_timeout_seconds, shutdownDeadlineSeconds: file.listen.shutdown_deadline_seconds }),
    signingAlg: file.signing.alg,
    signingKek: Object.freeze({
      ...(file.signing.kek_file !== undefined ? { kekFile: resolve(file.signing.kek_file) } : {}),
      kekEnv: file.signing.kek_env,
      previousKekFiles: Object.freeze(file.signing.previous_kek_files.map((f) => resolve(f))),
      // Beside the SQLite file (so every process opening it finds the same KEK), else in data_dir.
      generatedKekFile: resolve(sqlitePath !== undefined && sqlitePath !== ':memory:' ? dirname(resolve(sqlitePath)) : dataDir, 'signing.kek'),
    }),
    verification: Object.freeze({
      maxFailedEntries: file.verification.max_failed_entries,
      windowSeconds: file.verification.window_seconds,
      signedInSourceMaxFailedEntries: file.verification.signed_in_source_max_failed_entries,
      serverMaxFailedEntries: file.verification.server_max_failed_entries,
      ipv6PrefixLength: file.verification.ipv6_prefix_length,
      reviewClaimSeconds: file.verification.review_claim_seconds,
      timeZone: file.verification.time_zone,
      sessionTtlSeconds: file.verification.session_ttl_seconds,
    }),
    dpop: Object.freeze({ requireNonce: file.dpop.require_nonce }),
    scopeDescriptions: Object.freeze({ ...file.scopes }),
    clients: Object.freeze(clients),
    users: Object.freeze(users),
    logLevel: file.log_level,
    governance: resolveGovernanceConfig(file.governance, dataDir),
    reviews: resolveReviewsConfig(file.reviews),
    console: resolveConsoleConfig(file.console),
    identity: resolveIdentityConfig(file.identity, file.identity_providers, issuer, (name, field) => secretFromEnv(env, name, field)),
    signals: resolveSignalsOrFail(file.signals, env),
    policy: Object.freeze({ ...(file.policy.file !== undefined ? { file: resolve(file.policy.file) } : {}), watch: file.policy.watch }),
    geo: Object.freeze({
      ...(file.geo.country_db !== undefined ? { countryDb: resolve(file.geo.country_db) } : {}),
      ...(file.geo.asn_db !== undefined ? { asnDb: resolve(file.geo.asn_db) } : {}),
      countryCsv: Object.freeze(file.geo.country_csv.map((f) => resolve(f))),
      asnCsv: Object.freeze(file.geo.asn_csv.map((f) => resolve(f))),
      networks: Object.freeze(
        file.geo.networks.map((n) =>
          Object.freeze({ cidr: n.cidr, ...(n.country ? { country: n.country } : {}), ...(n.asn !== undefined ? { asn: n.asn } : {}), ...(n.as_org ? { asOrg: n.as_org } : {}) }),
        ),
      ),
    }),
    ...(file.device_posture
      ? {
          devicePosture: Object.freeze({
            keyFile: resolve(file.device_posture.key_file),
            issuer: file.device_posture.issuer,
            audience: file.device_posture.audience ?? issuer,
            maxAgeSeconds: file.device_posture.max_age_seconds,
          }),
        }
      : {}),
  })
}

function resolveSignalsOrFail(file: ConfigFile['signals'], env: Readonly<Record<string, string | undefined>>): SignalsConfig {
  try {
    return resolveSignalsConfig(file, env)
  } catch (err) {
    throw new ConfigError((err as Error).message)
  }
}

/** Resource indicator (RFC 8707) of the example API that the `--dev` demo-cli may ask tokens for. */
export const DEV_EXAMPLE_API_RESOURCE = 'http://127.0.0.1:9090/'

/** Environment variables the `--dev` preset reads for its demo secrets. */
export const DEV_ENV = {
  password: 'DEVICEGATE_DEMO_PASSWORD',
  clientSecret: 'DEVICEGATE_DEMO_CLIENT_SECRET',
  /** The demo user's TOTP secret (RFC 6238; base32), the second factor the console asks of a role. */
  totpSecret: 'DEVICEGATE_DEMO_TOTP_SECRET',
} as const

/**
 * The `--dev` preset: SQLite in ./data, public client `demo-cli` (device_code + refresh_token;
 * read, write, offline_access), confidential client `demo-api` (client_credentials; may
 * introspect), user `demo`. With `totpSecret`, `demo` also has that TOTP second factor and the
 * console's `admin` role, so a person trying devicegate locally can open every console page and
 * try every action (the console asks a role holder for password and TOTP). Secrets come from
 * {@link DEV_ENV} or are generated; generated ones are returned so the CLI can show them once.
 */
export function devConfigFile(secrets: { password: string; clientSecret: string; totpSecret?: string }): {
  file: ConfigFile
  env: Record<string, string>
} {
  const env: Record<string, string> = {
    DEVICEGATE_DEV_DEMO_PASSWORD: secrets.password,
    DEVICEGATE_DEV_DEMO_CLIENT_SECRET: secrets.clientSecret,
    ...(secrets.totpSecret !== undefined ? { DEVICEGATE_DEV_DEMO_TOTP_SECRET: secrets.totpSecret } : {}),
  }
  const withTotp = secrets.totpSecret !== undefined
  const file = parseConfig({
    data_dir: './data',
    scopes: {
      read: 'Read your data',
      write: 'Change your data',
      offline_access: 'Stay signed in on the device (a refresh token)',
    },
    clients: [
      {
        client_id: 'demo-cli',
        name: 'Demo CLI',
        type: 'public',
        grant_types: [GRANT_TYPES.deviceCode, GRANT_TYPES.refreshToken],
        scopes: ['read', 'write', OFFLINE_ACCESS],
        default_scopes: ['read'],
        // The example API (examples/resource-api.ts) on its default port, as its header runs it.
        resources: [DEV_EXAMPLE_API_RESOURCE],
      },
      {
        client_id: 'demo-api',
        name: 'Demo API',
        type: 'confidential',
        client_secret_env: 'DEVICEGATE_DEV_DEMO_CLIENT_SECRET',
        grant_types: [GRANT_TYPES.clientCredentials],
        scopes: ['read'],
        introspection: true,
      },
    ],
    users: [
      {
        username: 'demo',
        display_name: 'Demo User',
        password_env: 'DEVICEGATE_DEV_DEMO_PASSWORD',
        ...(withTotp ? { mfa: { totp_secret_env: 'DEVICEGATE_DEV_DEMO_TOTP_SECRET' } } : {}),
      },
    ],
    // Only in --dev: the demo user may look around the whole console (a local trial, not a
    // deployment). The console asks a role holder for a second factor, hence only with TOTP.
    ...(withTotp ? { console: { roles: { admin: { users: ['demo'] } } } } : {}),
    // Receivers and webhooks of a development machine listen on localhost.
    signals: { allow_private_endpoints: true },
  })
  return { file, env }
}
