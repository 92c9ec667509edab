/**
 * The Kysely implementation of {@link PeopleStore} (see ../people.ts), for SQLite and PostgreSQL alike (tables from
 * migration `010_identity`). Writes are single statements or one transaction; optimistic
 * concurrency on `version` keeps concurrent SCIM writes from losing each other's changes.
 */
import type { Kysely } from 'kysely'
import type { DeviceComplianceRecord, GroupRecord, PeopleStore, PersonRecord, PersonStatus, UpstreamLoginRecord } from '../people.js'
import type { KyselyContext } from './context.js'
import type { DevicegateDatabase, PeopleTable, PeopleGroupsTable } from './tables.js'

function toPerson(r: PeopleTable): PersonRecord {
  return {
    id: r.id,
    userName: r.user_name,
    displayName: r.display_name,
    email: r.email,
    status: r.status as PersonStatus,
    source: r.source as PersonRecord['source'],
    groups: JSON.parse(r.groups_json) as string[],
    risk: Number(r.risk),
    upstreamIssuer: r.upstream_issuer,
    upstreamSub: r.upstream_sub,
    externalId: r.external_id,
    manager: r.manager,
    passwordHash: r.password_hash,
    passwordChangedAt: r.password_changed_at === null ? null : Number(r.password_changed_at),
    scimJson: r.scim_json,
    version: Number(r.version),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  }
}

function toRow(p: PersonRecord): PeopleTable {
  return {
    id: p.id,
    user_name: p.userName,
    display_name: p.displayName,
    email: p.email,
    status: p.status,
    source: p.source,
    groups_json: JSON.stringify(p.groups),
    risk: p.risk,
    upstream_issuer: p.upstreamIssuer,
    upstream_sub: p.upstreamSub,
    external_id: p.externalId,
    manager: p.manager,
    password_hash: p.passwordHash,
    password_changed_at: p.passwordChangedAt,
    scim_json: p.scimJson,
    version: p.version,
    created_at: p.createdAt,
    updated_at: p.updatedAt,
  }
}

/** {@link PeopleStore} on Kysely (tables of migration `010_identity`). */
export class KyselyPeopleStore implements PeopleStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
    ctx.onPurge(async (now) => {
      await this.#db.deleteFrom('upstream_logins').where('expires_at', '<=', now).execute()
    })
  }

  listPeople(): Promise<PersonRecord[]> {
    return this.#ctx.guard(async () => (await this.#db.selectFrom('people').selectAll().orderBy('created_at').orderBy('id').execute()).map(toPerson))
  }

  listMemberships(): Promise<Map<string, string[]>> {
    return this.#ctx.guard(async () => {
      const rows = await this.#db
        .selectFrom('people_group_members as m')
        .innerJoin('people_groups as g', 'g.id', 'm.group_id')
        .select(['m.person_id', 'g.display_name'])
        .orderBy('g.display_name')
        .execute()
      const out = new Map<string, string[]>()
      for (const r of rows) {
        const list = out.get(r.person_id)
        if (list) list.push(r.display_name)
        else out.set(r.person_id, [r.display_name])
      }
      return out
    })
  }

  findPerson(id: string): Promise<PersonRecord | undefined> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.selectFrom('people').selectAll().where('id', '=', id).executeTakeFirst()
      return r && toPerson(r)
    })
  }

  findPersonByUpstream(issuer: string, sub: string): Promise<PersonRecord | undefined> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.selectFrom('people').selectAll().where('upstream_issuer', '=', issuer).where('upstream_sub', '=', sub).executeTakeFirst()
      return r && toPerson(r)
    })
  }

  insertPerson(person: PersonRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db.insertInto('people').values(toRow(person)).execute()
    })
  }

  updatePerson(person: PersonRecord, expectedVersion: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const { id: _id, created_at: _c, ...rest } = toRow(person)
      const r = await this.#db.updateTable('people').set(rest).where('id', '=', person.id).where('version', '=', expectedVersion).executeTakeFirst()
      return Number(r.numUpdatedRows) === 1
    })
  }

  #setColumns(id: string, values: Partial<PeopleTable>, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const r = await this.#db
        .updateTable('people')
        .set((eb) => ({ ...values, updated_at: now, version: eb('version', '+', 1) }))
        .where('id', '=', id)
        .executeTakeFirst()
      return Number(r.numUpdatedRows) === 1
    })
  }

  setPersonStatus(id: string, status: PersonStatus, now: number): Promise<boolean> {
    return this.#setColumns(id, { status }, now)
  }

  setPersonRisk(id: string, risk: number, now: number): Promise<boolean> {
    return this.#setColumns(id, { risk }, now)
  }

  setPersonPassword(id: string, passwordHash: string, now: number): Promise<boolean> {
    return this.#setColumns(id, { password_hash: passwordHash, password_changed_at: now }, now)
  }

  listGroups(): Promise<GroupRecord[]> {
    return this.#ctx.guard(async () => {
      const groups = await this.#db.selectFrom('people_groups').selectAll().orderBy('created_at').orderBy('id').execute()
      const members = await this.#db.selectFrom('people_group_members').selectAll().orderBy('person_id').execute()
      const byGroup = new Map<string, string[]>()
      for (const m of members) {
        const list = byGroup.get(m.group_id)
        if (list) list.push(m.person_id)
        else byGroup.set(m.group_id, [m.person_id])
      }
      return groups.map((g) => toGroup(g, byGroup.get(g.id) ?? []))
    })
  }

  findGroup(id: string): Promise<GroupRecord | undefined> {
    return this.#ctx.guard(async () => {
      const g = await this.#db.selectFrom('people_groups').selectAll().where('id', '=', id).executeTakeFirst()
      if (!g) return undefined
      const members = await this.#db.selectFrom('people_group_members').select('person_id').where('group_id', '=', id).orderBy('person_id').execute()
      return toGroup(g, members.map((m) => m.person_id))
    })
  }

  insertGroup(group: GroupRecord): Promise<void> {
    return this.#ctx.guard(() =>
      this.#db.transaction().execute(async (trx) => {
        await trx
          .insertInto('people_groups')
          .values({ id: group.id, display_name: group.displayName, external_id: group.externalId, version: group.version, created_at: group.createdAt, updated_at: group.updatedAt })
          .execute()
        if (group.members.length > 0)
          await trx.insertInto('people_group_members').values([...new Set(group.members)].map((person_id) => ({ group_id: group.id, person_id }))).execute()
      }),
    )
  }

  updateGroup(group: GroupRecord, expectedVersion: number): Promise<boolean> {
    return this.#ctx.guard(() =>
      this.#db.transaction().execute(async (trx) => {
        const r = await trx
          .updateTable('people_groups')
          .set({ display_name: group.displayName, external_id: group.externalId, version: group.version, updated_at: group.updatedAt })
          .where('id', '=', group.id)
          .where('version', '=', expectedVersion)
          .executeTakeFirst()
        if (Number(r.numUpdatedRows) !== 1) return false
        await trx.deleteFrom('people_group_members').where('group_id', '=', group.id).execute()
        if (group.members.length > 0)
          await trx.insertInto('people_group_members').values([...new Set(group.members)].map((person_id) => ({ group_id: group.id, person_id }))).execute()
        return true
      }),
    )
  }

  deleteGroup(id: string): Promise<boolean> {
    return this.#ctx.guard(() =>
      this.#db.transaction().execute(async (trx) => {
        await trx.deleteFrom('people_group_members').where('group_id', '=', id).execute()
        const r = await trx.deleteFrom('people_groups').where('id', '=', id).executeTakeFirst()
        return Number(r.numDeletedRows) === 1
      }),
    )
  }

  removeMemberships(personId: string): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db.deleteFrom('people_group_members').where('person_id', '=', personId).execute()
    })
  }

  createUpstreamLogin(login: UpstreamLoginRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('upstream_logins')
        .values({
          state_hash: login.stateHash,
          provider: login.provider,
          nonce: login.nonce,
          code_verifier: login.codeVerifier,
          return_to: login.returnTo,
          step_up: login.stepUp ? 1 : 0,
          created_at: login.createdAt,
          expires_at: login.expiresAt,
        })
        .execute()
    })
  }

  takeUpstreamLogin(stateHash: string, now: number): Promise<UpstreamLoginRecord | undefined> {
    return this.#ctx.guard(async () => {
      // DELETE … RETURNING: one statement, so a state is redeemed once even across instances.
      const r = await this.#db.deleteFrom('upstream_logins').where('state_hash', '=', stateHash).returningAll().executeTakeFirst()
      if (!r || Number(r.expires_at) <= now) return undefined
      return {
        stateHash: r.state_hash,
        provider: r.provider,
        nonce: r.nonce,
        codeVerifier: r.code_verifier,
        returnTo: r.return_to,
        stepUp: Number(r.step_up) === 1,
        createdAt: Number(r.created_at),
        expiresAt: Number(r.expires_at),
      }
    })
  }

  recordSecurityEvent(issuer: string, jti: string, eventTypes: string[], effect: string, now: number): Promise<boolean> {
    return this.#ctx.guard(async () => {
      const r = await this.#db
        .insertInto('security_events_received')
        .values({ issuer, jti, received_at: now, event_types: eventTypes.join(' '), effect })
        .onConflict((oc) => oc.columns(['issuer', 'jti']).doNothing())
        .executeTakeFirst()
      return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1
    })
  }

  setSecurityEventEffect(issuer: string, jti: string, effect: string): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db.updateTable('security_events_received').set({ effect }).where('issuer', '=', issuer).where('jti', '=', jti).execute()
    })
  }

  setDeviceCompliance(record: DeviceComplianceRecord): Promise<void> {
    return this.#ctx.guard(async () => {
      const values = { device_id: record.deviceId, status: record.status, issuer: record.issuer, updated_at: record.updatedAt }
      await this.#db
        .insertInto('device_compliance')
        .values(values)
        .onConflict((oc) => oc.column('device_id').doUpdateSet({ status: record.status, issuer: record.issuer, updated_at: record.updatedAt }))
        .execute()
    })
  }

  findDeviceCompliance(deviceId: string): Promise<DeviceComplianceRecord | undefined> {
    return this.#ctx.guard(async () => {
      const r = await this.#db.selectFrom('device_compliance').selectAll().where('device_id', '=', deviceId).executeTakeFirst()
      return r && { deviceId: r.device_id, status: r.status as DeviceComplianceRecord['status'], issuer: r.issuer, updatedAt: Number(r.updated_at) }
    })
  }

}

function toGroup(g: PeopleGroupsTable, members: string[]): GroupRecord {
  return {
    id: g.id,
    displayName: g.display_name,
    externalId: g.external_id,
    members,
    version: Number(g.version),
    createdAt: Number(g.created_at),
    updatedAt: Number(g.updated_at),
  }
}
