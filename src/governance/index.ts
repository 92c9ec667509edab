/**
 * Governance composition: builds the audit log, the event sink with its listeners, and the
 * background work (checkpoints), from configuration. `server.ts` calls {@link startGovernance}
 * once; everything governance needs at run time hangs off the returned object.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import type { EventSink } from '../core/events.js'
import type { ClientDirectory, UserDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import type { Store } from '../storage/store.js'
import { systemRandom } from '../system.js'
import { registerAdminApi, type AdminApiExtension } from './admin-api.js'
import { AnomalyEngine } from './anomalies.js'
import { AuditLog, loadCheckpointKey } from './audit.js'
import { GovernanceEvents } from './events.js'
import { createLastUseTracker } from './inventory.js'
import { loadMetricsToken, Metrics } from './metrics.js'
import { governedClientDirectory, governedUserDirectory, OVERRIDE_REFRESH_SECONDS, PrincipalAdmin, PrincipalOverrides, type UserStatusPort } from './principals.js'
import { RevocationService } from './revocation.js'
import type { PeopleService } from '../identity/people.js'

/** What {@link startGovernance} needs. */
export interface GovernanceOptions {
  config: Config
  store: Store
  clock: Clock
  logger: Logger
  /** The configured clients and users; governance wraps them with administrator overrides. */
  clients: ClientDirectory
  users: UserDirectory
  /** Stored people: user disable / enable / delete change them instead of overrides. */
  userStatus?: UserStatusPort
  /** Stored people for the admin API's user routes. */
  people?: PeopleService
}

/** Running governance services. */
export interface Governance {
  events: GovernanceEvents
  revocation: RevocationService
  anomalies: AnomalyEngine
  overrides: PrincipalOverrides
  principals: PrincipalAdmin
  /** Prometheus metrics, unless disabled. */
  metrics: Metrics | undefined
  /** Base URL of the metrics listener (`governance.metrics.listen`), when it has its own. */
  metricsUrl?: string
  /** The audit log, unless disabled. */
  audit: AuditLog | undefined
  clients: ClientDirectory
  users: UserDirectory
  /** Routes and hooks for the HTTP app (admin API, metrics); called on the root instance. */
  httpPlugins: ((app: FastifyInstance) => Promise<void>)[]
  /** Routes other domains add to the admin API; fill before the HTTP app is built. */
  adminExtensions: AdminApiExtension[]
  /** Writes what is pending (audit batch, a last checkpoint) and stops timers. */
  close(): Promise<void>
}

/** Starts governance for a server. @throws {Error} when the checkpoint key cannot be loaded. */
export async function startGovernance(options: GovernanceOptions): Promise<Governance> {
  const { config, store, clock, logger } = options
  const g = config.governance
  const audit = g.audit.enabled
    ? new AuditLog({
        store,
        clock,
        checkpointKey: await loadCheckpointKey({ envName: g.audit.checkpointKeyEnv, keyFile: g.audit.checkpointKeyFile }),
        checkpointFile: g.audit.checkpointFile,
        onError: (err) => logger.error({ err }, 'audit log write failed'),
      })
    : undefined
  const events = new GovernanceEvents(audit, (err, event) => logger.error({ err, eventType: event.type }, 'governance listener failed'))
  const timers: NodeJS.Timeout[] = []
  const every = (seconds: number, fn: () => Promise<unknown>) => {
    const t = setInterval(() => {
      fn().catch((err: unknown) => logger.warn({ err }, 'governance background task failed'))
    }, seconds * 1000)
    t.unref()
    timers.push(t)
  }
  if (audit) every(g.audit.checkpointEverySeconds, () => audit.checkpoint())
  const revocation = new RevocationService(store, clock, events)
  events.listen(createLastUseTracker(store, clock, g.lastUseEverySeconds))
  const anomalies = new AnomalyEngine({ store, clock, random: systemRandom, config: g.anomalies, events, revocation })
  events.listen(anomalies.listener)
  if (g.anomalies.dormantGrant.enabled) every(g.anomalies.dormantGrant.sweepEverySeconds, () => anomalies.sweepDormant())

  const overrides = new PrincipalOverrides(store)
  await overrides.refresh()
  every(OVERRIDE_REFRESH_SECONDS, () => overrides.refresh())
  const clients = governedClientDirectory(options.clients, overrides)
  const users = governedUserDirectory(options.users, overrides)
  const principals = new PrincipalAdmin(overrides, anomalies, events, clock, {
    user: (id) => options.users.get(id) !== undefined,
    client: (id) => options.clients.get(id) !== undefined,
  }, options.userStatus)
  await revokeOrphansAtStartUp(store, anomalies, clients, users)
  const metrics = g.metrics.enabled ? new Metrics(store, clock) : undefined
  if (metrics) events.listen(metrics.listener)
  const httpPlugins: ((app: FastifyInstance) => Promise<void>)[] = []
  const metricsToken = metrics ? await loadMetricsToken(g.metrics) : undefined
  if (metrics) httpPlugins.push((app) => metrics.register(app, { ownListener: g.metrics.listen !== undefined, bearerToken: metricsToken }))
  const metricsListener = metrics && g.metrics.listen ? await metrics.listen(g.metrics.listen.host, g.metrics.listen.port, metricsToken) : undefined
  const adminExtensions: AdminApiExtension[] = []
  if (g.admin.enabled)
    httpPlugins.push((app) => registerAdminApi(app, { store, clock, clients, events, revocation, principals, anomalies, scope: g.admin.scope, extensions: adminExtensions, ...(options.people ? { people: options.people } : {}) }))

  return {
    events,
    revocation,
    anomalies,
    overrides,
    principals,
    audit,
    clients,
    users,
    metrics,
    ...(metricsListener ? { metricsUrl: metricsListener.url } : {}),
    httpPlugins,
    adminExtensions,
    async close() {
      for (const t of timers) clearInterval(t)
      await metricsListener?.close()
      if (audit) {
        await audit.flush()
        await audit.checkpoint()
      }
    },
  }
}

/**
 * Start-up check for configuration changes: live families whose user or client is gone from the
 * configuration, disabled there, or disabled/deleted by an administrator are revoked now
 * (`orphaned_token`), so a removal made by editing the configuration takes effect at start-up.
 */
async function revokeOrphansAtStartUp(store: Store, anomalies: AnomalyEngine, clients: ClientDirectory, users: UserDirectory): Promise<void> {
  const owners = await store.listLiveGrantOwners()
  for (const subject of owners.subjects) {
    const user = users.get(subject)
    if (user === undefined) await anomalies.orphan('user', subject, 'removed_from_config', 'system')
    else if (user.disabled) await anomalies.orphan('user', subject, 'disabled', 'system')
  }
  for (const clientId of owners.clientIds) {
    const client = clients.get(clientId)
    if (client === undefined) await anomalies.orphan('client', clientId, 'removed_from_config', 'system')
    else if (client.disabled) await anomalies.orphan('client', clientId, 'disabled', 'system')
  }
}

export type { EventSink }
