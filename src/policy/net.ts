/**
 * IP address helpers for policy conditions: canonical form, CIDR sets, same-subnet checks.
 * Pure functions over strings (node:net's parsers only).
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net'

/** Strips the IPv4-mapped IPv6 prefix and lower-cases (`::FFFF:1.2.3.4` → `1.2.3.4`). */
export function canonicalIp(ip: string): string {
  const t = ip.trim().toLowerCase()
  return t.startsWith('::ffff:') && isIPv4(t.slice(7)) ? t.slice(7) : t
}

/** `ipv4`, `ipv6`, or undefined for anything else. */
export function ipFamily(ip: string): 'ipv4' | 'ipv6' | undefined {
  return isIPv4(ip) ? 'ipv4' : isIPv6(ip) ? 'ipv6' : undefined
}

/**
 * A set of CIDRs and addresses.
 * @throws {TypeError} naming the first entry that is not an IP or CIDR.
 */
export function compileCidrs(entries: readonly string[]): (ip: string) => boolean {
  const list = new BlockList()
  for (const entry of entries) {
    const [addr, bits] = entry.split('/')
    const ip = canonicalIp(addr ?? '')
    const family = ipFamily(ip)
    const max = family === 'ipv4' ? 32 : 128
    const prefix = bits === undefined ? undefined : Number(bits)
    if (family === undefined || (prefix !== undefined && (!Number.isInteger(prefix) || prefix < 0 || prefix > max)))
      throw new TypeError(`"${entry}" is not an IP address or CIDR`)
    if (prefix === undefined) list.addAddress(ip, family)
    else list.addSubnet(ip, prefix, family)
  }
  return (raw) => {
    const ip = canonicalIp(raw)
    const family = ipFamily(ip)
    return family !== undefined && list.check(ip, family)
  }
}

/** The address as a 32- or 128-bit integer, or undefined when it is not an IP. */
export function toBigInt(ip: string): { family: 'ipv4' | 'ipv6'; value: bigint } | undefined {
  const family = ipFamily(ip)
  if (family === 'ipv4') return { family, value: ip.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n) }
  if (family !== 'ipv6') return undefined
  let text = ip
  // An embedded dotted quad (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) becomes two hex groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted) {
    const v4 = toBigInt(dotted[1]!)!.value
    text = text.slice(0, -dotted[1]!.length) + `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  const [head, tail] = text.split('::') as [string, string | undefined]
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  return { family, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) }
}

/**
 * Whether two addresses share the same /`prefixV4` (IPv4) or /`prefixV6` (IPv6) network.
 * Addresses of different families never share a subnet.
 */
export function isSameSubnet(a: string, b: string, prefixV4: number, prefixV6: number): boolean {
  const x = toBigInt(canonicalIp(a))
  const y = toBigInt(canonicalIp(b))
  if (!x || !y || x.family !== y.family) return false
  const bits = x.family === 'ipv4' ? 32 : 128
  const prefix = BigInt(x.family === 'ipv4' ? prefixV4 : prefixV6)
  const shift = BigInt(bits) - prefix
  return x.value >> shift === y.value >> shift
}
