/**
 * Address arithmetic for governance without a geo or ASN database: CIDR matching and "same
 * network" as the same IPv4 /24 or IPv6 /48 (configurable). Honest about what it is: a network
 * comparison, not a country or an autonomous system.
 */
import { BlockList, isIP } from 'node:net'

/** `::ffff:192.0.2.1` → `192.0.2.1`; other addresses unchanged. */
export function unmapIPv4(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  return m ? m[1]! : ip
}

/** Parses `192.0.2.0/24`, `2001:db8::/32` or a single address. @returns undefined when invalid. */
export function parseCidr(value: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [addr = '', len, extra] = value.trim().split('/')
  if (extra !== undefined) return undefined
  const address = unmapIPv4(addr)
  const v = isIP(address)
  if (v === 0) return undefined
  const max = v === 4 ? 32 : 128
  const prefix = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' }
}

/** A matcher for an address or CIDR. @throws {TypeError} when `cidr` is not one. */
export function cidrMatcher(cidr: string): (ip: string) => boolean {
  const parsed = parseCidr(cidr)
  if (parsed === undefined) throw new TypeError(`not an IP address or CIDR: ${JSON.stringify(cidr.slice(0, 100))}`)
  const list = new BlockList()
  list.addSubnet(parsed.address, parsed.prefix, parsed.family)
  return (ip) => {
    const a = unmapIPv4(ip)
    const v = isIP(a)
    return v !== 0 && list.check(a, v === 4 ? 'ipv4' : 'ipv6')
  }
}

function expandIPv6(ip: string): number[] {
  const [head = '', tail] = ip.split('::')
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)))
  const h = parse(head)
  const t = tail === undefined ? [] : parse(tail)
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t]
}

/**
 * The network an address belongs to at the given prefix lengths, as CIDR text
 * (`192.0.2.0/24`, `2001:db8:1::/48`); undefined for something that is not an address.
 */
export function networkOf(ip: string, ipv4Prefix = 24, ipv6Prefix = 48): string | undefined {
  const a = unmapIPv4(ip)
  const v = isIP(a)
  if (v === 4) {
    const n = a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0)
    const masked = ipv4Prefix === 0 ? 0 : n - (n % 2 ** (32 - ipv4Prefix))
    return `${[24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join('.')}/${ipv4Prefix}`
  }
  if (v === 6) {
    if (a.includes('.')) return undefined // embedded IPv4 forms other than ::ffff: are not compared
    const groups = expandIPv6(a).map((g, i) => {
      const bitsBefore = i * 16
      if (bitsBefore >= ipv6Prefix) return 0
      const keep = Math.min(16, ipv6Prefix - bitsBefore)
      return g & (0xffff << (16 - keep)) & 0xffff
    })
    return `${groups.map((g) => g.toString(16)).join(':')}/${ipv6Prefix}`
  }
  return undefined
}

/** Whether two addresses are in the same network at these prefix lengths (false if either is not an address). */
export function sameNetwork(a: string, b: string, ipv4Prefix = 24, ipv6Prefix = 48): boolean {
  const na = networkOf(a, ipv4Prefix, ipv6Prefix)
  return na !== undefined && na === networkOf(b, ipv4Prefix, ipv6Prefix)
}
