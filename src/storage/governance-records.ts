/**
 * Storage of governance records: detected anomalies (`anomalies`) and administrator overrides of
 * configured users and clients (`principal_overrides`). Kysely implementation:
 * `kysely/governance-records.ts`.
 */

/** A detected anomaly and the action taken. */
export interface AnomalyRecord {
  id: string
  /** Stable detector name, e.g. `refresh_token_reuse`. */
  kind: string
  time: number
  /** At most one anomaly per key (e.g. one per grant and network); null = never de-duplicated. */
  dedupeKey: string | null
  clientId: string | null
  subject: string | null
  grantId: string | null
  ip: string | null
  /** `alert`, `revoke_grant` or `revoke_user`. */
  action: string
  /** JSON text. */
  details: string
}

export type PrincipalKind = 'user' | 'client'

/** An administrator's override of a user or client that comes from configuration. */
export interface PrincipalOverrideRecord {
  kind: PrincipalKind
  id: string
  state: 'disabled' | 'deleted'
  changedAt: number
  changedBy: string | null
}

/** Anomalies and principal overrides. */
export interface GovernanceRecordStore {
  /** Stores an anomaly. @returns false (nothing stored) when its `dedupeKey` was seen before. */
  insertAnomaly(anomaly: AnomalyRecord): Promise<boolean>
  /** Anomalies with `time >= sinceTime`, oldest first, at most `limit`. */
  listAnomalies(query: { sinceTime: number; kind?: string; limit: number }): Promise<AnomalyRecord[]>
  /** Sets (upserts) the administrator override of a configured user or client. */
  setPrincipalOverride(override: PrincipalOverrideRecord): Promise<void>
  /** Removes an override (the configured state applies again). @returns false when there was none. */
  clearPrincipalOverride(kind: PrincipalKind, id: string): Promise<boolean>
  listPrincipalOverrides(): Promise<PrincipalOverrideRecord[]>
}
