/**
 * Composition root: the only place that wires config → store → protocol → http.
 */
import type { FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import type { Config } from './config/load.js'
import { reviewsAdminRoutes } from './reviews/admin-routes.js'
import { startReviews, type ReviewService } from './reviews/index.js'
import { startGovernance, type Governance } from './governance/index.js'
import { buildApp } from './http/app.js'
import { createClientDirectory, SecretVerifier } from './protocol/clients.js'
import type { ProtocolDeps } from './protocol/deps.js'
import { DPOP_ALGS } from './protocol/dpop.js'
import { DpopNonces } from './protocol/dpop-nonce.js'
import { KeyRing } from './protocol/keys.js'
import { buildMetadata } from './protocol/metadata.js'
import { SUPPORTED_GRANT_TYPES } from './protocol/token.js'
import { openStore } from './storage/index.js'
import type { Store } from './storage/store.js'
import { systemClock, systemRandom } from './system.js'
import { Identity } from './identity/index.js'
import { isRegisteredDevice } from './governance/devices.js'
import { createMaxmindGeoLookup, createStaticGeoLookup, NO_GEO, type GeoLookup } from './policy/geo.js'
import { PolicyHolder } from './policy/holder.js'
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
]

/** Creates the pino logger with secrets redacted and query strings (which may carry a user code) dropped. */
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
    // Asynchronous writes to stdout: lines written while a write is in flight go out together, so
    // logging never blocks a request on a write system call. `close()` flushes.
    (destination ?? pino.destination({ dest: 1, sync: false })) as never,
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
  const keys = await KeyRing.open(store, config.signingAlg, clock)
  // Conditional approval: policy file (or the built-in baseline), IP database, posture key.
  const policyHolder = await PolicyHolder.open(config.policy?.file, { watch: config.policy?.watch ?? true, logger })
  const mmdb =
    config.geo?.countryDb || config.geo?.asnDb ? await createMaxmindGeoLookup({ countryDb: config.geo.countryDb, asnDb: config.geo.asnDb }) : NO_GEO
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
    geo: options.geo ?? createStaticGeoLookup(config.geo?.networks ?? [], mmdb),
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
  // Access reviews and the compliance report: admin API routes and the review scheduler.
  const reviews = startReviews({
    config,
    store,
    clock,
    random: systemRandom,
    clients,
    users: governance.users,
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
              configuredUsers: config.users,
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
    metadata: buildMetadata({ issuer: config.issuer, grantTypes: SUPPORTED_GRANT_TYPES, scopes, signingAlg: config.signingAlg, dpopAlgs: DPOP_ALGS }),
    trustedProxies: config.trustedProxies,
    plugins: [...governance.httpPlugins, ...consolePlugins, ...identity.httpPlugins],
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
      await governance.close()
      if (!options.store) await store.close()
      logger.flush()
    },
  }
}

export type { Config } from './config/load.js'
export { resolveConfig, loadConfigFile, parseConfig, devConfigFile } from './config/load.js'
