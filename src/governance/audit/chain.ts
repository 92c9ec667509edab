/**
 * The audit log's hash chain: records in RFC 8785 canonical JSON (JCS) and
 * `hash = SHA-256(prev_hash ‖ JCS(record))` (see ../audit.ts for the whole design).
 * @see https://www.rfc-editor.org/rfc/rfc8785
 */
import type { AuditEventBody } from '../../storage/store.js'
import { sha256Hex } from '../../system.js'

/** `prev_hash` of the first record. */
export const GENESIS_HASH = '0'.repeat(64)

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
