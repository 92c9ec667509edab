/**
 * How each client's tool is used: the share of approvals that were same-device (the
 * device flow used as a workaround for a browser sign-in, RFC 10027 / BCP 247) and the token
 * storage its device authorizations declared. Read by the inventory's admin route, the console
 * and the compliance report.
 *
 * Same-device approvals are counted from the `device_code.approved` records of the audit log
 * (their `sameDevice` detail, or their addresses and User-Agents), so the figures are exactly
 * what an auditor can recount with `devicegate audit export`; the scan reads the period's
 * records in pages of 5,000.
 */
import { STORAGE_CLASSES, type StorageClass } from '../core/storage-class.js'
import { SAME_DEVICE_ADVICE } from '../policy/same-device.js'
import type { Store } from '../storage/store.js'
import { approvalSameDevice } from './anomalies.js'

/** One client's practices over a period. */
export interface ClientPractices {
  clientId: string
  approvals: number
  /** Approvals judged same-device. */
  sameDevice: number
  /** Approvals where same-device could not be told (no platform on one side). */
  sameDeviceUnknown: number
  /** sameDevice / approvals, 0 when there were none. */
  sameDeviceShare: number
  /** Audit sequence numbers of the same-device approvals (at most 20), for `audit verify`. */
  sameDeviceSeqs: number[]
  /** Device authorizations by declared storage class. */
  storage: Record<StorageClass, number>
  /** The advice when any approval was same-device. */
  advice?: string
}

/** The practices of every client seen in the period, plus the audit range scanned. */
export interface PracticesReport {
  /** Epoch seconds. */
  since: number
  until: number
  clients: ClientPractices[]
  /** First and last audit sequence numbers of the period's approvals read, null when it had none. */
  auditRange: { firstSeq: number; lastSeq: number } | null
}

const PAGE = 5000

/**
 * The period over which a client's practices are judged when none is asked for: the last 90 days.
 * One quarter, the cadence of a recurring access review, long enough that a tool used monthly
 * shows up. Used by the console's People and apps page and the admin API's `/clients/practices`.
 */
export const PRACTICES_PERIOD_DAYS = 90

/**
 * The default practices period ending at `until`: `[until − 90 days, until)`.
 *
 * @param until Epoch seconds (usually now).
 * @returns `since` and `until`, epoch seconds.
 */
export function defaultPracticesPeriod(until: number): { since: number; until: number } {
  return { since: until - PRACTICES_PERIOD_DAYS * 86_400, until }
}

/**
 * Summarises same-device approvals and declared storage per client for `[since, until)`.
 */
export async function summarizeClientPractices(
  store: Pick<Store, 'listAuditEvents' | 'countStorageClasses' | 'listStorageClassClients'>,
  period: { since: number; until: number },
): Promise<PracticesReport> {
  const byClient = new Map<string, ClientPractices>()
  const entry = (clientId: string): ClientPractices => {
    let e = byClient.get(clientId)
    if (e === undefined)
      byClient.set(
        clientId,
        (e = {
          clientId,
          approvals: 0,
          sameDevice: 0,
          sameDeviceUnknown: 0,
          sameDeviceShare: 0,
          sameDeviceSeqs: [],
          storage: Object.fromEntries(STORAGE_CLASSES.map((c) => [c, 0])) as Record<StorageClass, number>,
        }),
      )
    return e
  }
  let afterSeq = 0
  let range: PracticesReport['auditRange'] = null
  for (;;) {
    const page = await store.listAuditEvents({ afterSeq, sinceTime: period.since, untilTime: period.until, types: ['device_code.approved'], limit: PAGE })
    for (const r of page) {
      range = range === null ? { firstSeq: r.seq, lastSeq: r.seq } : { firstSeq: range.firstSeq, lastSeq: r.seq }
      if (r.clientId === null) continue
      const e = entry(r.clientId)
      e.approvals++
      let details: Record<string, unknown> = {}
      try {
        details = JSON.parse(r.details) as Record<string, unknown>
      } catch {
        // An unreadable record counts as unknown; `audit verify` reports the record itself.
      }
      const same = approvalSameDevice({ type: 'device_code.approved', ip: r.ip, details })
      if (same === true) {
        e.sameDevice++
        if (e.sameDeviceSeqs.length < 20) e.sameDeviceSeqs.push(r.seq)
      } else if (same === null) e.sameDeviceUnknown++
    }
    if (page.length < PAGE) break
    afterSeq = page[page.length - 1]!.seq
  }
  // Declarations are counted from their own table (by declaration time), per client.
  for (const clientId of await store.listStorageClassClients(period.since))
    entry(clientId).storage = await store.countStorageClasses({ since: period.since, clientId })
  const clients = [...byClient.values()].sort((a, b) => a.clientId.localeCompare(b.clientId))
  for (const c of clients) {
    c.sameDeviceShare = c.approvals === 0 ? 0 : c.sameDevice / c.approvals
    if (c.sameDevice > 0) c.advice = SAME_DEVICE_ADVICE
  }
  return { since: period.since, until: period.until, clients, auditRange: range }
}
