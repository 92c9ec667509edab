/**
 * Storage of the identity domain (`src/identity/`): people and groups, upstream sign-in
 * transactions, processed Security Event Tokens and device compliance. One Kysely implementation
 * (`kysely/people.ts`) runs on SQLite and PostgreSQL; all times are epoch seconds. Expired
 * upstream sign-in transactions are deleted by `purgeExpired`.
 */

/** `active` people may sign in; `disabled` ones may not (kept, can be re-enabled); `deleted` ones are gone for good but their row keeps the id from being reassigned. */
export type PersonStatus = 'active' | 'disabled' | 'deleted'
/** Where a person came from: the configuration file, a just-in-time upstream sign-in, or SCIM provisioning. */
export type PersonSource = 'config' | 'provider' | 'scim'

/** One person. */
export interface PersonRecord {
  /** Stable local identifier, used as the token `sub`: the username for configured people, a UUID otherwise. */
  id: string
  /** Login name (SCIM `userName`); unique among people who are not deleted, compared case-insensitively. */
  userName: string
  displayName: string | null
  email: string | null
  status: PersonStatus
  source: PersonSource
  /** Groups from configuration or the upstream provider's groups claim (SCIM groups are memberships, see {@link GroupRecord}). */
  groups: string[]
  /** Risk attribute for policy conditions, 0 (none) to 100. */
  risk: number
  /** The upstream OpenID Connect `iss` and `sub` this person signs in with; the pair is unique. */
  upstreamIssuer: string | null
  upstreamSub: string | null
  /** SCIM `externalId` (RFC 7643 §3.1): the provisioning client's identifier. */
  externalId: string | null
  /** Manager (SCIM enterprise extension `manager.value`). */
  manager: string | null
  /** argon2id PHC string for local password sign-in; null: no local password. */
  passwordHash: string | null
  /** When the password was last changed through devicegate (then the configuration's no longer overrides it). */
  passwordChangedAt: number | null
  /** Other SCIM attributes as last written (JSON object text), or null. */
  scimJson: string | null
  /** Incremented on every change; the SCIM `meta.version` (RFC 7644 §3.14). */
  version: number
  createdAt: number
  updatedAt: number
}

/** One group provisioned by SCIM (RFC 7643 §4.2). */
export interface GroupRecord {
  id: string
  /** Unique; this is the group name policies see. */
  displayName: string
  externalId: string | null
  /** Ids of member people. */
  members: string[]
  version: number
  createdAt: number
  updatedAt: number
}

/** A pending upstream sign-in (authorization request sent, callback not yet received). */
export interface UpstreamLoginRecord {
  /** SHA-256 (hex) of the `state` value; the state itself lives only in the browser's cookie and the URL. */
  stateHash: string
  provider: string
  nonce: string
  /** PKCE `code_verifier` (RFC 7636 §4.1). */
  codeVerifier: string
  /** Local path to return to after sign-in. */
  returnTo: string
  /** Whether this round trip asked the provider for a second factor. */
  stepUp: boolean
  createdAt: number
  expiresAt: number
}

/** A device's compliance as last reported by a transmitter (CAEP `device-compliance-change`). */
export interface DeviceComplianceRecord {
  deviceId: string
  status: 'compliant' | 'not-compliant'
  issuer: string
  updatedAt: number
}

/** Identity storage; every method is one statement or one transaction. */
export interface PeopleStore {
  /** Every person (including disabled and deleted) with SCIM group memberships, for the in-memory directory. */
  listPeople(): Promise<PersonRecord[]>
  /** Group memberships: person id → group display names. */
  listMemberships(): Promise<Map<string, string[]>>
  findPerson(id: string): Promise<PersonRecord | undefined>
  findPersonByUpstream(issuer: string, sub: string): Promise<PersonRecord | undefined>
  /**
   * Inserts a person.
   * @throws {StoreConflictError} when the id or the upstream (issuer, sub) pair exists.
   */
  insertPerson(person: PersonRecord): Promise<void>
  /**
   * Replaces a person's row when its `version` is still `expectedVersion` (optimistic concurrency);
   * the stored version becomes `person.version`.
   * @returns false when the row changed meanwhile or does not exist.
   */
  updatePerson(person: PersonRecord, expectedVersion: number): Promise<boolean>
  /** Sets a person's status. @returns false when no such person. */
  setPersonStatus(id: string, status: PersonStatus, now: number): Promise<boolean>
  /** Sets a person's risk (0–100). @returns false when no such person. */
  setPersonRisk(id: string, risk: number, now: number): Promise<boolean>
  /** Stores a new password hash (a local change). @returns false when no such person. */
  setPersonPassword(id: string, passwordHash: string, now: number): Promise<boolean>

  listGroups(): Promise<GroupRecord[]>
  findGroup(id: string): Promise<GroupRecord | undefined>
  /** @throws {StoreConflictError} when the id or the display name exists. */
  insertGroup(group: GroupRecord): Promise<void>
  /** Replaces a group and its members in one transaction when its version is `expectedVersion`. */
  updateGroup(group: GroupRecord, expectedVersion: number): Promise<boolean>
  deleteGroup(id: string): Promise<boolean>
  /** Removes a person from every group (deletion). */
  removeMemberships(personId: string): Promise<void>

  createUpstreamLogin(login: UpstreamLoginRecord): Promise<void>
  /** Deletes and returns a pending sign-in in one statement (single use); expired ones are not returned. */
  takeUpstreamLogin(stateHash: string, now: number): Promise<UpstreamLoginRecord | undefined>

  /**
   * Records a Security Event Token as processed (RFC 8417 §2.2 `jti`, per issuer).
   * @returns false when it was already recorded: a retransmission.
   */
  recordSecurityEvent(issuer: string, jti: string, eventTypes: string[], effect: string, now: number): Promise<boolean>
  /** Updates the effect recorded for a processed SET (after it was applied). */
  setSecurityEventEffect(issuer: string, jti: string, effect: string): Promise<void>
  setDeviceCompliance(record: DeviceComplianceRecord): Promise<void>
  findDeviceCompliance(deviceId: string): Promise<DeviceComplianceRecord | undefined>
}
