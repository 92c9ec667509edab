/**
 * The tamper-evident audit log: append-only, hash-chained, with signed checkpoints of the chain
 * head kept apart from the log.
 *
 * Each record is `{ seq, time, type, actor, client_id, subject, ip, grant_id, details }` and
 * carries `hash = SHA-256(prev_hash ‖ JCS(record))` (hex; `prev_hash` of the first record is 64
 * zeros; JCS is the JSON Canonicalization Scheme, RFC 8785). Editing, deleting, inserting or
 * reordering a record breaks the chain at that record; {@link verifyAuditLog} names it.
 * Cutting records off the end leaves a valid chain, so a checkpoint — `(seq, hash, time)` signed
 * with HMAC-SHA256 under a key that is not in the database — is written every
 * `checkpointEverySeconds` and every {@link CHECKPOINT_EVERY_EVENTS} events, to the
 * `audit_checkpoints` table and (optionally) to a JSON Lines file; a log that ends before a
 * signed checkpoint's `seq` was cut short.
 *
 * Appends are group-committed: events recorded in the same turn of the event loop, or while a
 * batch is being written, go into one batch, one transaction each (see `Store.appendAuditEvents` for the cross-instance lock).
 *
 * @see https://www.rfc-editor.org/rfc/rfc8785
 */
import { appendFile, mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { DomainEvent } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import type { AuditCheckpointRecord, NewAuditEvent, Store } from '../storage/store.js'
import { canonicalize, chainHash } from './audit/chain.js'
import { sealAuditRecord, signCheckpoint } from './audit/checkpoints.js'
import { verifyAuditLog, type AuditVerification } from './audit/verification.js'

export * from './audit/chain.js'
export * from './audit/checkpoints.js'
export * from './audit/export.js'
export * from './audit/verification.js'

/** A checkpoint is also written after this many appended events. */
export const CHECKPOINT_EVERY_EVENTS = 1000

// --- the writer ----------------------------------------------------------------------------------

/** Detail keys that would carry a credential; their values are replaced before hashing. */
const SECRET_KEYS = /^(access_token|refresh_token|device_code|user_code|client_secret|password|token|secret|code)$/i

function scrub(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (details === undefined) return {}
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(details)) out[k] = SECRET_KEYS.test(k) ? '[redacted]' : v
  return out
}

/** Options of {@link AuditLog}. */
export interface AuditLogOptions {
  store: Store
  clock: Clock
  /** HMAC key for checkpoints; without one no checkpoints are written. */
  checkpointKey?: Uint8Array | undefined
  /** Also append every checkpoint to this JSON Lines file (kept apart from the database). */
  checkpointFile?: string | undefined
  /** Called with write failures (the caller logs them); appends never reject. */
  onError?: (err: unknown) => void
}

/**
 * Appends domain events to the audit log with group commit, and writes signed checkpoints.
 * One instance per process.
 */
export class AuditLog {
  readonly #store: Store
  readonly #clock: Clock
  readonly #key: Uint8Array | undefined
  readonly #file: string | undefined
  readonly #onError: (err: unknown) => void
  #queue: { event: NewAuditEvent; done: () => void }[] = []
  #draining: Promise<void> | undefined
  #sinceCheckpoint = 0
  #lastCheckpointSeq = -1

  constructor(options: AuditLogOptions) {
    this.#store = options.store
    this.#clock = options.clock
    this.#key = options.checkpointKey
    this.#file = options.checkpointFile
    this.#onError = options.onError ?? (() => {})
  }

  /** Turns a domain event into a record body (time now, details scrubbed and canonicalised). */
  toNewEvent(event: DomainEvent): NewAuditEvent {
    return {
      time: this.#clock.nowSeconds(),
      type: event.type,
      actor: event.actor ?? null,
      clientId: event.clientId ?? null,
      subject: event.subject ?? null,
      ip: event.ip ?? null,
      grantId: event.grantId ?? null,
      details: canonicalize(scrub(event.details)),
    }
  }

  /**
   * Appends one event. Resolves when the batch holding it is committed; never rejects (a failed
   * write is reported to `onError`, the events of that batch are lost and the chain stays valid).
   */
  append(event: DomainEvent): Promise<void> {
    const record = this.toNewEvent(event)
    return new Promise<void>((resolve) => {
      this.#queue.push({ event: record, done: resolve })
      this.#draining ??= this.#drain()
    })
  }

  /** Waits until everything appended so far is written. */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining
  }

  /**
   * Writes queued events until the queue is empty. `#draining` is cleared in the same synchronous
   * step as the last emptiness check, so an event appended at any moment is either seen by this
   * loop or starts the next one (never stranded in the queue).
   */
  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        // Let every request whose I/O is ready in this turn of the event loop add its event first:
        // one commit for all of them instead of one each.
        await new Promise((resolve) => setImmediate(resolve))
        const batch = this.#queue
        this.#queue = []
        try {
          const key = this.#key
          await this.#store.appendAuditEvents(
            batch.map((b) => b.event),
            chainHash,
            key === undefined ? undefined : (record) => sealAuditRecord(key, record),
          )
          this.#sinceCheckpoint += batch.length
        } catch (err) {
          this.#onError(err)
        }
        for (const b of batch) b.done()
        if (this.#sinceCheckpoint >= CHECKPOINT_EVERY_EVENTS) await this.checkpoint()
      }
    } finally {
      this.#draining = undefined
    }
  }

  /** Verifies the whole chain and the checkpoints with this log's key and checkpoint file ({@link verifyAuditLog}). */
  verify(): Promise<AuditVerification> {
    return verifyAuditLog(this.#store, { key: this.#key, checkpointFile: this.#file })
  }

  /**
   * Signs the current chain head and stores the checkpoint (table and file). Skipped without a
   * key, or when the head has not moved since this process's last checkpoint.
   * @returns the checkpoint written, if any.
   */
  async checkpoint(): Promise<AuditCheckpointRecord | undefined> {
    if (this.#key === undefined) return undefined
    try {
      const head = await this.#store.readAuditHead()
      this.#sinceCheckpoint = 0
      if (head.seq === 0 || head.seq === this.#lastCheckpointSeq) return undefined
      const unsigned = { seq: head.seq, hash: head.hash, time: this.#clock.nowSeconds() }
      const checkpoint = { ...unsigned, signature: signCheckpoint(this.#key, unsigned) }
      await this.#store.insertAuditCheckpoint(checkpoint)
      if (this.#file !== undefined) {
        await mkdir(dirname(this.#file), { recursive: true })
        await appendFile(this.#file, JSON.stringify(checkpoint) + '\n', { mode: 0o600 })
      }
      this.#lastCheckpointSeq = head.seq
      return checkpoint
    } catch (err) {
      this.#onError(err)
      return undefined
    }
  }
}
