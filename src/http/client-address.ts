/**
 * Client address derivation: once per request, one value used everywhere.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net'

/** Strips the IPv4-mapped IPv6 prefix (`::ffff:1.2.3.4` → `1.2.3.4`). */
function canonicalIp(ip: string): string {
  const trimmed = ip.trim()
  return trimmed.toLowerCase().startsWith('::ffff:') && isIPv4(trimmed.slice(7)) ? trimmed.slice(7) : trimmed
}

/**
 * Builds the function that names a request's client IP.
 *
 * The socket peer is the client unless the peer is a configured trusted proxy; then
 * `X-Forwarded-For` is read right to left and the first address that is not itself a trusted
 * proxy wins (the right-most untrusted hop: everything left of it could be forged by the client).
 * Malformed entries stop the walk at the last trusted hop.
 *
 * @param trustedProxies IP addresses or CIDRs (`10.0.0.0/8`, `::1`).
 * @throws {TypeError} when an entry is not an IP or CIDR (a configuration error, at start-up).
 */
export function createClientAddressResolver(trustedProxies: readonly string[]): (peer: string | undefined, forwardedFor: string | string[] | undefined) => string {
  const trusted = new BlockList()
  for (const entry of trustedProxies) {
    const [addr, bits] = entry.split('/')
    const ip = canonicalIp(addr ?? '')
    const type = isIPv4(ip) ? 'ipv4' : isIPv6(ip) ? 'ipv6' : undefined
    if (!type) throw new TypeError(`trusted_proxies: "${entry}" is not an IP address or CIDR`)
    if (bits === undefined) trusted.addAddress(ip, type)
    else trusted.addSubnet(ip, Number(bits), type)
  }
  const isTrusted = (ip: string) => (isIPv4(ip) ? trusted.check(ip, 'ipv4') : isIPv6(ip) ? trusted.check(ip, 'ipv6') : false)
  const hasProxies = trustedProxies.length > 0
  return (peerRaw, forwardedFor) => {
    const peer = canonicalIp(peerRaw ?? '')
    if (!hasProxies || !isTrusted(peer) || forwardedFor === undefined) return peer
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').map(canonicalIp)
    let client = peer
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!
      if (!isIPv4(hop) && !isIPv6(hop)) break
      client = hop
      if (!isTrusted(hop)) break
    }
    return client
  }
}
