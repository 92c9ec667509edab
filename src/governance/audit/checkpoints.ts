/**
 * The audit log's keys: checkpoints of the chain head signed with HMAC-SHA256, per-record seals,
 * the key ids both carry, and the checkpoint key and file (see ../audit.ts).
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { AuditCheckpointRecord } from '../../storage/store.js'
import { constantTimeEqual } from '../../system.js'

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

/** Constant-time check of a checkpoint's signature (with or without a key id). */
export function isCheckpointSignatureValid(key: Uint8Array, c: AuditCheckpointRecord): boolean {
  const mac = hmac(key, `${c.seq}.${c.hash}.${c.time}`)
  return signatureKeyId(c.signature) === undefined ? constantTimeEqual(c.signature, mac) : constantTimeEqual(c.signature, `${auditKeyId(key)}.${mac}`)
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
