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
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { DomainEvent } from '../core/events.js'
import type { Clock } from '../core/ports.js'
import type { AuditCheckpointRecord, AuditEventBody, AuditEventRecord, NewAuditEvent, Store } from '../storage/store.js'
import { sha256Hex } from '../system.js'

/** `prev_hash` of the first record. */
export const GENESIS_HASH = '0'.repeat(64)
/** A checkpoint is also written after this many appended events. */
export const CHECKPOINT_EVERY_EVENTS = 1000

// --- RFC 8785 canonical JSON ---------------------------------------------------------------------

/**
 * Serialises a JSON value per RFC 8785 (JCS): object members sorted by the UTF-16 code units of
 * their names, no whitespace, strings and numbers as ECMAScript `JSON.stringify` writes them
 * (RFC 8785 §3.2.2). `undefined` members are dropped, as JSON.stringify does.
 * @throws {TypeError} for non-finite numbers, bigints, functions and symbols (not JSON).
 * @see https://www.rfc-editor.org/rfc/rfc8785#section-3.2
 */
export function canonicalize(value: unknown): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false'
    case 'string':
      return JSON.stringify(value)
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalize: non-finite number')
      return JSON.stringify(value)
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalize(v))).join(',')}]`
      const toJSON = (value as { toJSON?: () => unknown }).toJSON
      if (typeof toJSON === 'function') return canonicalize(toJSON.call(value))
      const object = value as Record<string, unknown>
      // Default sort compares UTF-16 code units, which is what RFC 8785 §3.2.3 requires.
      let members = ''
      for (const k of Object.keys(object).sort()) {
        const v = object[k]
        if (v !== undefined) members += `${members === '' ? '' : ','}${JSON.stringify(k)}:${canonicalize(v)}`
      }
      return `{${members}}`
    }
    default:
      throw new TypeError(`canonicalize: ${typeof value} is not JSON`)
  }
}

/** The hashed object of a record, with wire (snake_case) names. */
export function auditRecordObject(body: AuditEventBody): Record<string, unknown> {
  return {
    seq: body.seq,
    time: body.time,
    type: body.type,
    actor: body.actor,
    client_id: body.clientId,
    subject: body.subject,
    ip: body.ip,
    grant_id: body.grantId,
    details: body.details,
  }
}

/**
 * JCS of {@link auditRecordObject}, written out directly (members already in RFC 8785 order) so
 * that verifying a million records does not sort keys a million times. Equal to
 * `canonicalize(auditRecordObject(body))`; a test holds them equal.
 */
export function canonicalAuditRecord(body: AuditEventBody): string {
  const j = JSON.stringify
  return (
    `{"actor":${j(body.actor)},"client_id":${j(body.clientId)},"details":${j(body.details)},` +
    `"grant_id":${j(body.grantId)},"ip":${j(body.ip)},"seq":${body.seq},"subject":${j(body.subject)},` +
    `"time":${body.time},"type":${j(body.type)}}`
  )
}

/**
 * `hash = SHA-256(prev_hash ‖ JCS(record))`, hex. Hashed in one shot over the concatenated text
 * ({@link sha256Hex}): the same UTF-8 bytes as feeding the two parts to a streaming hash, for
 * a fraction of its cost (it runs once per event on every request that records one).
 */
export function chainHash(prevHash: string, body: AuditEventBody): string {
  return sha256Hex(prevHash + canonicalAuditRecord(body))
}

// --- checkpoints ---------------------------------------------------------------------------------

/**
 * The public id of a checkpoint key: the first 12 base64url characters of
 * SHA-256("devicegate-audit-key:" ‖ key). Signatures and seals carry it, so a verifier (or an
 * instance) holding another key can say "key mismatch" rather than "forged".
 */
export function auditKeyId(key: Uint8Array): string {
  // Every seal names the key: computed once per key object, not once per record.
  let id = keyIds.get(key)
  if (id === undefined) {
    id = createHash('sha256').update('devicegate-audit-key:').update(key).digest('base64url').slice(0, 12)
    keyIds.set(key, id)
  }
  return id
}

/** Key ids by key object. A key is never mutated after loading ({@link loadCheckpointKey}). */
const keyIds = new WeakMap<Uint8Array, string>()

const hmac = (key: Uint8Array, text: string) => createHmac('sha256', key).update(text).digest('base64url')

/** `<key id>.<base64url HMAC-SHA256 over seq.hash.time>`. */
export function signCheckpoint(key: Uint8Array, c: { seq: number; hash: string; time: number }): string {
  return `${auditKeyId(key)}.${hmac(key, `${c.seq}.${c.hash}.${c.time}`)}`
}

/** The key id a signature or seal names; undefined for a signature from before key ids. */
export function signatureKeyId(signature: string): string | undefined {
  const dot = signature.indexOf('.')
  return dot > 0 ? signature.slice(0, dot) : undefined
}

function equalText(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** Constant-time check of a checkpoint's signature (with or without a key id). */
export function isCheckpointSignatureValid(key: Uint8Array, c: AuditCheckpointRecord): boolean {
  const mac = hmac(key, `${c.seq}.${c.hash}.${c.time}`)
  return signatureKeyId(c.signature) === undefined ? equalText(c.signature, mac) : equalText(c.signature, `${auditKeyId(key)}.${mac}`)
}

/**
 * The keyed seal of one record: `<key id>.<base64url HMAC-SHA256 over "rec.seq.hash">`. The hash
 * chain alone can be re-linked by anyone who can write the database (SHA-256 needs no key); a
 * seal cannot be recomputed without the checkpoint key, so the first record whose seal fails is
 * the first one rewritten, however the chain after it was repaired.
 */
export function sealAuditRecord(key: Uint8Array, r: { seq: number; hash: string }): string {
  return `${auditKeyId(key)}.${hmac(key, `rec.${r.seq}.${r.hash}`)}`
}

/**
 * Loads the checkpoint key: from the environment variable `envName` when given (at least 32
 * characters), otherwise from `keyFile`, creating it (32 random bytes, hex, mode 0600) on first
 * use. Several instances on PostgreSQL must share the key: use the environment variable there.
 * @throws {Error} when the variable is named but unset or short.
 */
export async function loadCheckpointKey(opts: { envName?: string | undefined; keyFile: string; env?: Readonly<Record<string, string | undefined>> }): Promise<Uint8Array> {
  const env = opts.env ?? process.env
  if (opts.envName !== undefined) {
    const value = env[opts.envName]
    if (value === undefined || value.length < 32) throw new Error(`audit checkpoint key: environment variable ${opts.envName} must hold at least 32 characters`)
    return Buffer.from(value, 'utf8')
  }
  try {
    const text = (await readFile(opts.keyFile, 'utf8')).trim()
    if (text.length >= 64) return Buffer.from(text, 'hex')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dirname(opts.keyFile), { recursive: true })
  const key = randomBytes(32)
  // `wx`: never overwrite a key another process created meanwhile; read that one instead.
  try {
    await writeFile(opts.keyFile, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
    await chmod(opts.keyFile, 0o600)
    return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    return Buffer.from((await readFile(opts.keyFile, 'utf8')).trim(), 'hex')
  }
}

/** Reads checkpoints from a JSON Lines file (missing file: none); bad lines are skipped. */
export async function readCheckpointFile(path: string): Promise<AuditCheckpointRecord[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const out: AuditCheckpointRecord[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    try {
      const c = JSON.parse(line) as AuditCheckpointRecord
      if (Number.isInteger(c.seq) && typeof c.hash === 'string' && Number.isInteger(c.time) && typeof c.signature === 'string') out.push(c)
    } catch {
      // a torn last line after a crash
    }
  }
  return out
}

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

// --- verification --------------------------------------------------------------------------------

/** What kind of damage {@link verifyAuditLog} found. */
export type AuditProblemKind =
  | 'edited'
  | 'deleted'
  | 'inserted'
  | 'reordered'
  | 'truncated'
  | 'checkpoint_mismatch'
  | 'forged_checkpoint'
  | 'key_mismatch'
  | 'rewritten'
  | 'head_mismatch'

export interface AuditProblem {
  kind: AuditProblemKind
  /** The first record concerned (for `truncated`: the first missing seq). */
  seq: number
  message: string
}

export interface AuditVerification {
  ok: boolean
  /** Records checked (up to the first problem). */
  checked: number
  lastSeq: number
  /** Signed checkpoints checked (table and file together). */
  checkpoints: number
  /** Records after the newest checkpoint: their truncation cannot be proven yet. */
  uncheckpointed: number
  /** The first problem; verification stops at a chain break. */
  problem?: AuditProblem
  warnings: string[]
}

/** Whether `r` hashes to its stored hash when its seq is taken to be `seq`. */
function hashesAs(r: AuditEventRecord, seq: number): boolean {
  return chainHash(r.prevHash, { ...r, seq }) === r.hash
}

/** The seq near `r.seq` at which `r` was hashed (a renumbered record), if any. */
function originalSeq(r: AuditEventRecord): number | undefined {
  for (let d = 1; d <= 5; d++) {
    if (hashesAs(r, r.seq + d)) return r.seq + d
    if (r.seq - d >= 1 && hashesAs(r, r.seq - d)) return r.seq - d
  }
  return undefined
}

/**
 * Names the damage at the first record `r` that does not continue the verified chain
 * (expected seq `e`, expected `prev_hash` `prev`), looking at the record after it (`next`).
 */
function classify(r: AuditEventRecord, next: AuditEventRecord | undefined, e: number, prev: string): AuditProblem {
  if (r.seq > e) {
    const last = r.seq - 1
    return { kind: 'deleted', seq: e, message: last === e ? `record ${e} was deleted` : `records ${e}–${last} were deleted` }
  }
  const selfOk = r.hash === chainHash(r.prevHash, r)
  const orig = selfOk ? undefined : originalSeq(r)
  const nextOrig = next === undefined || hashesAs(next, next.seq) ? undefined : originalSeq(next)
  if (orig !== undefined && orig > e) {
    if (orig === e + 1 && nextOrig === e) return { kind: 'reordered', seq: e, message: `records ${e} and ${e + 1} were swapped` }
    return {
      kind: 'deleted',
      seq: e,
      message: `${orig - e === 1 ? `record ${e} was` : `records ${e}–${orig - 1} were`} deleted and later records renumbered`,
    }
  }
  if (orig !== undefined && orig < e) {
    return { kind: 'inserted', seq: orig, message: `${e - orig} record(s) were inserted at seq ${orig} (record ${orig} was originally ${r.type} at seq ${orig})` }
  }
  if (next !== undefined && nextOrig === e && next.prevHash === prev) {
    return { kind: 'inserted', seq: e, message: `record ${e} was inserted (the original record ${e} follows it, renumbered)` }
  }
  if (selfOk && r.prevHash !== prev && e > 1) {
    return { kind: 'edited', seq: e - 1, message: `record ${e - 1} was edited (its hash was recomputed; record ${e} still links to the original)` }
  }
  return { kind: 'edited', seq: e, message: `record ${e} was edited` }
}

/** The problem for something signed or sealed with another checkpoint key than the verifier's. */
function keyMismatch(what: string, seq: number, theirs: string, ours: string): AuditProblem {
  return {
    kind: 'key_mismatch',
    seq,
    message:
      `${what} at seq ${seq} was signed with checkpoint key ${theirs}, but this verifier has key ${ours}: ` +
      'not a forgery as far as can be told; give every instance and the verifier the same key ' +
      '(governance.audit.checkpoint_key_env or a shared checkpoint_key_file)',
  }
}

/**
 * Checks a chain-consistent record's keyed seal: the first record whose seal fails was rewritten
 * (edited, moved or replaced) and the chain re-linked after it. Records without a seal are
 * accepted only before the first sealed one (written before seals, or without a key).
 */
function checkSeal(key: Uint8Array, keyId: string, r: AuditEventRecord, sealSeen: boolean): AuditProblem | undefined {
  if (r.mac == null) {
    return sealSeen ? { kind: 'rewritten', seq: r.seq, message: `record ${r.seq} has no seal although earlier records do: it was rewritten or its seal removed` } : undefined
  }
  const kid = signatureKeyId(r.mac)
  if (kid !== keyId) return keyMismatch('record', r.seq, kid ?? '(none)', keyId)
  if (equalText(r.mac, sealAuditRecord(key, r))) return undefined
  return {
    kind: 'rewritten',
    seq: r.seq,
    message: `record ${r.seq} was rewritten and the chain re-linked after it: its keyed seal does not match (edited, swapped with another record, or replaced)`,
  }
}

/** Options of {@link verifyAuditLog}. */
export interface VerifyAuditOptions {
  /** Checkpoint key; without it signatures cannot be checked (a warning says so). */
  key?: Uint8Array | undefined
  /** Checkpoints kept outside the database (JSON Lines), checked with the table's. */
  checkpointFile?: string | undefined
  /** Records per read. Default: 10000. */
  pageSize?: number
}

/**
 * Verifies the whole chain in `seq` order and the signed checkpoints.
 *
 * Reports the first problem: a record edited (its content no longer hashes to its stored hash,
 * or its hash was recomputed and the next record no longer links to it), deleted (a gap in
 * `seq`, or renumbered records that hash at a later seq), inserted (a record followed by the
 * original renumbered one), reordered (two records that hash at each other's seq), a chain that
 * disagrees with a signed checkpoint, a forged checkpoint, or a log cut short (it ends before
 * the newest signed checkpoint's seq).
 *
 * With the key, each record's keyed seal is checked too, so a record rewritten with the chain
 * re-linked after it (edited, or swapped with another, and every later hash recomputed) is named
 * itself (`rewritten`), not the next checkpoint. A checkpoint or seal made with another key
 * (another instance's own key) is reported as `key_mismatch` naming both key ids, not as forged.
 */
export async function verifyAuditLog(store: Store, options: VerifyAuditOptions = {}): Promise<AuditVerification> {
  const pageSize = options.pageSize ?? 10_000
  const warnings: string[] = []
  const fromFile = options.checkpointFile === undefined ? [] : await readCheckpointFile(options.checkpointFile)
  const all = [...(await store.listAuditCheckpoints()), ...fromFile]
  const checkpoints = new Map<number, AuditCheckpointRecord>()
  let forged: AuditCheckpointRecord | undefined
  let otherKey: AuditCheckpointRecord | undefined
  const ourKeyId = options.key === undefined ? undefined : auditKeyId(options.key)
  for (const c of all) {
    if (options.key !== undefined && !isCheckpointSignatureValid(options.key, c)) {
      const kid = signatureKeyId(c.signature)
      if (kid !== undefined && kid !== ourKeyId) otherKey ??= c
      else forged ??= c
      continue
    }
    const seen = checkpoints.get(c.seq)
    if (seen !== undefined && seen.hash !== c.hash) warnings.push(`two signed checkpoints disagree at seq ${c.seq}`)
    checkpoints.set(c.seq, c)
  }
  if (options.key === undefined) warnings.push('no checkpoint key: checkpoint signatures were not checked')
  const newestCheckpoint = Math.max(0, ...checkpoints.keys())
  const result = (checked: number, lastSeq: number, problem?: AuditProblem): AuditVerification => ({
    ok: problem === undefined,
    checked,
    lastSeq,
    checkpoints: checkpoints.size,
    uncheckpointed: Math.max(0, lastSeq - newestCheckpoint),
    ...(problem ? { problem } : {}),
    warnings,
  })
  if (forged !== undefined) {
    const legacy = signatureKeyId(forged.signature) === undefined ? ' (or was signed with another key, before signatures named their key)' : ''
    return result(0, 0, { kind: 'forged_checkpoint', seq: forged.seq, message: `the checkpoint at seq ${forged.seq} has an invalid signature${legacy}` })
  }
  if (otherKey !== undefined) return result(0, 0, keyMismatch('the checkpoint', otherKey.seq, signatureKeyId(otherKey.signature)!, ourKeyId!))
  let sealSeen = false

  // Read before the walk, so that events appended meanwhile by a live server are not mistaken
  // for a mismatch: the chain must reach this head and agree with it.
  const head = await store.readAuditHead()
  let hashAtHead = head.seq === 0 ? GENESIS_HASH : undefined
  let expected = 1
  let prev = GENESIS_HASH
  let checked = 0
  let page = await store.listAuditEvents({ afterSeq: 0, limit: pageSize })
  while (page.length > 0) {
    for (let i = 0; i < page.length; i++) {
      const r = page[i]!
      if (r.seq !== expected || r.prevHash !== prev || r.hash !== chainHash(prev, r)) {
        const next = page[i + 1] ?? (await store.listAuditEvents({ afterSeq: r.seq, limit: 1 }))[0]
        return result(checked, expected - 1, classify(r, next, expected, prev))
      }
      if (options.key !== undefined) {
        const problem = checkSeal(options.key, ourKeyId!, r, sealSeen)
        if (problem !== undefined) {
          const next = page[i + 1] ?? (await store.listAuditEvents({ afterSeq: r.seq, limit: 1 }))[0]
          // Not re-linked (the next record does not point at this hash): the chain tells more.
          if (problem.kind === 'rewritten' && next !== undefined && next.prevHash !== r.hash) return result(checked, expected - 1, classify(r, next, expected, prev))
          return result(checked, expected - 1, problem)
        }
        sealSeen ||= r.mac != null
      }
      const c = checkpoints.get(r.seq)
      if (c !== undefined && c.hash !== r.hash) {
        return result(checked, r.seq, {
          kind: 'checkpoint_mismatch',
          seq: r.seq,
          message: `the chain at seq ${r.seq} differs from the signed checkpoint of ${new Date(c.time * 1000).toISOString()}: a record at or before seq ${r.seq} was rewritten together with every later hash`,
        })
      }
      if (r.seq === head.seq) hashAtHead = r.hash
      prev = r.hash
      expected++
      checked++
    }
    page = await store.listAuditEvents({ afterSeq: expected - 1, limit: pageSize })
  }
  const lastSeq = expected - 1
  if (newestCheckpoint > lastSeq) {
    return result(checked, lastSeq, {
      kind: 'truncated',
      seq: lastSeq + 1,
      message: `the log ends at seq ${lastSeq}, but a signed checkpoint shows it reached seq ${newestCheckpoint}: records ${lastSeq + 1}–${newestCheckpoint} (at least) were cut off`,
    })
  }
  if (head.seq > lastSeq) {
    return result(checked, lastSeq, {
      kind: 'truncated',
      seq: lastSeq + 1,
      message: `the log ends at seq ${lastSeq}, but the chain-head row says it reached seq ${head.seq}`,
    })
  }
  if (hashAtHead !== head.hash) {
    return result(checked, lastSeq, {
      kind: 'head_mismatch',
      seq: head.seq,
      message: `the record at seq ${head.seq} does not match the chain-head row`,
    })
  }
  return result(checked, lastSeq)
}

/** One exported line (JSON Lines for a SIEM): the record with `details` as an object. */
export function exportLine(r: AuditEventRecord): string {
  return JSON.stringify({
    seq: r.seq,
    time: new Date(r.time * 1000).toISOString(),
    type: r.type,
    actor: r.actor,
    client_id: r.clientId,
    subject: r.subject,
    ip: r.ip,
    grant_id: r.grantId,
    details: JSON.parse(r.details) as unknown,
    prev_hash: r.prevHash,
    hash: r.hash,
  })
}

/**
 * Writes every record with `time >= sinceTime` as JSON Lines to `write`, in `seq` order, paging
 * through the table. @returns the number of lines written.
 */
export async function exportAuditLog(store: Store, sinceTime: number, write: (line: string) => void | Promise<void>): Promise<number> {
  let afterSeq = 0
  let n = 0
  for (;;) {
    const page = await store.listAuditEvents({ afterSeq, sinceTime, limit: 5000 })
    if (page.length === 0) return n
    for (const r of page) {
      await write(exportLine(r) + '\n')
      n++
    }
    afterSeq = page[page.length - 1]!.seq
  }
}
