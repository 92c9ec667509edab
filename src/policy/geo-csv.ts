/**
 * Country and autonomous system from the CSV files of the `@ip-location-db/*` npm packages
 * (https://github.com/sapics/ip-location-db), read into sorted range tables at start-up.
 *
 * Formats (no header; ranges inclusive; addresses in text form, the `-ipv4.csv` / `-ipv6.csv`
 * files, not the `-num` ones):
 * - country: `ip_range_start,ip_range_end,country_code` (`@ip-location-db/asn-country`,
 *   `geo-whois-asn-country`, `dbip-country`, …);
 * - ASN: `ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization`
 *   (`@ip-location-db/asn`, `iptoasn-asn`, …); the organisation may be quoted (RFC 4180).
 *
 * A lookup is a binary search (IPv4 as numbers, IPv6 as bigints): synchronous, in memory, as the
 * approval path needs. Rows that do not parse are counted and skipped, never guessed.
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { createMaxmindGeoLookup, createStaticGeoLookup, NO_GEO, UNKNOWN_GEO, type GeoInfo, type GeoLookup, type GeoNetwork } from './geo.js'
import { canonicalIp, toBigInt } from './net.js'

/** Sorted, non-overlapping ranges of one family with a value each. */
class RangeTable<T> {
  #rows: { start: bigint; end: bigint; value: T }[] = []
  #sorted = true

  add(start: bigint, end: bigint, value: T): void {
    const last = this.#rows[this.#rows.length - 1]
    if (last !== undefined && start < last.start) this.#sorted = false
    this.#rows.push({ start, end, value })
  }

  get size(): number {
    return this.#rows.length
  }

  /** The value of the range containing `ip`, if any. */
  find(ip: bigint): T | undefined {
    if (!this.#sorted) {
      this.#rows.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
      this.#sorted = true
    }
    let lo = 0
    let hi = this.#rows.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const r = this.#rows[mid]!
      if (ip < r.start) hi = mid - 1
      else if (ip > r.end) lo = mid + 1
      else return r.value
    }
    return undefined
  }
}

/** Splits one CSV line (RFC 4180 quoting). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"'
        i++
      } else if (c === '"') quoted = false
      else field += c
    } else if (c === '"') quoted = true
    else if (c === ',') {
      out.push(field)
      field = ''
    } else field += c
  }
  out.push(field)
  return out
}

/** What {@link loadCsvGeoTables} read: rows per file kind and rows skipped. */
export interface CsvGeoStats {
  countryRanges: number
  asnRanges: number
  skipped: number
}

async function readRanges(file: string, onRow: (start: { family: 'ipv4' | 'ipv6'; value: bigint }, end: bigint, cols: string[]) => boolean): Promise<number> {
  let skipped = 0
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === '') continue
    const cols = splitCsvLine(line)
    const start = toBigInt(canonicalIp(cols[0] ?? ''))
    const end = toBigInt(canonicalIp(cols[1] ?? ''))
    if (start === undefined || end === undefined || start.family !== end.family || end.value < start.value || !onRow(start, end.value, cols)) skipped++
  }
  return skipped
}

/**
 * Reads ip-location-db CSV files into a {@link GeoLookup}.
 * @param files.countryCsv Country files (IPv4 and IPv6 may be separate files).
 * @param files.asnCsv ASN files.
 * @throws when a file cannot be read (at start-up).
 */
export async function createCsvGeoLookup(files: { countryCsv?: readonly string[]; asnCsv?: readonly string[] }): Promise<GeoLookup & { stats: CsvGeoStats }> {
  const country = { ipv4: new RangeTable<string>(), ipv6: new RangeTable<string>() }
  const asn = { ipv4: new RangeTable<{ asn: number; org: string | null }>(), ipv6: new RangeTable<{ asn: number; org: string | null }>() }
  let skipped = 0
  for (const file of files.countryCsv ?? [])
    skipped += await readRanges(file, (start, end, cols) => {
      const code = cols[2]?.trim() ?? ''
      if (!/^[A-Za-z]{2}$/.test(code)) return false
      country[start.family].add(start.value, end, code.toUpperCase())
      return true
    })
  for (const file of files.asnCsv ?? [])
    skipped += await readRanges(file, (start, end, cols) => {
      const n = Number(cols[2])
      if (!Number.isInteger(n) || n < 0 || n > 4_294_967_295) return false
      const org = cols[3]?.trim()
      asn[start.family].add(start.value, end, { asn: n, org: org ? org : null })
      return true
    })
  const stats = { countryRanges: country.ipv4.size + country.ipv6.size, asnRanges: asn.ipv4.size + asn.ipv6.size, skipped }
  return {
    stats,
    lookup(ip: string): GeoInfo {
      const addr = toBigInt(canonicalIp(ip))
      if (addr === undefined) return UNKNOWN_GEO
      const c = country[addr.family].find(addr.value)
      const a = asn[addr.family].find(addr.value)
      return { country: c ?? null, asn: a?.asn ?? null, asOrg: a?.org ?? null }
    },
  }
}

/** Answers from `primary`, filling each field it does not know from `secondary`. */
export function mergeGeoLookups(primary: GeoLookup, secondary: GeoLookup): GeoLookup {
  return {
    lookup(ip) {
      const p = primary.lookup(ip)
      if (p.country !== null && p.asn !== null) return p
      const s = secondary.lookup(ip)
      return { country: p.country ?? s.country, asn: p.asn ?? s.asn, asOrg: p.asn !== null ? p.asOrg : s.asOrg }
    },
  }
}

/** The `geo` configuration section, resolved (absolute paths). */
export interface GeoSources {
  countryDb?: string | undefined
  asnDb?: string | undefined
  countryCsv?: readonly string[] | undefined
  asnCsv?: readonly string[] | undefined
  networks?: readonly GeoNetwork[] | undefined
}

/**
 * The lookup the server uses: configured networks first, then MaxMind DB files, then
 * ip-location-db CSV files (each filling what the earlier ones do not know).
 * @throws when a configured file cannot be read.
 */
export async function openGeoLookup(geo: GeoSources | undefined): Promise<GeoLookup> {
  let lookup: GeoLookup = NO_GEO
  if (geo?.countryDb || geo?.asnDb) lookup = await createMaxmindGeoLookup({ countryDb: geo.countryDb, asnDb: geo.asnDb })
  if ((geo?.countryCsv?.length ?? 0) > 0 || (geo?.asnCsv?.length ?? 0) > 0) {
    const csv = await createCsvGeoLookup({ countryCsv: geo?.countryCsv ?? [], asnCsv: geo?.asnCsv ?? [] })
    lookup = lookup === NO_GEO ? csv : mergeGeoLookups(lookup, csv)
  }
  return createStaticGeoLookup(geo?.networks ?? [], lookup)
}
