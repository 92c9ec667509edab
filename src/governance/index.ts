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
import { AuditLog, loadCheckpointKey } from './audit.js'
import { GovernanceEvents } from './events.js'
import { createLastUseTracker } from './inventory.js'
import { RevocationService } from './revocation.js'

/** What {@link startGovernance} needs. */
export interface GovernanceOptions {
  config: Config
  store: Store
  clock: Clock
  logger: Logger
  /** The configured clients and users; governance wraps them with administrator overrides. */
  clients: ClientDirectory
  users: UserDirectory
}

/** Running governance services. */
export interface Governance {
  events: GovernanceEvents
  revocation: RevocationService
  /** The audit log, unless disabled. */
  audit: AuditLog | undefined
  clients: ClientDirectory
  users: UserDirectory
  /** Routes and hooks for the HTTP app (admin API, metrics); called on the root instance. */
  httpPlugins: ((app: FastifyInstance) => Promise<void>)[]
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

  return {
    events,
    revocation,
    audit,
    clients: options.clients,
    users: options.users,
    httpPlugins: [],
    async close() {
      for (const t of timers) clearInterval(t)
      if (audit) {
        await audit.flush()
        await audit.checkpoint()
      }
    },
  }
}

export type { EventSink }
