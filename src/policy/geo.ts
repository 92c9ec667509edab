/**
 * IP → country / autonomous system, for network and proximity conditions.
 *
 * {@link GeoLookup} is the seam: production reads MaxMind DB (`.mmdb`) files with the `maxmind`
 * package — GeoLite2 or the `@ip-location-db/*-mmdb` packages (both record shapes are read) —
 * after a table of configured networks (private and corporate ranges no public database knows);
 * tests inject fixed answers with {@link createStaticGeoLookup}.
 */
import { open, type CountryResponse, type Reader } from 'maxmind'
import { canonicalIp, compileCidrs } from './net.js'

/** What the IP database knows about one address; null where it knows nothing. */
export interface GeoInfo {
  /** ISO 3166-1 alpha-2, upper case. */
  country: string | null
  asn: number | null
  asOrg: string | null
}

/** Looks up an address. Synchronous and in-memory: it runs on the approval path. */
export interface GeoLookup {
  lookup(ip: string): GeoInfo
}

export const UNKNOWN_GEO: Readonly<GeoInfo> = Object.freeze({ country: null, asn: null, asOrg: null })

/** A lookup that knows nothing (no database configured). */
export const NO_GEO: GeoLookup = { lookup: () => UNKNOWN_GEO }

/** One configured network: every address in `cidr` has these attributes. */
export interface GeoNetwork {
  cidr: string
  country?: string | undefined
  asn?: number | undefined
  asOrg?: string | undefined
}

/**
 * A lookup over a fixed table; the first entry containing the address wins, then `fallback`.
 * @throws {TypeError} when a `cidr` is malformed.
 */
export function createStaticGeoLookup(networks: readonly GeoNetwork[], fallback: GeoLookup = NO_GEO): GeoLookup {
  const entries = networks.map((n) => ({
    contains: compileCidrs([n.cidr]),
    info: Object.freeze({ country: n.country ?? null, asn: n.asn ?? null, asOrg: n.asOrg ?? null }),
  }))
  return {
    lookup(ip) {
      for (const e of entries) if (e.contains(ip)) return e.info
      return fallback.lookup(ip)
    },
  }
}

/** Record shapes of GeoLite2 (`country.iso_code`) and ip-location-db (`country_code`). */
interface MmdbRecord {
  country?: { iso_code?: string }
  registered_country?: { iso_code?: string }
  country_code?: string
  autonomous_system_number?: number
  autonomous_system_organization?: string
}

function countryOf(r: MmdbRecord | null): string | null {
  const code = r?.country?.iso_code ?? r?.country_code ?? r?.registered_country?.iso_code
  return typeof code === 'string' && /^[A-Za-z]{2}$/.test(code) ? code.toUpperCase() : null
}

/**
 * Opens MaxMind DB files. Either may be omitted; one file may hold both country and ASN.
 * @param files.countryDb Path of a country database (GeoLite2-Country or geolite2-country-mmdb).
 * @param files.asnDb Path of an ASN database (GeoLite2-ASN or an `*-asn-mmdb`).
 * @throws when a file cannot be opened or is not a MaxMind DB (at start-up).
 */
export async function createMaxmindGeoLookup(files: { countryDb?: string | undefined; asnDb?: string | undefined }): Promise<GeoLookup> {
  const country = files.countryDb ? await open<CountryResponse>(files.countryDb, { watchForUpdates: false }) : undefined
  const asn = files.asnDb ? await open<CountryResponse>(files.asnDb, { watchForUpdates: false }) : undefined
  const get = (reader: Reader<CountryResponse> | undefined, ip: string): MmdbRecord | null => {
    if (!reader) return null
    try {
      return reader.get(ip) as MmdbRecord | null
    } catch {
      return null // not an IP address
    }
  }
  return {
    lookup(raw) {
      const ip = canonicalIp(raw)
      const c = get(country, ip)
      const a = asn === undefined ? c : get(asn, ip)
      const asnValue = a?.autonomous_system_number
      return {
        country: countryOf(c) ?? countryOf(a),
        asn: typeof asnValue === 'number' ? asnValue : null,
        asOrg: typeof a?.autonomous_system_organization === 'string' ? a.autonomous_system_organization : null,
      }
    },
  }
}
