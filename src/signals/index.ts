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
import type { DpopNonces } from '../protocol/dpop-nonce.js'
import type { KeyRing } from '../protocol/keys.js'
import type { Store } from '../storage/store.js'
import { SignalDispatcher } from './dispatcher.js'
import { registerSignalsRoutes } from './http.js'
import { sealStoredSecrets, type SecretSealer } from './secrets.js'
import { StreamService } from './ssf/streams.js'
import { ssfStreamHandler } from './ssf/transmitter.js'
import { syncWebhookDestinations, webhookDestinationId, webhookHandler, type WebhookEndpoint } from './webhooks.js'

/** What {@link startSignals} needs. */
export interface SignalsOptions {
  config: Config
  store: Store
  keys: KeyRing
  /** Seals the receivers' push `authorization_header`s (the key encryption of signing keys). */
  secrets: SecretSealer
  clock: Clock
  random: Random
  logger: Logger
  events: GovernanceEvents
  revocation: RevocationService
  users: UserDirectory
  clients: ClientDirectory
  /** Set when DPoP proofs must carry a server nonce (RFC 9449 §9, `dpop.require_nonce`). */
  dpopNonces?: DpopNonces | undefined
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

/**
 * Domain events after which the outbox has new rows (revocations, anomalies, admin actions, access
 * reviews). A `token.refreshed` writes one only when the policy narrowed its scope (below): a plain
 * rotation writes none, so it does not wake the dispatcher (a pass is a few queries, once per
 * refresh under load).
 */
const WAKING_EVENTS = new Set(['token.revoked', 'refresh_token.reuse_detected', 'device_code.replayed', 'anomaly.raised', 'admin.action', 'policy.decided', 'review.round_opened', 'review.reminder_due', 'review.item_decided', 'review.round_closed'])

/** Starts the signals domain. The dispatcher runs when `signals.enabled`. */
export async function startSignals(options: SignalsOptions): Promise<Signals> {
  const { config, clock, logger, store } = options
  const s = config.signals
  const endpoints = new Map<string, WebhookEndpoint>(s.webhooks.map((w) => [webhookDestinationId(w.id), { ...w }]))
  await syncWebhookDestinations(store, endpoints.values(), clock.nowSeconds())
  // Push secrets a migration left in plaintext are sealed before anything is pushed.
  const sealing = await sealStoredSecrets(store, options.secrets)
  if (sealing.sealed > 0) logger.info({ streams: sealing.sealed }, 'sealed Shared Signals push authorization headers at rest')
  if (sealing.failed.length > 0) logger.warn({ streamIds: sealing.failed }, 'Shared Signals push authorization headers that do not open with the configured key-encryption keys')
  const endpointPolicy = { allowHttp: s.ssf.allowHttpPush, allowPrivate: s.allowPrivateEndpoints }
  const emailOf = (username: string) => options.users.get(username)?.email
  const dispatcher = new SignalDispatcher({
    store,
    clock,
    random: options.random,
    logger,
    handlers: [
      ssfStreamHandler({ issuer: config.issuer, keys: options.keys, clock, store, emailOf, pushTimeoutMs: s.delivery.timeoutMs, secrets: options.secrets, endpointPolicy }),
      webhookHandler({ endpoints, store, clock, events: options.events, pushTimeoutMs: s.delivery.timeoutMs, emailOf, endpointPolicy }),
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
          allowPrivateEndpoints: s.allowPrivateEndpoints,
          minVerificationIntervalSeconds: s.ssf.minVerificationIntervalSeconds,
          longPollSeconds: s.ssf.longPollSeconds,
        },
        refresh: () => dispatcher.fanOutSome(),
        wake,
        secrets: options.secrets,
      })
    : undefined

  // Outbox rows are written with the changes themselves (triggers; the refresh grant writes
  // token-claims-change in its rotating transaction): these events only say there is work.
  // Synchronous: an async listener would cost every event (one per poll and introspection) a promise and a turn.
  options.events.listen((event: DomainEvent) => {
    if (event.type === 'token.refreshed' && event.details?.narrowedByPolicy === true) wake()
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
            async findSubjects(by) {
              // A person devicegate knows: configured, in the people store, or still holding tokens.
              const known = async (id: string) =>
                options.users.get(id) !== undefined || (await store.findPerson(id)) !== undefined || (await store.countGrants({ subject: id, revoked: false })) > 0
              if ('issuer' in by) {
                if (by.issuer === config.issuer) return (await known(by.sub)) ? [by.sub] : []
                // The person's subject at an upstream identity provider (draft §3.2).
                const person = await store.findPersonByUpstream(by.issuer, by.sub)
                return person ? [person.id] : []
              }
              const people = await store.listPeople()
              if ('email' in by) {
                // Every account with the address: a security tool naming it wants each one signed out.
                const email = by.email.toLowerCase()
                const ids = new Set(users.filter((u) => u.email?.toLowerCase() === email).map((u) => u.username))
                for (const p of people) if (p.email?.toLowerCase() === email) ids.add(p.id)
                return [...ids]
              }
              if (await known(by.id)) return [by.id]
              const login = by.id.toLowerCase()
              return people.filter((p) => p.status !== 'deleted' && p.userName.toLowerCase() === login).map((p) => p.id)
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
      dpopNonces: options.dpopNonces,
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
