/**
 * Signals composition: what leaves the server. Builds the outbox dispatcher with its destinations
 * (Shared Signals streams, webhooks), the Shared Signals transmitter, global token revocation and
 * their HTTP routes. `server.ts` calls {@link startSignals} once.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import type { DomainEvent } from '../core/events.js'
import type { ClientDirectory, UserDirectory } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import type { GovernanceEvents } from '../governance/events.js'
import type { RevocationService } from '../governance/revocation.js'
import type { KeyRing } from '../protocol/keys.js'
import type { Store } from '../storage/store.js'
import { SignalDispatcher } from './dispatcher.js'
import { registerSignalsRoutes } from './http.js'
import { StreamService } from './ssf/streams.js'
import { ssfStreamHandler } from './ssf/transmitter.js'
import { syncWebhookDestinations, webhookDestinationId, webhookHandler, type WebhookEndpoint } from './webhooks.js'

/** What {@link startSignals} needs. */
export interface SignalsOptions {
  config: Config
  store: Store
  keys: KeyRing
  clock: Clock
  random: Random
  logger: Logger
  events: GovernanceEvents
  revocation: RevocationService
  users: UserDirectory
  clients: ClientDirectory
}

/** The running signals domain. */
export interface Signals {
  dispatcher: SignalDispatcher
  streams: StreamService | undefined
  /** Routes for the HTTP app. */
  httpPlugin: (app: FastifyInstance) => Promise<void>
  /** Stops the dispatcher (deliveries in flight finish). */
  close(): Promise<void>
}

/** Domain events after which the outbox has new rows (revocations, anomalies, admin actions). */
const WAKING_EVENTS = new Set(['token.revoked', 'refresh_token.reuse_detected', 'device_code.replayed', 'anomaly.raised', 'admin.action', 'token.refreshed', 'policy.decided'])

/** Starts the signals domain. The dispatcher runs when `signals.enabled`. */
export async function startSignals(options: SignalsOptions): Promise<Signals> {
  const { config, clock, logger, store } = options
  const s = config.signals
  const endpoints = new Map<string, WebhookEndpoint>(s.webhooks.map((w) => [webhookDestinationId(w.id), { ...w }]))
  await syncWebhookDestinations(store, endpoints.values(), clock.nowSeconds())
  const emailOf = (username: string) => options.users.get(username)?.email
  const dispatcher = new SignalDispatcher({
    store,
    clock,
    random: options.random,
    logger,
    handlers: [
      ssfStreamHandler({ issuer: config.issuer, keys: options.keys, clock, store, emailOf, pushTimeoutMs: s.delivery.timeoutMs }),
      webhookHandler({ endpoints, store, clock, events: options.events, pushTimeoutMs: s.delivery.timeoutMs }),
    ],
    options: { pollIntervalMs: s.delivery.pollIntervalMs, baseBackoffMs: s.delivery.baseBackoffMs, maxBackoffMs: s.delivery.maxBackoffMs, pushTimeoutMs: s.delivery.timeoutMs },
  })
  const wake = () => dispatcher.wake()
  const streams = s.ssf.enabled
    ? new StreamService({
        store,
        clock,
        random: options.random,
        options: {
          issuer: config.issuer,
          maxStreamsPerReceiver: s.ssf.maxStreamsPerReceiver,
          allowHttpPush: s.ssf.allowHttpPush,
          minVerificationIntervalSeconds: s.ssf.minVerificationIntervalSeconds,
          longPollSeconds: s.ssf.longPollSeconds,
        },
        refresh: () => dispatcher.fanOutSome(),
        wake,
      })
    : undefined

  // CAEP token-claims-change: a refresh whose scope the policy narrowed (refresh-token grant).
  options.events.listen(async (event: DomainEvent) => {
    if (event.type === 'token.refreshed' && event.details?.narrowedByPolicy === true) {
      await store.appendSignalEvent({
        type: 'token.claims_changed',
        occurredAt: clock.nowSeconds(),
        ref: event.grantId ?? null,
        target: null,
        payload: { claims: { scope: event.details.scope }, previousScope: event.details.previousScope ?? null },
      })
    }
    if (WAKING_EVENTS.has(event.type)) wake()
  })

  const users = config.users
  const httpPlugin = (app: FastifyInstance) =>
    registerSignalsRoutes(app, {
      issuer: config.issuer,
      store: options.store,
      clock,
      clients: options.clients,
      signals: store,
      streams,
      ssfScope: s.ssf.scope,
      globalRevocation: s.globalRevocation.enabled
        ? {
            scope: s.globalRevocation.scope,
            issuer: config.issuer,
            events: options.events,
            async findUser(by) {
              if (by.email !== undefined) {
                const email = by.email.toLowerCase()
                return users.find((u) => u.email?.toLowerCase() === email)?.username
              }
              const username = by.username!
              if (options.users.get(username) !== undefined) return username
              // A user no longer configured may still hold tokens.
              return (await options.store.countGrants({ subject: username, revoked: false })) > 0 ? username : undefined
            },
            async revokeUser(subject, actor, ip) {
              const result = await options.revocation.revoke({ kind: 'user', subject }, { actor, ip, reason: 'global_token_revocation' })
              return result.grants
            },
          }
        : undefined,
      adminScope: config.governance.admin.enabled ? config.governance.admin.scope : undefined,
      webhookIds: s.webhooks.map((w) => w.id),
      events: options.events,
      wake,
    })

  if (s.enabled) dispatcher.start()
  const purge = setInterval(() => {
    store.purgeSignals(clock.nowSeconds() - s.retentionDays * 86_400).catch((err: unknown) => logger.warn({ err }, 'signals purge failed'))
  }, 3_600_000)
  purge.unref()
  return {
    dispatcher,
    streams,
    httpPlugin,
    async close() {
      clearInterval(purge)
      await dispatcher.stop()
    },
  }
}
