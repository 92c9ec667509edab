/**
 * People and groups: the in-memory {@link PeopleDirectory} every layer reads people
 * through (it implements the `UserDirectory` port), and the {@link PeopleService} that changes
 * them — seeding configured users at start, the administrator's list / show / disable / enable /
 * delete, and local password changes — with audit events and revocation.
 *
 * Revoking a person's grants goes through the governance revocation service (one conditional
 * UPDATE of `grants` by subject, whatever the number of grants), so whatever listens to
 * revocations (audit, the signals outbox) sees identity-driven revocations too.
 */
import { randomUUID } from 'node:crypto'
import { verify } from '@node-rs/argon2'
import type { EventSink } from '../core/events.js'
import type { User, UserDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import { StoreConflictError, type PeopleStore, type PersonRecord, type PersonSource, type PersonStatus } from '../storage/store.js'
import { hashPassword } from '../web/user-directory.js'

/** How often each instance re-reads people and memberships, in seconds. */
export const PEOPLE_REFRESH_SECONDS = 5

/** Longest password accepted for a local change (bounds argon2 work); shortest, per NIST SP 800-63B §5.1.1.2. */
export const PASSWORD_MIN_LENGTH = 8
export const PASSWORD_MAX_LENGTH = 256

/** A person as the directory holds them: the stored row plus SCIM group memberships. */
export interface Person extends PersonRecord {
  /** Names of SCIM groups this person is a member of. */
  memberOf: string[]
}

/** Groups policy sees: configured or upstream groups, plus SCIM memberships, each once. */
export function effectiveGroups(p: Person): string[] {
  return [...new Set([...p.groups, ...p.memberOf])]
}

/**
 * All people, cached in memory and re-read every {@link PEOPLE_REFRESH_SECONDS}; changes made on
 * this instance apply at once. Implements `UserDirectory`: `get(id)` returns active and disabled
 * people (disabled as `disabled: true`), never deleted ones.
 *
 * `authenticate` checks a local password by user name (case-insensitive); it always runs one
 * argon2 verification (against a dummy hash for unknown names, people without a local password,
 * and when local passwords are switched off) so timing does not tell which accounts exist.
 */
export class PeopleDirectory implements UserDirectory {
  readonly #store: PeopleStore
  readonly #localPasswords: boolean
  readonly #totp: ReadonlyMap<string, string>
  #byId = new Map<string, Person>()
  #byUserName = new Map<string, string>()
  #users = new Map<string, User>()
  readonly #dummyHash = hashPassword('devicegate-dummy-password')

  /**
   * @param totpSecrets Configured users' TOTP secrets (from the environment), by username.
   * @param localPasswords Whether password sign-in is allowed at all.
   */
  constructor(store: PeopleStore, options: { localPasswords: boolean; totpSecrets?: ReadonlyMap<string, string> }) {
    this.#store = store
    this.#localPasswords = options.localPasswords
    this.#totp = options.totpSecrets ?? new Map()
  }

  /** Re-reads every person and membership from the store. */
  async refresh(): Promise<void> {
    const [people, memberships] = await Promise.all([this.#store.listPeople(), this.#store.listMemberships()])
    const byId = new Map<string, Person>()
    for (const p of people) byId.set(p.id, { ...p, memberOf: memberships.get(p.id) ?? [] })
    this.#byId = byId
    this.#reindex()
  }

  /** Applies one changed person locally (after this instance wrote it). */
  put(record: PersonRecord, memberOf?: string[]): Person {
    const person: Person = { ...record, memberOf: memberOf ?? this.#byId.get(record.id)?.memberOf ?? [] }
    this.#byId.set(person.id, person)
    this.#reindex()
    return person
  }

  /** Re-reads memberships only (after a SCIM group change on this instance). */
  async refreshMemberships(): Promise<void> {
    const memberships = await this.#store.listMemberships()
    for (const [id, p] of this.#byId) this.#byId.set(id, { ...p, memberOf: memberships.get(id) ?? [] })
    this.#reindex()
  }

  #reindex(): void {
    const byUserName = new Map<string, string>()
    const users = new Map<string, User>()
    for (const p of this.#byId.values()) if (p.status !== 'deleted') byUserName.set(p.userName.toLowerCase(), p.id)
    const resolveManager = managerResolver(this.#byId, byUserName)
    for (const p of this.#byId.values()) {
      if (p.status === 'deleted') continue
      const totp = this.#totp.get(p.id)
      const manager = p.manager === null ? undefined : resolveManager(p.manager)
      users.set(
        p.id,
        Object.freeze({
          username: p.id,
          // What pages show ("Signed in as …"): never the opaque id of an upstream or SCIM person.
          displayName: p.displayName !== null && p.displayName.trim() !== '' ? p.displayName : p.userName,
          passwordHash: p.passwordHash ?? '',
          disabled: p.status !== 'active',
          groups: Object.freeze(effectiveGroups(p)),
          risk: p.risk,
          ...(p.email ? { email: p.email } : {}),
          ...(manager !== undefined && manager !== p.id ? { manager } : {}),
          ...(totp !== undefined ? { totpSecret: totp } : {}),
        }),
      )
    }
    this.#byUserName = byUserName
    this.#users = users
  }

  /** The person with this id (any status), or undefined. */
  person(id: string): Person | undefined {
    return this.#byId.get(id)
  }

  /** The person who is not deleted with this user name (case-insensitive). */
  byUserName(userName: string): Person | undefined {
    const id = this.#byUserName.get(userName.toLowerCase())
    return id === undefined ? undefined : this.#byId.get(id)
  }

  /** Every person, oldest first. */
  all(): Person[] {
    return [...this.#byId.values()]
  }

  /** Ids of the active people in `group` (configured, upstream or SCIM membership), for group reviewers. */
  membersOf(group: string): string[] {
    return [...this.#users.values()].filter((u) => !u.disabled && (u.groups ?? []).includes(group)).map((u) => u.username)
  }

  get(id: string): User | undefined {
    return this.#users.get(id)
  }

  async authenticate(username: string, password: string): Promise<User | undefined> {
    const person = this.#localPasswords ? this.byUserName(username) : undefined
    const phc = person?.passwordHash ?? (await this.#dummyHash)
    let ok = false
    try {
      ok = await verify(phc, password)
    } catch {
      ok = false // a malformed stored hash never signs anyone in
    }
    if (!ok || person === undefined || person.passwordHash === null || person.status !== 'active') return undefined
    return this.#users.get(person.id)
  }
}

/**
 * Resolves a stored `manager` reference to the manager's person id. The reference is kept as its
 * source wrote it — SCIM's enterprise `manager.value` is the manager's SCIM `id` (RFC 7643 §4.3),
 * the configuration's `manager` a username, a mapped upstream claim whatever the provider puts
 * there — and resolved when people are (re)indexed, so a manager provisioned after their report
 * is found at the next refresh. Tried in order: person id, user name (case-insensitive), then a
 * single person with that `externalId` or email. Deleted people are never managers.
 * @returns the manager's person id, or undefined when nobody matches.
 */
function managerResolver(byId: ReadonlyMap<string, Person>, byUserName: ReadonlyMap<string, string>): (ref: string) => string | undefined {
  let byOther: Map<string, string | null> | undefined
  return (ref) => {
    const direct = byId.get(ref)
    if (direct !== undefined && direct.status !== 'deleted') return direct.id
    const named = byUserName.get(ref.toLowerCase())
    if (named !== undefined) return named
    if (byOther === undefined) {
      // externalId and email, each kept only when it names one person (null: ambiguous).
      byOther = new Map()
      for (const p of byId.values()) {
        if (p.status === 'deleted') continue
        for (const key of new Set([p.externalId, p.email?.toLowerCase()])) {
          if (key === null || key === undefined) continue
          byOther.set(key, byOther.has(key) && byOther.get(key) !== p.id ? null : p.id)
        }
      }
    }
    const hit = byOther.has(ref) ? byOther.get(ref) : byOther.get(ref.toLowerCase())
    return hit ?? undefined
  }
}

/** What the people service needs to take a person's grants away. */
export interface PersonRevoker {
  /**
   * Revokes every live grant of a disabled or deleted person at once, unconditionally, as
   * `orphaned_token` (an anomaly is recorded besides when that detector is on); governance's
   * `AnomalyEngine.orphan`. @returns grants revoked.
   */
  orphan(personId: string, reason: 'disabled' | 'deleted', actor: string): Promise<number>
  /** Revokes every live grant of a person for another reason; governance's `RevocationService`. @returns grants revoked. */
  revoke(personId: string, reason: string, actor: string, ip: string | null): Promise<number>
}

/** Thrown for an administrator or SCIM request that cannot be carried out; `code` is stable. */
export class PeopleError extends Error {
  override readonly name = 'PeopleError'
  constructor(
    readonly code: 'not_found' | 'conflict' | 'invalid' | 'no_password',
    message: string,
  ) {
    super(message)
  }
}

/** A configured user to seed (the `users:` of the configuration file). */
export interface SeedUser {
  username: string
  displayName: string
  /**
   * argon2id PHC hash of the configured password; `undefined` when this process does not know it
   * (a command that resolved the configuration without hashing `password_env` secrets): the stored
   * hash is then kept, and a new person gets none until the server seeds it.
   */
  passwordHash: string | undefined
  disabled: boolean
  groups: readonly string[]
  risk: number
  /** From `users[].email` (signals: OpenID Connect `email`, SSF `email` subjects). */
  email?: string
  /** From `users[].manager`: the manager's username (access reviews with `reviewers: manager`). */
  manager?: string
}

/** Changes to people, audited; shared by the admin API, the CLI, SCIM, upstream sign-in and Shared Signals. */
export class PeopleService {
  constructor(
    readonly directory: PeopleDirectory,
    private readonly store: PeopleStore,
    private readonly revoker: PersonRevoker,
    private readonly events: EventSink,
    private readonly clock: Clock,
  ) {}

  /**
   * Seeds the configured users (source `config`) at start-up: new ones are inserted; existing ones
   * take the configuration's display name, groups, risk, manager and enabled/disabled state, and its
   * password unless the password was changed through devicegate since or the seed does not know it
   * (`passwordHash` undefined: a command-line tool must not overwrite the server's hash). Configured people no
   * longer in the configuration are marked deleted (their grants are revoked by the start-up
   * orphan sweep). `legacyStates` are administrator overrides made before people were stored
   * (`principal_overrides`); they are applied once.
   */
  async seed(users: readonly SeedUser[], legacyStates: ReadonlyMap<string, 'disabled' | 'deleted'> = new Map()): Promise<void> {
    await this.directory.refresh()
    const now = this.clock.nowSeconds()
    const seen = new Set<string>()
    for (const u of users) {
      seen.add(u.username)
      const existing = this.directory.person(u.username)
      const configStatus: PersonStatus = u.disabled ? 'disabled' : 'active'
      if (existing === undefined) {
        const legacy = legacyStates.get(u.username)
        try {
          await this.store.insertPerson(
            newPerson(u.username, now, {
              userName: u.username,
              displayName: u.displayName,
              source: 'config',
              groups: [...u.groups],
              risk: u.risk,
              status: legacy ?? configStatus,
              passwordHash: u.passwordHash ?? null,
              manager: u.manager ?? null,
              ...(u.email !== undefined ? { email: u.email } : {}),
            }),
          )
        } catch (err) {
          // Several instances starting at once seed the same users: the first insert wins.
          if (!(err instanceof StoreConflictError)) throw err
        }
        continue
      }
      if (existing.source !== 'config') continue
      // `disabled: true` in the configuration disables; removing it does not re-enable (an
      // administrator's disable must survive restarts): `devicegate users enable` does.
      const status: PersonStatus = existing.status === 'active' ? configStatus : existing.status
      const next: PersonRecord = {
        ...existing,
        displayName: u.displayName,
        groups: [...u.groups],
        risk: u.risk,
        manager: u.manager ?? null,
        status,
        passwordHash: existing.passwordChangedAt === null && u.passwordHash !== undefined ? u.passwordHash : existing.passwordHash,
      }
      // A lost race (another instance seeding at the same time) leaves that instance's identical write.
      if (!samePerson(existing, next)) await this.store.updatePerson({ ...next, version: existing.version + 1, updatedAt: now }, existing.version)
    }
    for (const p of this.directory.all())
      if (p.source === 'config' && !seen.has(p.id) && p.status !== 'deleted') await this.store.setPersonStatus(p.id, 'deleted', now)
    await this.directory.refresh()
  }

  /**
   * Sets a person's status (administrator, SCIM or a security event). Disabling and deleting
   * revoke every live grant at once (`orphaned_token`); deleting also removes group memberships.
   * Writes `person.status_changed` with the actor.
   * @returns grants revoked.
   * @throws {PeopleError} `not_found`.
   */
  async setStatus(id: string, status: PersonStatus, actor: string, ip: string | null = null, via = 'admin'): Promise<number> {
    const person = this.directory.person(id)
    if (person === undefined || (person.status === 'deleted' && status !== 'deleted')) throw new PeopleError('not_found', `no person "${id}"`)
    const now = this.clock.nowSeconds()
    if (person.status !== status) {
      await this.store.setPersonStatus(id, status, now)
      if (status === 'deleted') await this.store.removeMemberships(id)
      this.directory.put({ ...person, status, version: person.version + 1, updatedAt: now }, status === 'deleted' ? [] : undefined)
    }
    const revoked = status === 'active' ? 0 : await this.revoker.orphan(id, status, actor)
    if (person.status !== status)
      await this.events.record({ type: 'person.status_changed', actor, ip, subject: id, details: { via, from: person.status, to: status, revokedGrants: revoked } })
    return revoked
  }

  /**
   * Changes a person's local password and revokes every grant of theirs (RFC 6819 §5.2.2.4:
   * a credential change invalidates the tokens obtained with the old one). Writes
   * `person.password_changed` (never the password).
   * @returns grants revoked.
   * @throws {PeopleError} `not_found`; `invalid` for a password shorter than 8 or longer than 256
   * characters, or with a NUL or other control character (no keyboard types one into a sign-in form).
   */
  async changePassword(id: string, password: string, actor: string, ip: string | null = null): Promise<number> {
    const person = this.directory.person(id)
    if (person === undefined || person.status === 'deleted') throw new PeopleError('not_found', `no person "${id}"`)
    if (password.length < PASSWORD_MIN_LENGTH || password.length > PASSWORD_MAX_LENGTH)
      throw new PeopleError('invalid', `a password has ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters`)
    if (/[\u0000-\u001f\u007f]/.test(password)) throw new PeopleError('invalid', 'a password must not contain NUL or control characters')
    const now = this.clock.nowSeconds()
    const passwordHash = await hashPassword(password)
    await this.store.setPersonPassword(id, passwordHash, now)
    this.directory.put({ ...person, passwordHash, passwordChangedAt: now, version: person.version + 1, updatedAt: now })
    const revoked = await this.revoker.revoke(id, 'password_changed', actor, ip)
    await this.events.record({ type: 'person.password_changed', actor, ip, subject: id, details: { revokedGrants: revoked } })
    return revoked
  }

  /**
   * Revokes every live grant of a person (a security event: session revoked, credential changed).
   * @returns grants revoked.
   * @throws {PeopleError} `not_found`.
   */
  async revokeGrants(id: string, reason: string, actor: string): Promise<number> {
    const person = this.directory.person(id)
    if (person === undefined) throw new PeopleError('not_found', `no person "${id}"`)
    return this.revoker.revoke(id, reason, actor, null)
  }

  /**
   * Sets a person's risk (0–100) for policy, optionally revoking their grants.
   * @returns grants revoked.
   */
  async setRisk(id: string, risk: number, actor: string, options: { revoke: boolean; reason: string }): Promise<number> {
    const person = this.directory.person(id)
    if (person === undefined || person.status === 'deleted') throw new PeopleError('not_found', `no person "${id}"`)
    const now = this.clock.nowSeconds()
    const bounded = Math.max(0, Math.min(100, Math.round(risk)))
    await this.store.setPersonRisk(id, bounded, now)
    this.directory.put({ ...person, risk: bounded, version: person.version + 1, updatedAt: now })
    const revoked = options.revoke ? await this.revoker.revoke(id, options.reason, actor, null) : 0
    await this.events.record({ type: 'person.updated', actor, subject: id, details: { via: options.reason, risk: { from: person.risk, to: bounded }, revokedGrants: revoked } })
    return revoked
  }

  /**
   * Inserts a person (SCIM or upstream sign-in) and applies it to the directory.
   * @throws {PeopleError} `conflict` when the upstream (issuer, sub) or the user name is taken.
   */
  async create(record: PersonRecord, actor: string, via: string): Promise<Person> {
    if (this.directory.byUserName(record.userName) !== undefined) throw new PeopleError('conflict', `userName "${record.userName}" is taken`)
    try {
      await this.store.insertPerson(record)
    } catch (err) {
      if (err instanceof StoreConflictError) throw new PeopleError('conflict', 'the person exists')
      throw err
    }
    const person = this.directory.put(record, [])
    await this.events.record({ type: 'person.created', actor, subject: record.id, details: { via, source: record.source, userName: record.userName } })
    return person
  }

  /**
   * Replaces a person's attributes (not the status: see {@link setStatus}) when nobody changed
   * them meanwhile; writes `person.updated` naming the changed fields.
   * @throws {PeopleError} `not_found`, or `conflict` (user name taken, or a concurrent change).
   */
  async update(next: PersonRecord, actor: string, via: string): Promise<Person> {
    const person = this.directory.person(next.id)
    if (person === undefined || person.status === 'deleted') throw new PeopleError('not_found', `no person "${next.id}"`)
    const other = this.directory.byUserName(next.userName)
    if (other !== undefined && other.id !== next.id) throw new PeopleError('conflict', `userName "${next.userName}" is taken`)
    const changed = changedFields(person, next)
    if (changed.length === 0) return person
    const now = this.clock.nowSeconds()
    const record: PersonRecord = { ...next, status: person.status, version: person.version + 1, updatedAt: now }
    let ok: boolean
    try {
      ok = await this.store.updatePerson(record, person.version)
    } catch (err) {
      if (err instanceof StoreConflictError) throw new PeopleError('conflict', 'the upstream identity belongs to another person')
      throw err
    }
    if (!ok) {
      await this.directory.refresh()
      throw new PeopleError('conflict', 'the person was changed meanwhile; retry')
    }
    const updated = this.directory.put(record)
    await this.events.record({ type: 'person.updated', actor, subject: next.id, details: { via, changed } })
    return updated
  }
}

/** A new person row with defaults. */
export function newPerson(
  id: string | undefined,
  now: number,
  fields: Partial<PersonRecord> & { userName: string; source: PersonSource },
): PersonRecord {
  return {
    id: id ?? randomUUID(),
    displayName: null,
    email: null,
    status: 'active',
    groups: [],
    risk: 0,
    upstreamIssuer: null,
    upstreamSub: null,
    externalId: null,
    manager: null,
    passwordHash: null,
    passwordChangedAt: null,
    scimJson: null,
    version: 1,
    createdAt: now,
    updatedAt: now,
    ...fields,
  }
}

const COMPARED: (keyof PersonRecord)[] = ['userName', 'displayName', 'email', 'status', 'groups', 'risk', 'upstreamIssuer', 'upstreamSub', 'externalId', 'manager', 'passwordHash', 'scimJson']

function changedFields(a: PersonRecord, b: PersonRecord): string[] {
  return COMPARED.filter((k) => k !== 'status' && JSON.stringify(a[k]) !== JSON.stringify(b[k]))
}

function samePerson(a: PersonRecord, b: PersonRecord): boolean {
  return COMPARED.every((k) => JSON.stringify(a[k]) === JSON.stringify(b[k]))
}

/** The JSON shape of a person in the admin API and `devicegate users show --json`. */
export function personView(p: Person): Record<string, unknown> {
  return {
    id: p.id,
    user_name: p.userName,
    display_name: p.displayName,
    email: p.email,
    status: p.status,
    source: p.source,
    groups: effectiveGroups(p),
    risk: p.risk,
    upstream: p.upstreamIssuer === null ? null : { issuer: p.upstreamIssuer, sub: p.upstreamSub },
    external_id: p.externalId,
    manager: p.manager,
    has_password: p.passwordHash !== null,
    created_at: p.createdAt,
    updated_at: p.updatedAt,
  }
}
