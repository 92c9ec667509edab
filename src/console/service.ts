/**
 * The console's read models: what each page shows, assembled from the governance services and the
 * console's storage domain (`storage/console-views.ts`). Pages parse requests and render these; decisions (revoking, disabling,
 * acknowledging) stay in the governance services the admin API and CLI use too.
 */
import type { Client, ClientDirectory } from '../core/model.js'
import type { StorageClass } from '../core/storage-class.js'
import type { Store } from '../storage/store.js'
import { chartWindow, toSeries, type HourlySeries } from './charts.js'

/** Risk tiers in display order (policy/schema.ts `RISK_TIERS`). */
export const TIERS = ['low', 'standard', 'high', 'admin'] as const

/** What the overview shows. */
export interface Overview {
  pendingCodes: number
  activeByTier: Record<(typeof TIERS)[number] | 'unknown', number>
  activeTotal: number
  openAnomalies: number
  firstHour: number
  series: HourlySeries[]
}

/** Counts and hourly series for the overview at `now` (epoch seconds). */
export async function loadOverview(store: Store, clients: ClientDirectory, now: number): Promise<Overview> {
  const { firstHour, from, to } = chartWindow(now)
  const [pendingCodes, byClient, openAnomalies, hourly] = await Promise.all([
    store.countPendingDeviceGrants(now),
    store.countActiveGrantsByClient(now),
    store.countOpenAnomalies(),
    store.countHourly(from, to),
  ])
  const activeByTier: Overview['activeByTier'] = { low: 0, standard: 0, high: 0, admin: 0, unknown: 0 }
  let activeTotal = 0
  for (const [clientId, n] of byClient) {
    const tier = clients.get(clientId)?.riskTier ?? (clients.get(clientId) === undefined ? 'unknown' : 'standard')
    activeByTier[tier] += n
    activeTotal += n
  }
  return {
    pendingCodes,
    activeByTier,
    activeTotal,
    openAnomalies,
    firstHour,
    series: [
      { key: 'approvals', label: 'Approvals', counts: toSeries(firstHour, hourly.approvals) },
      { key: 'denials', label: 'Denials by people', counts: toSeries(firstHour, hourly.denials) },
      { key: 'refusals', label: 'Refusals by policy', counts: toSeries(firstHour, hourly.refusals) },
      { key: 'anomalies', label: 'Anomalies', counts: toSeries(firstHour, hourly.anomalies) },
    ],
  }
}

/** Client ids of a risk tier among the configured clients. */
export function clientIdsOfTier(clients: readonly Client[], tier: string): string[] {
  return clients.filter((c) => (c.riskTier ?? 'standard') === tier).map((c) => c.id)
}

/** Encodes a keyset position for a URL. */
export function encodeCursor(time: number, id: string): string {
  return Buffer.from(JSON.stringify([time, id])).toString('base64url')
}

/** Decodes {@link encodeCursor}'s output; undefined when it is not one. */
export function decodeCursor(value: unknown): { time: number; id: string } | undefined {
  if (typeof value !== 'string' || value.length > 200) return undefined
  try {
    const [time, id] = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as [unknown, unknown]
    return Number.isInteger(time) && typeof id === 'string' ? { time: time as number, id } : undefined
  } catch {
    return undefined
  }
}

/**
 * A declared token storage class (issue 18 §1) in a few plain words, for list columns; the grant
 * page uses the full sentence of `describeStorageClass`. A declaration is the client's claim, not
 * a proof.
 */
export const STORAGE_LABELS: Readonly<Record<StorageClass, string>> = Object.freeze({
  keyring: 'system keychain',
  memory: 'memory only',
  encrypted_file: 'encrypted file',
  plaintext: 'plain file (readable by other programs)',
  unknown: 'not declared',
})
