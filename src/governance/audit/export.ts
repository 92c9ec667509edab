/**
 * Exporting the audit log as JSON Lines (for a SIEM).
 */
import type { AuditEventRecord, Store } from '../../storage/store.js'

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
