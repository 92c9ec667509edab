/**
 * Identity composition: people and groups in the database, upstream OpenID Connect
 * sign-in, SCIM 2.0 provisioning and the Shared Signals receiver. `server.ts` opens it before
 * governance (people must be seeded before governance's start-up orphan sweep reads them) and
 * binds it to governance afterwards (revocation and audit).
 */
import { pino, type Logger } from 'pino'
import { UNHASHED_SECRET, type Config } from '../config/load.js'
import type { DomainEvent, EventSink } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import type { Governance } from '../governance/index.js'
import type { UserStatusPort } from '../governance/principals.js'
import type { PeopleStore, Store } from '../storage/store.js'
import { PeopleDirectory, PeopleError, PeopleService, PEOPLE_REFRESH_SECONDS, type PersonRevoker, type SeedUser } from './people.js'
import { UpstreamError, UpstreamSignIn } from './upstream.js'
import { beginUpstreamSignIn, registerUpstreamRoutes, sendUpstreamFailure } from './upstream-routes.js'
import type { ConsoleSignIn } from '../console/index.js'
import { sessionBridgeSignIn } from '../console/upstream-sign-in.js'
import { ScimService } from './scim.js'
import { registerScimRoutes, SCIM_PREFIX } from './scim-routes.js'
import { SharedSignalsReceiver } from './shared-signals.js'
import { registerSharedSignalsRoutes } from './shared-signals-routes.js'
import type { FastifyInstance } from 'fastify'
import type { CustomFetch } from 'openid-client'
import { systemClock } from '../system.js'
import type { IdentityPageOptions } from '../web/pages/kit.js'
import { VERIFICATION_SERVICE } from '../web/verification.js'
import type { VerificationService } from '../verification/service.js'

/** What {@link Identity.open} needs. */
export interface IdentityOptions {
  config: Config
  store: Store
  clock: Clock
  logger: Logger
  /** Replaces `fetch` towards upstream providers and transmitters (tests). */
  fetch?: CustomFetch & typeof fetch
}

/** The governance services identity acts through; bound after governance starts (`clients` authenticates SCIM callers). */
export type IdentityGovernance = Pick<Governance, 'events' | 'revocation' | 'anomalies'> & Partial<Pick<Governance, 'clients'>>

/** Running identity services. */
export class Identity {
  readonly store: PeopleStore
  readonly directory: PeopleDirectory
  readonly people: PeopleService
  /** Shared Signals receiver; undefined when no transmitter is configured. */
  readonly signals: SharedSignalsReceiver | undefined
  /** Upstream OpenID Connect sign-in; undefined when no provider is configured. */
  readonly upstream: UpstreamSignIn | undefined
  readonly #timers: NodeJS.Timeout[] = []
  #governance: IdentityGovernance | undefined

  private constructor(readonly options: IdentityOptions) {
    this.store = options.store
    const { config } = options
    const totpSecrets = new Map(config.users.flatMap((u) => (u.totpSecret === undefined ? [] : [[u.username, u.totpSecret] as const])))
    this.directory = new PeopleDirectory(this.store, { localPasswords: config.identity.localPasswords, totpSecrets })
    const events: EventSink = { record: (event: DomainEvent) => this.#bound().events.record(event) }
    const revoker: PersonRevoker = {
      orphan: (id, reason, actor) => this.#bound().anomalies.orphan('user', id, reason, actor),
      revoke: async (id, reason, actor, ip) => (await this.#bound().revocation.revoke({ kind: 'user', subject: id }, { actor, reason, ip, listLimit: 0 })).grants,
    }
    this.people = new PeopleService(this.directory, this.store, revoker, events, options.clock)
    this.#events = events
    const ssf = config.identity.sharedSignals
    this.signals =
      ssf.transmitters.length === 0
        ? undefined
        : new SharedSignalsReceiver({
            transmitters: ssf.transmitters,
            maxAgeSeconds: ssf.maxAgeSeconds,
            people: this.people,
            store: this.store,
            clock: options.clock,
            events,
            ...(options.fetch ? { fetch: options.fetch as typeof fetch } : {}),
          })
    this.upstream =
      config.identity.providers.length === 0
        ? undefined
        : new UpstreamSignIn({
            providers: config.identity.providers,
            people: this.people,
            store: this.store,
            clock: options.clock,
            issuer: config.issuer,
            loginTtlSeconds: config.identity.upstreamLoginTtlSeconds,
            ...(options.fetch ? { fetch: options.fetch } : {}),
          })
  }

  readonly #events: EventSink

  /** Routes on the root instance: SCIM 2.0 at /scim/v2 when enabled. */
  readonly httpPlugins: ((app: FastifyInstance) => Promise<void>)[] = [
    async (app) => {
      const { config, store, clock } = this.options
      const clients = this.#bound().clients
      if (!config.identity.scim.enabled || clients === undefined) return
      const scim = new ScimService({ people: this.people, store: this.store, clock, events: this.#events, baseUrl: `${config.issuer}${SCIM_PREFIX}` })
      await registerScimRoutes(app, { scim, store, clients, clock, scope: config.identity.scim.scope })
    },
    async (app) => {
      if (this.signals !== undefined) await registerSharedSignalsRoutes(app, this.signals)
    },
  ]

  /**
   * Routes beside the verification pages (cookies, page security headers): upstream sign-in,
   * which signs people in through the pages' verification service (registered before these).
   */
  readonly pagePlugins: ((pages: FastifyInstance) => Promise<void>)[] = [
    async (pages) => {
      if (this.upstream === undefined) return
      await registerUpstreamRoutes(pages, {
        upstream: this.upstream,
        // The verification pages registered first on this instance: one sign-in path for both.
        verification: pages.getDecorator<VerificationService>(VERIFICATION_SERVICE),
        users: this.directory,
        clock: this.options.clock,
        events: this.#events,
      })
    },
  ]

  #bound(): IdentityGovernance {
    if (this.#governance === undefined) throw new TypeError('identity is not bound to governance yet')
    return this.#governance
  }

  /**
   * Opens identity: seeds the configured users (administrator overrides stored before people
   * were, in `principal_overrides`, are carried over once) and loads every person.
   */
  static async open(options: IdentityOptions): Promise<Identity> {
    const identity = new Identity(options)
    const { store, config } = options
    const legacy = new Map<string, 'disabled' | 'deleted'>()
    for (const o of await store.listPrincipalOverrides()) if (o.kind === 'user') legacy.set(o.id, o.state)
    const seeds: SeedUser[] = config.users.map((u) => ({
      username: u.username,
      displayName: u.displayName,
      // A tool resolves the configuration without hashing secrets: it must not store the placeholder.
      passwordHash: u.passwordHash === UNHASHED_SECRET ? undefined : u.passwordHash,
      disabled: u.disabled,
      groups: u.groups ?? [],
      risk: u.risk ?? 0,
      ...(u.email !== undefined ? { email: u.email } : {}),
      ...(u.manager !== undefined ? { manager: u.manager } : {}),
    }))
    await identity.people.seed(seeds, legacy)
    for (const id of legacy.keys()) await store.clearPrincipalOverride('user', id)
    return identity
  }

  /** Connects identity to governance's revocation and audit, and starts the directory refresh. */
  bind(governance: IdentityGovernance): void {
    this.#governance = governance
    this.every(PEOPLE_REFRESH_SECONDS, () => this.directory.refresh())
    // RFC 8936 poll delivery, one timer per poll transmitter.
    for (const t of this.options.config.identity.sharedSignals.transmitters)
      if (t.delivery.method === 'poll' && this.signals !== undefined) this.every(t.delivery.everySeconds, () => this.signals!.poll(t))
  }

  /** Runs `fn` every `seconds` in the background (failures logged); stopped by {@link close}. */
  every(seconds: number, fn: () => Promise<unknown>): void {
    const t = setInterval(() => {
      fn().catch((err: unknown) => this.options.logger.warn({ err }, 'identity background task failed'))
    }, seconds * 1000)
    t.unref()
    this.#timers.push(t)
  }

  /** What the verification pages offer: "Sign in with <provider>", local passwords, step-up upstream. */
  pageOptions(): IdentityPageOptions {
    const { config } = this.options
    const providers = config.identity.providers.map((p) => ({ id: p.id, name: p.name }))
    const trim = (s: string) => s.replace(/\/+$/, '')
    return {
      providers,
      localPasswords: config.identity.localPasswords,
      stepUpProvider: (username) => {
        const issuer = this.directory.person(username)?.upstreamIssuer
        if (issuer === null || issuer === undefined) return undefined
        const p = config.identity.providers.find((x) => trim(x.issuer) === trim(issuer))
        return p && { id: p.id, name: p.name }
      },
      // Only configured people can have an authenticator enrolled (`devicegate users enroll-totp`).
      offersTotp: (username) => this.directory.person(username)?.source === 'config',
    }
  }

  /**
   * The governance console's "Sign in with <provider>" methods: each starts this upstream sign-in
   * and comes back to the console with the person (`console/upstream-sign-in.ts` bridges the
   * verification session). Providers whose id is not `[a-z0-9-]+` are left out of the console.
   */
  consoleSignIns(): ConsoleSignIn[] {
    const upstream = this.upstream
    if (upstream === undefined) return []
    return upstream.providers
      .filter((p) => /^[a-z0-9-]+$/.test(p.id))
      .map((p) =>
        sessionBridgeSignIn({
          id: p.id,
          label: `Sign in with ${p.name}`,
          begin: async (reply, returnTo) => {
            try {
              return await beginUpstreamSignIn(reply, upstream, { provider: p.id, returnTo })
            } catch (err) {
              if (err instanceof UpstreamError) return sendUpstreamFailure(reply, err)
              throw err
            }
          },
        }),
      )
  }

  /** Administrator user status changes (admin API, CLI) applied to stored people. */
  readonly userStatus: UserStatusPort = {
    changeUser: async (id, state, actor, ip) => {
      try {
        return await this.people.setStatus(id, state === 'enabled' ? 'active' : state, actor, ip, 'admin')
      } catch (err) {
        if (err instanceof PeopleError && err.code === 'not_found') return undefined
        throw err
      }
    },
  }

  close(): void {
    for (const t of this.#timers) clearInterval(t)
  }
}

/**
 * Opens identity for one command-line action (seeding configured users as the server does) and
 * binds it to the tool's governance services. Logs nothing; call `close()` when done.
 */
export async function openToolIdentity(store: Store, config: Config, governance: IdentityGovernance): Promise<Identity> {
  const identity = await Identity.open({ config, store, clock: systemClock, logger: pino({ level: 'silent' }) })
  identity.bind(governance)
  return identity
}
