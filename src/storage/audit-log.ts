/**
 * Storage of the governance audit log: hash-chained events (`audit_events`), the chain head every
 * appender locks (`audit_head`) and signed checkpoints (`audit_checkpoints`). Kysely
 * implementation: `kysely/audit-log.ts`.
 */

/** The hashed part of an audit record: everything but the two hashes. */
export interface AuditEventBody {
  /** Position in the chain, from 1, without gaps. */
  seq: number
  /** Epoch seconds. */
  time: number
  /** `noun.verb` in the past tense, e.g. `device_code.approved`. */
  type: string
  /** Who acted: a username, `client:<id>`, `admin:<client id>`, `system`, or null. */
  actor: string | null
  clientId: string | null
  subject: string | null
  ip: string | null
  grantId: string | null
  /** Canonical JSON (RFC 8785) of the details object; never a token, code or secret value. */
  details: string
}

/** An audit record as stored: the body plus `prevHash` and `hash` (hex SHA-256). */
export interface AuditEventRecord extends AuditEventBody {
  prevHash: string
  hash: string
  /**
   * Keyed seal of this record's place in the chain (`<key id>.<HMAC-SHA256 over seq.hash>`, see
   * governance/audit.ts), written with the checkpoint key; null (or absent) for records written
   * without a key or before seals existed. Not part of the hash, so the chain stays verifiable
   * without the key.
   */
  mac?: string | null
}

/** An event to append; the store assigns `seq` and the hashes. */
export type NewAuditEvent = Omit<AuditEventBody, 'seq'>

/** A signed statement that the chain had `hash` at `seq` at `time`. */
export interface AuditCheckpointRecord {
  seq: number
  hash: string
  time: number
  /** base64url HMAC-SHA256 over `seq.hash.time`, with a key kept outside the database. */
  signature: string
}

/** What {@link AuditLogStore.listAuditEvents} selects. Times are epoch seconds. */
export interface AuditEventQuery {
  afterSeq?: number
  sinceTime?: number
  untilTime?: number
  types?: readonly string[]
  limit: number
}

/** The append-only, hash-chained audit log and its checkpoints. */
export interface AuditLogStore {
  /**
   * Appends events to the hash-chained audit log in one transaction that first updates the
   * chain-head row (`audit_head`), which locks it: appends from several instances are serialised
   * and every event gets the next `seq` and the hash of its predecessor. `chain(prevHash, event)`
   * computes an event's hash (SHA-256 over the predecessor's hash and the event's canonical JSON);
   * it runs inside the transaction, as does `seal(record)`, whose value is stored as `mac`.
   * Returns the stored records, in order.
   */
  appendAuditEvents(
    events: readonly NewAuditEvent[],
    chain: (prevHash: string, event: AuditEventBody) => string,
    seal?: (record: AuditEventRecord) => string,
  ): Promise<AuditEventRecord[]>
  /** The chain head: last `seq` (0 when empty) and its hash (64 zeros when empty). */
  readAuditHead(): Promise<{ seq: number; hash: string }>
  /**
   * Events in `seq` order with `seq > afterSeq` (default 0), `sinceTime <= time < untilTime` (epoch
   * seconds; either bound may be absent) and, when `types` is given, a `type` among them (an empty
   * list matches nothing); at most `limit`. Filtering here, not in the caller, keeps a report over a
   * 90-day window from reading every record of it.
   */
  listAuditEvents(query: AuditEventQuery): Promise<AuditEventRecord[]>
  /** Stores a signed checkpoint of the chain head; a second one for the same `seq` is ignored. */
  insertAuditCheckpoint(checkpoint: AuditCheckpointRecord): Promise<void>
  /** Every checkpoint, in `seq` order. */
  listAuditCheckpoints(): Promise<AuditCheckpointRecord[]>
}
