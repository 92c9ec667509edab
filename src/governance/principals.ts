/**
 * Administrator overrides of configured users and clients. Users and clients come
 * from configuration; disabling or deleting one at run time is stored in `principal_overrides`,
 * and the directories the protocol handlers and pages use consult it: a disabled or deleted user
 * cannot sign in (and a signed-in session of theirs stops counting), a disabled or deleted client
 * cannot authenticate, and introspection answers `active: false` for its tokens. Their live token
 * families are revoked at the moment of the change (`orphaned_token`, whether or not that
 * detector is on to record an anomaly), so their tokens are inactive at once on every instance;
 * other instances pick up the override itself within {@link OVERRIDE_REFRESH_SECONDS}.
 */
import type { DomainEvent, EventSink } from '../core/events.js'
import type { Client, ClientDirectory, User, UserDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import type { PrincipalKind, PrincipalOverrideRecord, Store } from '../storage/store.js'
import type { AnomalyEngine } from './anomalies.js'

/** How often each instance re-reads the overrides, in seconds. */
export const OVERRIDE_REFRESH_SECONDS = 5

type State = PrincipalOverrideRecord['state']

/** The overrides, cached in memory and refreshed from the store. */
export class PrincipalOverrides {
  readonly #store: Store
  #users = new Map<string, State>()
  #clients = new Map<string, State>()

  constructor(store: Store) {
    this.#store = store
  }

  /** Re-reads every override (a handful of rows). */
  async refresh(): Promise<void> {
    const users = new Map<string, State>()
    const clients = new Map<string, State>()
    for (const o of await this.#store.listPrincipalOverrides()) (o.kind === 'user' ? users : clients).set(o.id, o.state)
    this.#users = users
    this.#clients = clients
  }

  state(kind: PrincipalKind, id: string): State | undefined {
    return (kind === 'user' ? this.#users : this.#clients).get(id)
  }

  /** Stores an override (or removes it with `enabled`) and applies it locally at once. */
  async set(kind: PrincipalKind, id: string, state: State | 'enabled', now: number, actor: string): Promise<void> {
    const map = kind === 'user' ? this.#users : this.#clients
    if (state === 'enabled') {
      await this.#store.clearPrincipalOverride(kind, id)
      map.delete(id)
    } else {
      await this.#store.setPrincipalOverride({ kind, id, state, changedAt: now, changedBy: actor })
      map.set(id, state)
    }
  }

  /** All overrides as stored. */
  list(): Promise<PrincipalOverrideRecord[]> {
    return this.#store.listPrincipalOverrides()
  }
}

/** The configured clients with overrides applied: deleted → unknown, disabled → `disabled: true`. */
export function governedClientDirectory(base: ClientDirectory, overrides: PrincipalOverrides): ClientDirectory {
  const disabledCopies = new Map<Client, Client>()
  return {
    get(id) {
      const client = base.get(id)
      if (client === undefined) return undefined
      const state = overrides.state('client', id)
      if (state === undefined || client.disabled) return client
      if (state === 'deleted') return undefined
      let copy = disabledCopies.get(client)
      if (copy === undefined) disabledCopies.set(client, (copy = Object.freeze({ ...client, disabled: true })))
      return copy
    },
  }
}

/**
 * The configured users with overrides applied. `authenticate` still runs the password check
 * (same timing whatever the account's state) and then refuses a disabled or deleted account.
 */
export function governedUserDirectory(base: UserDirectory, overrides: PrincipalOverrides): UserDirectory {
  const disabledCopies = new Map<User, User>()
  const apply = (user: User | undefined): User | undefined => {
    if (user === undefined) return undefined
    const state = overrides.state('user', user.username)
    if (state === undefined || user.disabled) return user
    if (state === 'deleted') return undefined
    let copy = disabledCopies.get(user)
    if (copy === undefined) disabledCopies.set(user, (copy = Object.freeze({ ...user, disabled: true })))
    return copy
  }
  return {
    get: (username) => apply(base.get(username)),
    async authenticate(username, password) {
      const user = apply(await base.authenticate(username, password))
      return user === undefined || user.disabled ? undefined : user
    },
  }
}

/**
 * Where people's status lives since people are stored (`identity/people.ts`): user
 * changes go there instead of to `principal_overrides`.
 */
export interface UserStatusPort {
  /** @returns grants revoked; undefined when there is no such person. */
  changeUser(id: string, state: State | 'enabled', actor: string, ip: string | null): Promise<number | undefined>
}

/** Administrator actions on users and clients, shared by the admin API and the CLI. */
export class PrincipalAdmin {
  constructor(
    private readonly overrides: PrincipalOverrides,
    private readonly anomalies: AnomalyEngine,
    private readonly events: EventSink,
    private readonly clock: Clock,
    private readonly exists: { user(id: string): boolean; client(id: string): boolean },
    private readonly users?: UserStatusPort,
  ) {}

  /**
   * Disables, deletes or re-enables a configured user or client. Disabling and deleting revoke
   * the principal's live token families at once (`orphaned_token`) and deny their open device
   * authorizations. Writes an `admin.action` audit event.
   * @returns families revoked; undefined when no such user or client is configured.
   */
  async change(kind: PrincipalKind, id: string, state: State | 'enabled', actor: string, ip: string | null = null): Promise<number | undefined> {
    let revoked: number | undefined
    if (kind === 'user' && this.users !== undefined) {
      // Stored people: the person's status changes there (it revokes and writes person.status_changed).
      revoked = await this.users.changeUser(id, state, actor, ip)
      if (revoked === undefined) return undefined
    } else {
      if (!(kind === 'user' ? this.exists.user(id) : this.exists.client(id))) return undefined
      await this.overrides.set(kind, id, state, this.clock.nowSeconds(), actor)
      revoked = state === 'enabled' ? 0 : await this.anomalies.orphan(kind, id, state, actor)
    }
    const event: DomainEvent = {
      type: 'admin.action',
      actor,
      ip,
      ...(kind === 'user' ? { subject: id } : { clientId: id }),
      details: { action: `${kind}.${state === 'enabled' ? 'enabled' : state}`, revokedGrants: revoked },
    }
    await this.events.record(event)
    return revoked
  }
}
