/**
 * Verifying the audit log: the whole chain, the seals and the signed checkpoints, naming the
 * first damaged record and what kind of damage it is (see ../audit.ts).
 */
import type { AuditCheckpointRecord, AuditEventRecord, Store } from '../../storage/store.js'
import { constantTimeEqual } from '../../system.js'
import { chainHash, GENESIS_HASH } from './chain.js'
import { auditKeyId, isCheckpointSignatureValid, readCheckpointFile, sealAuditRecord, signatureKeyId } from './checkpoints.js'

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
  if (constantTimeEqual(r.mac, sealAuditRecord(key, r))) return undefined
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
