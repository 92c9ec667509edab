/**
 * Composition root: the only place that wires config → store → protocol → http.
 */
import type { FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import { constants as fsConstants } from 'node:fs'
import { access } from 'node:fs/promises'
import { loadKek } from './config/kek.js'
import { ConfigError, type Config } from './config/load.js'
import { reviewsAdminRoutes } from './reviews/admin-routes.js'
import { startReviews, type ReviewService } from './reviews/index.js'
import { startGovernance, type Governance } from './governance/index.js'
import { buildApp } from './http/app.js'
import { createClientDirectory, SecretVerifier } from './protocol/clients.js'
import type { ProtocolDeps } from './protocol/deps.js'
import { DPOP_ALGS } from './protocol/dpop.js'
import { DpopNonces } from './protocol/dpop-nonce.js'
import type { KeyEncryption } from './protocol/key-encryption.js'
import { KeyRing } from './protocol/keys.js'
import { buildMetadata } from './protocol/metadata.js'
import { buildOpenIdConfiguration } from './protocol/oidc.js'
import { GLOBAL_REVOCATION_PATH } from './signals/global-revocation.js'
import { startSignals, type Signals } from './signals/index.js'
import { SUPPORTED_GRANT_TYPES } from './protocol/token.js'
import { openStore } from './storage/index.js'
import type { Store } from './storage/store.js'
import { systemClock, systemRandom } from './system.js'
import { Identity } from './identity/index.js'
import { isRegisteredDevice } from './governance/devices.js'
import { loadMetricsToken } from './governance/metrics.js'
import { createMaxmindGeoLookup, type GeoLookup } from './policy/geo.js'
import { openGeoLookup } from './policy/geo-csv.js'
import { loadPolicyFile, PolicyHolder } from './policy/holder.js'
import { loadPostureVerifier } from './policy/posture.js'
import { PolicyService } from './policy/service.js'
import { registerConsole, type ConsoleExtension, type ConsoleSignIn } from './console/index.js'
import { reviewInboxExtension } from './console/pages/reviews.js'
import { CONSOLE_PAGES } from './console/pages/index.js'

/** Paths pino redacts wherever they appear: credentials, tokens, codes, cookies. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers.dpop',
  'res.headers["set-cookie"]',
  '*.access_token',
  '*.refresh_token',
  '*.device_code',
  '*.user_code',
  '*.client_secret',
  '*.password',
  '*.token',
  // Signals: a receiver's push credential (SSF 1.0 §8.1.1 `authorization_header`, in a stream
  // request body or the stream's config), webhook secrets and signatures, and SET contents (RFC
  // 8935 push bodies, RFC 8936 poll `sets`, outbox delivery payloads), wherever they are logged.
  'authorization_header',
  '*.authorization_header',
  '*.*.authorization_header',
  '*.authorizationHeader',
  '*.authorization',
  'secret',
  '*.secret',
  'req.headers["webhook-signature"]',
  '*["webhook-signature"]',
  'sets',
  '*.sets',
  '*.set',
  'payload',
  '*.payload',
]

/**
 * Bytes of log lines gathered before one write to stdout (sonic-boom `minLength`; must stay below
 * its `maxWrite`, 16 KiB). 12 KiB rather than 4 KiB: polling 84 → 78 µs and introspection 103 → 100
 * µs of CPU per request (measured in bench/README.md, third session).
 */
export const LOG_BUFFER_BYTES = 12 * 1024

/** Longest time a log line waits in the buffer before it is written anyway, in milliseconds. */
export const LOG_FLUSH_MS = 100

/**
 * stdout as a buffered pino destination: lines are gathered and written once `LOG_BUFFER_BYTES`
 * (12 KiB) are waiting or `LOG_FLUSH_MS` (100 ms) have passed, so a busy server makes one `write`
 * system call for some sixty lines instead of one each (with the access line on every request,
 * a write per line was about a twentieth of a request's CPU). Lines never block a request on a
 * write.
 *
 * What a crash can lose: on `exit` (a normal stop, SIGTERM/SIGINT through `serve`, an uncaught
 * exception) pending lines are written synchronously; on `kill -9` or a native crash the lines
 * of the last 100 ms are lost, at most 12 KiB of them plus any queued behind a write in progress.
 * Logs are not a durability promise: the audit log is.
 */
function bufferedStdout(): pino.DestinationStream {
  // sonic-boom's own timer (unref'd, cleared on close); idle, it writes zero bytes each period.
  return pino.destination({ dest: 1, sync: false, minLength: LOG_BUFFER_BYTES, periodicFlush: LOG_FLUSH_MS })
}

/**
 * Creates the pino logger with secrets redacted and query strings (which may carry a user code)
 * dropped. Writes to buffered stdout (see {@link bufferedStdout}: on `kill -9` the last 100 ms
 * of lines, at most 12 KiB, are lost) unless given a `destination`.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        req: (req: { method: string; url: string; clientIp?: string }) => ({
          method: req.method,
          url: req.url.split('?')[0],
          clientIp: req.clientIp,
        }),
      },
    },
    (destination ?? (level === 'silent' ? pino.destination({ dest: 1, sync: false }) : bufferedStdout())) as never,
  )
}

/** A built, not yet listening, devicegate server. */
export interface DevicegateServer {
  app: FastifyInstance
  store: Store
  keys: KeyRing
  config: Config
  /** Conditional approval: the policy in force (reloadable) and the service that applies it. */
  policy: PolicyService
  policyHolder: PolicyHolder
  /** Audit log, detectors, revocation, admin API (governance). */
  governance: Governance
  /** Access-review campaigns (service for the console's reviewer inbox) and the compliance report. */
  reviews: ReviewService
  /** People and groups, upstream sign-in, SCIM, Shared Signals. */
  identity: Identity
  /** Outbox, Shared Signals transmitter, webhooks, global revocation. */
  signals: Signals
  /**
   * Stops background work, closes the HTTP server (new requests get 503; requests in flight get
   * until `listen.shutdown_deadline_seconds`, then their connections are closed) and the store.
   */
  close(): Promise<void>
}

/** Options for {@link createServer}. */
export interface CreateServerOptions {
  logger?: Logger
  /** Opened store to use instead of `config.storageUrl` (tests). */
  store?: Store
  clock?: ProtocolDeps['clock']
  /** IP → country/ASN lookup to use instead of the configured databases (tests). */
  geo?: GeoLookup
  /** Upstream sign-in methods of the governance console (e.g. OpenID Connect, src/identity/). */
  consoleSignIns?: readonly ConsoleSignIn[]
  /** Pages other domains add to the governance console, with their navigation (e.g. the access-review inbox). */
  consoleExtensions?: readonly ConsoleExtension[]
  /** Replaces `fetch` towards upstream identity providers and Shared Signals transmitters (tests). */
  fetch?: typeof fetch
  /** Seals private signing keys instead of the configured KEK (a KMS, or tests). */
  keyEncryption?: KeyEncryption
}

/**
 * Loads the configured key-encryption key for private signing keys, warning loudly
 * when it is the generated one beside the database rather than a configured file or variable.
 * @throws {ConfigError} for a KEK file readable by group or others, or a malformed KEK.
 */
export async function openKeyEncryption(config: Config, logger: Logger): Promise<KeyEncryption> {
  const kek = await loadKek(config)
  if (kek.source.startsWith('generated'))
    logger.warn(
      { kekFile: config.signingKek.generatedKekFile, created: kek.generatedFile !== undefined },
      `signing keys are sealed with a generated key-encryption key stored beside the database (${config.signingKek.generatedKekFile}); not for production: set signing.kek_file or ${config.signingKek.kekEnv}`,
    )
  return kek.encryption
}

/**
 * Checks everything `serve` reads before it opens the store, without writing anything or opening
 * the database: the key-encryption key (file mode and format, or the variable),
 * the audit checkpoint key, the policy file, the IP databases, the device-posture key, and that
 * an existing SQLite file is readable and writable. `devicegate check-config` runs it after
 * resolving the configuration (which already fails for a missing `*_env` variable).
 * @returns human-readable notes (e.g. a KEK that will be generated on first start).
 * @throws {ConfigError} naming the setting and the problem, as `serve` would fail.
 */
export async function checkStartup(config: Config, env: Readonly<Record<string, string | undefined>> = process.env): Promise<string[]> {
  const notes: string[] = []
  const kek = await loadKek(config, env, { generate: false })
  if (kek.source.startsWith('generated')) notes.push(`signing keys: sealed with a ${kek.source}; set signing.kek_file or ${config.signingKek.kekEnv} in production`)
  const fail = (setting: string, err: unknown): never => {
    throw new ConfigError(`${setting}: ${(err as Error).message}`)
  }
  const audit = config.governance.audit
  if (config.governance.audit.enabled) {
    if (audit.checkpointKeyEnv !== undefined) {
      const value = env[audit.checkpointKeyEnv]
      if (value === undefined || value.length < 32)
        throw new ConfigError(`governance.audit.checkpoint_key_env: environment variable ${audit.checkpointKeyEnv} must hold at least 32 characters`)
    } else {
      await access(audit.checkpointKeyFile, fsConstants.R_OK).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') fail('governance.audit.checkpoint_key_file', err)
        notes.push(`audit: checkpoint key ${audit.checkpointKeyFile} will be created on first start`)
      })
    }
  }
  if (config.governance.metrics.enabled) await loadMetricsToken(config.governance.metrics, env)
  if (config.policy?.file !== undefined) await loadPolicyFile(config.policy.file).catch((err: unknown) => fail('policy.file', err))
  if (config.geo?.countryDb || config.geo?.asnDb)
    await createMaxmindGeoLookup({ countryDb: config.geo.countryDb, asnDb: config.geo.asnDb }).catch((err: unknown) => fail('geo', err))
  const csvFiles = [
    ...(config.geo?.countryCsv ?? []).map((file, i) => ({ setting: `geo.country_csv[${i}]`, file })),
    ...(config.geo?.asnCsv ?? []).map((file, i) => ({ setting: `geo.asn_csv[${i}]`, file })),
  ]
  for (const { setting, file } of csvFiles)
    await access(file, fsConstants.R_OK).catch((err: NodeJS.ErrnoException) => fail(setting, new Error(`cannot read ${file} (${err.code})`)))
  if (config.devicePosture) await loadPostureVerifier(config.devicePosture).catch((err: unknown) => fail('device_posture.key_file', err))
  if (config.storageUrl.startsWith('sqlite:')) {
    const file = config.storageUrl.slice('sqlite:'.length)
    await access(file, fsConstants.R_OK | fsConstants.W_OK).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') fail('storage.url', new Error(`cannot read and write ${file} (${err.code})`))
    })
  }
  return notes
}

/** How often expired sessions, counters and DPoP jtis are purged, in milliseconds. */
const PURGE_EVERY_MS = 60_000

/**
 * Builds the server from a resolved configuration: opens and migrates the store, loads or
 * creates signing keys, and builds the HTTP app.
 * @throws {StoreUnavailableError} when the database cannot be reached.
 */
export async function createServer(config: Config, options: CreateServerOptions = {}): Promise<DevicegateServer> {
  const logger = options.logger ?? createLogger(config.logLevel)
  const clock = options.clock ?? systemClock
  const storeOptions = { ...config.storagePool, ...(config.storageEphemeral ? { ephemeral: config.storageEphemeral } : {}) }
  const store = options.store ?? (await openStore(config.storageUrl, storeOptions))
  // One key encryption seals private signing keys and the receivers' push secrets (signals).
  const keyEncryption = options.keyEncryption ?? (await openKeyEncryption(config, logger))
  const keys = await KeyRing.open(store, config.signingAlg, clock, keyEncryption)
  // Conditional approval: policy file (or the built-in baseline), IP database, posture key.
  const policyHolder = await PolicyHolder.open(config.policy?.file, { watch: config.policy?.watch ?? true, logger })
  const geo = options.geo ?? (await openGeoLookup(config.geo))
  // People are seeded before governance, whose start-up orphan sweep reads them.
  const identity = await Identity.open({ config, store, clock, logger, ...(options.fetch ? { fetch: options.fetch as never } : {}) })
  const governance = await startGovernance({
    config,
    store,
    clock,
    logger,
    clients: createClientDirectory(config.clients),
    users: identity.directory,
    userStatus: identity.userStatus,
    people: identity.people,
  })
  identity.bind(governance)
  const clients = governance.clients
  const policy = new PolicyService({
    source: policyHolder,
    geo,
    posture: config.devicePosture ? await loadPostureVerifier(config.devicePosture) : undefined,
    // A device a Shared Signals transmitter reported not compliant no longer counts as registered.
    devices: { isRegisteredDevice: async (jkt) => (await isRegisteredDevice(store, jkt)) && (await store.findDeviceCompliance(jkt))?.status !== 'not-compliant' },
    users: governance.users,
    clients,
  })
  const protocol: ProtocolDeps = {
    issuer: config.issuer,
    store,
    clock,
    random: systemRandom,
    clients,
    users: governance.users,
    // The dummy hash for unknown clients costs what the configured secrets cost (no timing oracle).
    secrets: new SecretVerifier(config.clients.find((c) => c.secretHash !== undefined)?.secretHash),
    keys,
    policy,
    events: governance.events,
    ...(config.dpop.requireNonce ? { dpopNonces: await DpopNonces.open(store, clock, systemRandom) } : {}),
  }
  const signals = await startSignals({ config, store, keys, secrets: keyEncryption, clock, random: systemRandom, logger, events: governance.events, revocation: governance.revocation, users: governance.users, clients, dpopNonces: protocol.dpopNonces })
  // Access reviews and the compliance report: admin API routes and the review scheduler.
  const reviews = startReviews({
    config,
    store,
    clock,
    random: systemRandom,
    clients,
    users: governance.users,
    groupMembers: (group) => identity.directory.membersOf(group),
    revocation: governance.revocation,
    events: governance.events,
    onError: (err) => logger.warn({ err }, 'access review scheduler failed'),
  })
  governance.adminExtensions.push(
    reviewsAdminRoutes({
      reviews: reviews.service,
      store,
      clock,
      evidence: () => ({ config, policy: policyHolder.current(), store, clock, reviews: reviews.service }),
    }),
  )
  const scopes = [...new Set(config.clients.flatMap((c) => c.scopes))]
  // Governance console at /console, with the reviewer inbox of the access reviews.
  const consoleExtensions = [reviewInboxExtension(reviews.service), ...(options.consoleExtensions ?? [])]
  const consolePlugins = config.console.enabled
    ? [
        (app: FastifyInstance) =>
          registerConsole(
            app,
            {
              config: config.console,
              store,
              clock,
              random: systemRandom,
              issuerOrigin: new URL(config.issuer).origin,
              users: governance.users,
              clients,
              people: identity.directory,
              configuredClients: config.clients,
              events: governance.events,
              revocation: governance.revocation,
              principals: governance.principals,
              overrides: governance.overrides,
              audit: governance.audit,
              policy,
              policyHolder,
              signIns: [...(options.consoleSignIns ?? []), ...identity.consoleSignIns()],
              extraNav: consoleExtensions.flatMap((e) => e.nav),
              logger,
            },
            [...CONSOLE_PAGES, ...consoleExtensions.flatMap((e) => e.pages)],
          ),
      ]
    : []
  const metadata = {
    ...buildMetadata({ issuer: config.issuer, grantTypes: SUPPORTED_GRANT_TYPES, scopes, signingAlg: config.signingAlg, dpopAlgs: DPOP_ALGS }),
    // draft-parecki-oauth-global-token-revocation-06 §6: where the endpoint is and how to authenticate (IANA access token types).
    ...(config.signals.globalRevocation.enabled
      ? { global_token_revocation_endpoint: config.issuer + GLOBAL_REVOCATION_PATH, global_token_revocation_endpoint_auth_methods_supported: ['Bearer', 'DPoP'] }
      : {}),
  }
  const app = await buildApp({
    protocol,
    web: {
      store,
      issuerOrigin: new URL(config.issuer).origin,
      clock,
      random: systemRandom,
      clients,
      users: governance.users,
      events: governance.events,
      scopeDescriptions: config.scopeDescriptions,
      timeZone: config.verification.timeZone,
      codeEntryMaxFailures: config.verification.maxFailedEntries,
      codeEntryWindowSeconds: config.verification.windowSeconds,
      codeEntryLimits: {
        signedInSourceMaxFailures: config.verification.signedInSourceMaxFailedEntries,
        serverMaxFailures: config.verification.serverMaxFailedEntries,
        ipv6PrefixLength: config.verification.ipv6PrefixLength,
      },
      sessionTtlSeconds: config.verification.sessionTtlSeconds,
      reviewClaimSeconds: config.verification.reviewClaimSeconds,
      policy,
      totpIssuerLabel: new URL(config.issuer).host,
      identity: identity.pageOptions(),
    },
    metadata,
    openIdConfiguration: buildOpenIdConfiguration(metadata, { issuer: config.issuer, signingAlg: config.signingAlg }),
    trustedProxies: config.trustedProxies,
    plugins: [...governance.httpPlugins, signals.httpPlugin, ...consolePlugins, ...identity.httpPlugins],
    pagePlugins: identity.pagePlugins,
    logger,
    healthCheck: async () => {
      await store.readCounter('healthz', 60, clock.nowSeconds())
    },
    requestTimeoutSeconds: config.http.requestTimeoutSeconds,
  })
  const purge = setInterval(() => {
    store.purgeExpired(clock.nowSeconds()).catch((err: unknown) => logger.warn({ err }, 'purge failed'))
  }, PURGE_EVERY_MS)
  purge.unref()
  return {
    app,
    store,
    keys,
    config,
    policy,
    policyHolder,
    governance,
    reviews: reviews.service,
    identity,
    signals,
    async close() {
      clearInterval(purge)
      reviews.close()
      identity.close()
      policyHolder.close()
      // Requests in flight (a slow upload) may finish until the shutdown deadline; then their
      // connections are closed, so closing never waits on a client (`listen.shutdown_deadline_seconds`).
      const deadline = setTimeout(() => {
        logger.warn({ deadlineSeconds: config.http.shutdownDeadlineSeconds }, 'shutdown deadline reached: closing connections in flight')
        app.server.closeAllConnections()
      }, config.http.shutdownDeadlineSeconds * 1000)
      deadline.unref()
      try {
        await app.close()
      } finally {
        clearTimeout(deadline)
      }
      await signals.close()
      await governance.close()
      if (!options.store) await store.close()
      logger.flush()
    },
  }
}

export type { Config } from './config/load.js'
export { resolveConfig, loadConfigFile, parseConfig, devConfigFile } from './config/load.js'
