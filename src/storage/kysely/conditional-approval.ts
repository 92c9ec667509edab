/**
 * Conditional approval on Kysely: `device_grant_policy` and `totp_secrets` (see
 * ../conditional-approval.ts). Writes are upserts (`INSERT … ON CONFLICT DO UPDATE`).
 */
import type { Kysely, Selectable } from 'kysely'
import type { ConditionalApprovalStore, DeviceGrantPolicyRecord } from '../conditional-approval.js'
import type { KyselyContext } from './context.js'
import { PreparedQuery } from './prepared.js'
import type { DevicegateDatabase } from './tables.js'

export class KyselyConditionalApprovalStore implements ConditionalApprovalStore {
  readonly #ctx: KyselyContext
  readonly #db: Kysely<DevicegateDatabase>
  /** Read on every approval and token response: compiled once (see {@link PreparedQuery}). */
  readonly #deviceGrantPolicyById: PreparedQuery<Selectable<DevicegateDatabase['device_grant_policy']>>

  constructor(ctx: KyselyContext) {
    this.#ctx = ctx
    this.#db = ctx.db
    const db = ctx.db
    this.#deviceGrantPolicyById = new PreparedQuery(1, (id) =>
      db
        .selectFrom('device_grant_policy')
        // Explicit columns, not `*`: runs as a named statement on PostgreSQL (prepared.ts).
        .select(['device_grant_id', 'posture_json', 'decision', 'explanation_json', 'decided_at'])
        .where('device_grant_id', '=', id),
    )
  }

  saveDevicePosture(deviceGrantId: string, postureJson: string): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('device_grant_policy')
        .values({ device_grant_id: deviceGrantId, posture_json: postureJson, decision: null, explanation_json: null, decided_at: null })
        .onConflict((oc) => oc.column('device_grant_id').doUpdateSet({ posture_json: postureJson }))
        .execute()
    })
  }

  saveDeviceGrantDecision(deviceGrantId: string, decision: 'allow' | 'deny' | 'step_up', explanationJson: string, now: number): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('device_grant_policy')
        .values({ device_grant_id: deviceGrantId, posture_json: null, decision, explanation_json: explanationJson, decided_at: now })
        .onConflict((oc) => oc.column('device_grant_id').doUpdateSet({ decision, explanation_json: explanationJson, decided_at: now }))
        .execute()
    })
  }

  findDeviceGrantPolicy(deviceGrantId: string): Promise<DeviceGrantPolicyRecord | undefined> {
    return this.#ctx.guard(async () => {
      const [row] = await this.#deviceGrantPolicyById.execute(this.#db, deviceGrantId)
      return (
        row && {
          deviceGrantId: row.device_grant_id,
          postureJson: row.posture_json,
          decision: row.decision as DeviceGrantPolicyRecord['decision'],
          explanationJson: row.explanation_json,
          decidedAt: row.decided_at,
        }
      )
    })
  }

  saveTotpSecret(username: string, secret: string, now: number): Promise<void> {
    return this.#ctx.guard(async () => {
      await this.#db
        .insertInto('totp_secrets')
        .values({ username, secret, created_at: now })
        .onConflict((oc) => oc.column('username').doUpdateSet({ secret, created_at: now }))
        .execute()
    })
  }

  findTotpSecret(username: string): Promise<{ secret: string; createdAt: number } | undefined> {
    return this.#ctx.guard(async () => {
      const row = await this.#db.selectFrom('totp_secrets').select(['secret', 'created_at']).where('username', '=', username).executeTakeFirst()
      return row && { secret: row.secret, createdAt: row.created_at }
    })
  }
}
