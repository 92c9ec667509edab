/**
 * Inventory and central revocation of token families on Kysely: reads `grants` joined with
 * `device_grants`, `access_tokens` and `refresh_tokens` (see ../grant-inventory.ts). Revocation by
 * filter is one UPDATE per chunk of at most 500 listed ids, in one transaction.
 */
import type { Expression, ExpressionBuilder, Kysely, SqlBool } from 'kysely'
import type { DeviceAuthorizationFilter, DeviceAuthorizationSummary, GrantFilter, GrantInventoryStore, GrantLineage, GrantSummary } from '../grant-inventory.js'
import type { PollTimes } from '../poll-times.js'
import type { KyselyContext } from './context.js'
import { toDeviceGrantRecord } from './device-grants.js'
import { NEVER } from './prepared.js'
import type { DevicegateDatabase } from './tables.js'
import { toGrant } from './token-families.js'

export class KyselyGrantInventoryStore implements GrantInventoryStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>
  /** The device grants' in-memory poll times, overlaid on the lineage's device grant. */
  readonly #pollTimes: PollTimes

  constructor(ctx: KyselyContext, pollTimes: PollTimes) {
    this.#ctx = ctx
    this.#db = ctx.db
    this.#pollTimes = pollTimes
  }

  /**
   * One UPDATE per chunk of at most 500 listed ids (a bound-parameter limit), in one transaction.
   * A revocation of every family of one user also writes one `user.revoked` outbox row, ahead of
   * the per-family rows (see {@link isWholeUserFilter}).
   */
  revokeGrantsWhere(filter: GrantFilter, now: number): Promise<number> {
    if (!hasGrantCriterion(filter)) {
      return Promise.reject(new TypeError('revokeGrantsWhere: the filter names no criterion'))
    }
    return this.#ctx.guard(() =>
      this.#db.transaction().execute(async (trx) => {
        // Written first so it is delivered first (outbox order); removed again if nothing changed.
        const userEvent = isWholeUserFilter(filter)
          ? await trx.insertInto('signal_outbox').values({ type: 'user.revoked', occurred_at: now, ref: filter.subject, target: null, payload: null } as never).returning('seq').executeTakeFirstOrThrow()
          : undefined
        let revoked = 0
        for (const chunk of chunkGrantFilter(filter)) {
          const result = await trx
            .updateTable('grants')
            .set({ revoked_at: now })
            .where('revoked_at', 'is', null)
            .where((eb) => grantFilterExpression(eb, chunk))
            .executeTakeFirst()
          revoked += Number(result.numUpdatedRows)
        }
        if (userEvent !== undefined && revoked === 0) await trx.deleteFrom('signal_outbox').where('seq', '=', userEvent.seq).execute()
        return revoked
      }),
    )
  }

  countGrants(filter: GrantFilter): Promise<number> {
    return this.#ctx.guard(async () => {
      let total = 0
      for (const chunk of chunkGrantFilter(filter)) {
        const row = await this.#db
          .selectFrom('grants')
          .select((eb) => eb.fn.countAll<number | string>().as('n'))
          .where((eb) => grantFilterExpression(eb, chunk))
          .executeTakeFirstOrThrow()
        total += Number(row.n)
      }
      return total
    })
  }

  listGrantSummaries(
    filter: GrantFilter,
    page: { limit: number; after?: { createdAt: number; id: string } },
  ): Promise<GrantSummary[]> {
    if ((filter.ids?.length ?? 0) > 500 || (filter.deviceGrantIds?.length ?? 0) > 500) {
      return Promise.reject(new TypeError('listGrantSummaries: at most 500 ids per call'))
    }
    return this.#ctx.guard(async () => {
      let q = this.#db
        .selectFrom('grants')
        .leftJoin('device_grants', 'device_grants.id', 'grants.device_grant_id')
        .leftJoin('device_grant_policy', 'device_grant_policy.device_grant_id', 'grants.device_grant_id')
        .selectAll('grants')
        .select([
          'device_grant_policy.explanation_json as dg_explanation_json',
          'device_grants.request_ip as dg_request_ip',
          'device_grants.request_user_agent as dg_request_user_agent',
          'device_grants.created_at as dg_created_at',
          'device_grants.decided_at as dg_decided_at',
        ])
        .where((eb) => grantFilterExpression(eb as unknown as ExpressionBuilder<DevicegateDatabase, 'grants'>, filter))
      const after = page.after
      if (after !== undefined) {
        q = q.where((eb) =>
          eb.or([
            eb('grants.created_at', '<', after.createdAt),
            eb.and([eb('grants.created_at', '=', after.createdAt), eb('grants.id', '>', after.id)]),
          ]),
        )
      }
      const rows = await q.orderBy('grants.created_at', 'desc').orderBy('grants.id').limit(page.limit).execute()
      return rows.map((row) => ({
        ...toGrant(row),
        lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
        lastUsedIp: row.last_used_ip,
        requestIp: row.dg_request_ip,
        requestUserAgent: row.dg_request_user_agent,
        requestedAt: row.dg_created_at === null ? null : Number(row.dg_created_at),
        approvedAt: row.dg_decided_at === null ? null : Number(row.dg_decided_at),
        policyExplanationJson: row.dg_explanation_json,
      }))
    })
  }

  listDeviceAuthorizations(
    filter: DeviceAuthorizationFilter,
    page: { limit: number; after?: { createdAt: number; id: string } },
  ): Promise<DeviceAuthorizationSummary[]> {
    return this.#ctx.guard(async () => {
      let q = this.#db
        .selectFrom('device_grants')
        .leftJoin('device_grant_policy', 'device_grant_policy.device_grant_id', 'device_grants.id')
        .selectAll('device_grants')
        .select(['device_grant_policy.decision as policy_decision', 'device_grant_policy.explanation_json as policy_explanation_json'])
      if (filter.clientId !== undefined) q = q.where('device_grants.client_id', '=', filter.clientId)
      if (filter.subject !== undefined) q = q.where('device_grants.subject', '=', filter.subject)
      if (filter.statuses !== undefined) q = q.where('device_grants.status', 'in', filter.statuses.length > 0 ? [...filter.statuses] : ['none'])
      if (filter.policy === 'deny') q = q.where('device_grant_policy.decision', '=', 'deny')
      if (filter.policy === 'not_deny')
        q = q.where((eb) => eb.or([eb('device_grant_policy.decision', 'is', null), eb('device_grant_policy.decision', '!=', 'deny')]))
      if (filter.createdFrom !== undefined) q = q.where('device_grants.created_at', '>=', filter.createdFrom)
      if (filter.createdBefore !== undefined) q = q.where('device_grants.created_at', '<', filter.createdBefore)
      if (filter.expiresAfter !== undefined) q = q.where('device_grants.expires_at', '>', filter.expiresAfter)
      if (filter.expiredBy !== undefined) q = q.where('device_grants.expires_at', '<=', filter.expiredBy)
      const after = page.after
      if (after !== undefined)
        q = q.where((eb) =>
          eb.or([
            eb('device_grants.created_at', '<', after.createdAt),
            eb.and([eb('device_grants.created_at', '=', after.createdAt), eb('device_grants.id', '>', after.id)]),
          ]),
        )
      const rows = await q.orderBy('device_grants.created_at', 'desc').orderBy('device_grants.id').limit(page.limit).execute()
      return rows.map((row) => ({
        ...toDeviceGrantRecord(row, this.#pollTimes),
        policyDecision: (row.policy_decision as DeviceAuthorizationSummary['policyDecision']) ?? null,
        policyExplanationJson: row.policy_explanation_json,
      }))
    })
  }

  findGrantLineage(grantId: string): Promise<GrantLineage | undefined> {
    return this.#ctx.guard(async () => {
      const [grant] = await this.listGrantSummaries({ ids: [grantId] }, { limit: 1 })
      if (grant === undefined) return undefined
      const deviceGrant =
        grant.deviceGrantId === null
          ? undefined
          : await this.#db.selectFrom('device_grants').selectAll().where('id', '=', grant.deviceGrantId).executeTakeFirst()
      const access = await this.#db
        .selectFrom('access_tokens')
        .select(['jti', 'issued_at', 'expires_at', 'revoked_at', 'dpop_jkt'])
        .where('grant_id', '=', grantId)
        .orderBy('issued_at')
        .orderBy('jti')
        .execute()
      const refresh = await this.#db
        .selectFrom('refresh_tokens')
        .select(['id', 'issued_at', 'expires_at', 'rotated_at', 'revoked_at'])
        .where('grant_id', '=', grantId)
        .orderBy('issued_at')
        .orderBy('id')
        .execute()
      return {
        grant,
        deviceGrant: deviceGrant && toDeviceGrantRecord(deviceGrant, this.#pollTimes),
        accessTokens: access.map((a) => ({
          jti: a.jti,
          issuedAt: Number(a.issued_at),
          expiresAt: Number(a.expires_at),
          revokedAt: a.revoked_at === null ? null : Number(a.revoked_at),
          dpopJkt: a.dpop_jkt,
        })),
        refreshTokens: refresh.map((r) => ({
          id: r.id,
          issuedAt: Number(r.issued_at),
          expiresAt: r.expires_at === null ? null : Number(r.expires_at),
          rotatedAt: r.rotated_at === null ? null : Number(r.rotated_at),
          revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
        })),
      }
    })
  }

  listLiveGrantOwners(): Promise<{ subjects: string[]; clientIds: string[] }> {
    return this.#ctx.guard(async () => {
      const subjects = await this.#db
        .selectFrom('grants')
        .select('subject')
        .distinct()
        .where('revoked_at', 'is', null)
        .where('subject', 'is not', null)
        .execute()
      const clients = await this.#db
        .selectFrom('grants')
        .select('client_id')
        .distinct()
        .where('revoked_at', 'is', null)
        .execute()
      return {
        subjects: subjects.map((r) => r.subject!).sort(),
        clientIds: clients.map((r) => r.client_id).sort(),
      }
    })
  }
}

/** Whether a filter selects something narrower than "every family" (revocation must). */
/**
 * Whether a filter names every live family of one user and nothing narrower (`{ subject }`, with
 * `revoked: false` at most): central revocation of a user, SCIM deactivation and deletion, a
 * Shared Signals event, global token revocation, a password change. Such a revocation is also
 * announced as one user-level CAEP `session-revoked` (outbox type `user.revoked`, its `ref` the
 * subject), so a receiver learns of all of them from the first SET instead of after one SET per
 * family (signals/ssf/events.ts).
 */
function isWholeUserFilter(f: GrantFilter): f is GrantFilter & { subject: string } {
  return f.subject !== undefined && (f.revoked === undefined || f.revoked === false) && Object.entries(f).every(([k, v]) => v === undefined || k === 'subject' || k === 'revoked')
}

function hasGrantCriterion(f: GrantFilter): boolean {
  return [f.ids, f.subject, f.clientId, f.dpopJkt, f.createdBefore, f.createdFrom, f.deviceGrantIds, f.requestIp, f.lastUsedBefore].some(
    (c) => c !== undefined,
  )
}

/** Splits id lists into chunks of 500, keeping the other criteria on every chunk. */
function chunkGrantFilter(f: GrantFilter): GrantFilter[] {
  const CHUNK = 500
  if (f.ids !== undefined && f.ids.length > CHUNK) {
    const out: GrantFilter[] = []
    for (let i = 0; i < f.ids.length; i += CHUNK) out.push(...chunkGrantFilter({ ...f, ids: f.ids.slice(i, i + CHUNK) }))
    return out
  }
  if (f.deviceGrantIds !== undefined && f.deviceGrantIds.length > CHUNK) {
    const out: GrantFilter[] = []
    for (let i = 0; i < f.deviceGrantIds.length; i += CHUNK) out.push({ ...f, deviceGrantIds: f.deviceGrantIds.slice(i, i + CHUNK) })
    return out
  }
  return [f]
}

function grantFilterExpression(eb: ExpressionBuilder<DevicegateDatabase, 'grants'>, f: GrantFilter): Expression<SqlBool> {
  const parts: Expression<SqlBool>[] = []
  if (f.ids !== undefined) parts.push(f.ids.length === 0 ? NEVER : eb('grants.id', 'in', [...f.ids]))
  if (f.subject !== undefined) parts.push(eb('grants.subject', '=', f.subject))
  if (f.clientId !== undefined) parts.push(eb('grants.client_id', '=', f.clientId))
  if (f.dpopJkt !== undefined) parts.push(eb('grants.dpop_jkt', '=', f.dpopJkt))
  if (f.createdBefore !== undefined) parts.push(eb('grants.created_at', '<', f.createdBefore))
  if (f.createdFrom !== undefined) parts.push(eb('grants.created_at', '>=', f.createdFrom))
  if (f.deviceGrantIds !== undefined) {
    parts.push(f.deviceGrantIds.length === 0 ? NEVER : eb('grants.device_grant_id', 'in', [...f.deviceGrantIds]))
  }
  if (f.requestIp !== undefined) {
    parts.push(
      eb(
        'grants.device_grant_id',
        'in',
        eb.selectFrom('device_grants').select('device_grants.id').where('device_grants.request_ip', '=', f.requestIp),
      ),
    )
  }
  if (f.revoked === true) parts.push(eb('grants.revoked_at', 'is not', null))
  if (f.revoked === false) parts.push(eb('grants.revoked_at', 'is', null))
  if (f.unexpiredAt !== undefined) {
    const at = f.unexpiredAt
    parts.push(eb.or([eb('grants.expires_at', 'is', null), eb('grants.expires_at', '>', at)]))
  }
  if (f.lastUsedBefore !== undefined) {
    parts.push(eb(eb.fn.coalesce('grants.last_used_at', 'grants.created_at'), '<', f.lastUsedBefore))
  }
  return eb.and(parts)
}
