/**
 * Where devicegate may POST (server-side request forgery guard): SSF push endpoints are given by
 * receivers (any confidential client with the `ssf` scope), webhook URLs by the operator, and
 * devicegate must not be made to call its own network — loopback, private, link-local (the cloud
 * metadata service at 169.254.169.254 / fd00:ec2::254), carrier-grade NAT, multicast or other
 * special-purpose addresses (IANA IPv4/IPv6 Special-Purpose Address Registries, RFC 6890).
 *
 * Two checks, the safer reading of SSF 1.0 §8.1.1 / RFC 8935 §2 (neither says which receivers
 * a transmitter must refuse):
 * - **When a stream is created or updated**: the URL must be `https` (http only with
 *   `signals.ssf.allow_http_push`); its host is resolved and **every** address must be public,
 *   else the request is refused (400) and nothing is stored. An IP literal is checked as is.
 * - **At every delivery**: the connection is made through a DNS lookup that checks every address
 *   it returns and connects only to a checked one, so a name that later resolves inward (DNS
 *   rebinding) is refused at delivery too (a retryable failure, logged without secrets).
 *
 * `signals.allow_private_endpoints: true` (on in `--dev`; tests with 127.0.0.1 receivers) turns
 * the address checks off; a webhook may also set `allow_private_network: true` for an internal
 * receiver the operator names on purpose.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { BlockList, isIP, type LookupFunction } from 'node:net'

/** Which endpoints are allowed. */
export interface EndpointPolicy {
  /** Accept `http:` URLs. */
  allowHttp: boolean
  /** Accept non-public addresses (development, tests, an operator's internal receiver). */
  allowPrivate: boolean
}

/** The DNS lookup used (injectable for tests): every address of a host name. */
export type ResolveAll = (hostname: string) => Promise<LookupAddress[]>

const systemResolveAll: ResolveAll = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))))

/** A refused endpoint; `message` is public (no secret, no resolved address list). */
export class EndpointRefusedError extends Error {
  override readonly name = 'EndpointRefusedError'
  readonly code = 'ERR_ENDPOINT_REFUSED'
}

// Special-purpose ranges that are not globally reachable, or that reach the host's own network.
const BLOCKED = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private (RFC 1918)
  ['100.64.0.0', 10], // carrier-grade NAT (RFC 6598); Alibaba Cloud metadata 100.100.100.200
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local; cloud metadata 169.254.169.254
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments (Oracle Cloud metadata 192.0.0.192)
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const)
  BLOCKED.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard-only
  ['2001::', 23], // IETF protocol assignments (Teredo, ORCHID…)
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4 (embeds any IPv4 address)
  ['3fff::', 20], // documentation
  ['5f00::', 16], // SRv6 SIDs
  ['fc00::', 7], // unique local; AWS metadata fd00:ec2::254
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const)
  BLOCKED.addSubnet(net, prefix, 'ipv6')

/** The IPv4 address embedded in an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::/96`) address. */
function embeddedIpv4(ip: string): string | undefined {
  const m = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(ip)
  if (!m) return undefined
  if (m[1]) return m[1]
  const hi = parseInt(m[2]!, 16)
  const lo = parseInt(m[3]!, 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

/** Whether `ip` (IPv4 or IPv6 text) is a public, globally reachable unicast address. */
export function isPublicAddress(ip: string): boolean {
  const bare = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '').toLowerCase()
  const family = isIP(bare)
  if (family === 0) return false
  if (family === 6) {
    const v4 = embeddedIpv4(bare)
    if (v4 !== undefined) return isPublicAddress(v4)
  }
  return !BLOCKED.check(bare, family === 4 ? 'ipv4' : 'ipv6')
}

/**
 * Checks an endpoint URL before it is stored (see the module comment).
 * @param what The field name for messages, e.g. `"endpoint_url"`.
 * @throws {EndpointRefusedError} for a URL that is not absolute http(s), `http` when not allowed,
 *   credentials or a fragment, a host that does not resolve, or any non-public address.
 */
export async function checkEndpointUrl(url: string, policy: EndpointPolicy, what: string, resolveAll: ResolveAll = systemResolveAll): Promise<URL> {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new EndpointRefusedError(`${what} must be an absolute URL`)
  }
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && policy.allowHttp)) throw new EndpointRefusedError(`${what} must be an https URL`)
  if (parsed.hash !== '' || parsed.username !== '' || parsed.password !== '') throw new EndpointRefusedError(`${what} must not carry a fragment or credentials`)
  if (policy.allowPrivate) return parsed
  await checkHost(parsed.hostname, what, resolveAll)
  return parsed
}

async function checkHost(hostname: string, what: string, resolveAll: ResolveAll): Promise<LookupAddress[]> {
  const host = hostname.replace(/^\[|\]$/g, '')
  const literal = isIP(host)
  let addresses: LookupAddress[]
  if (literal !== 0) addresses = [{ address: host, family: literal }]
  else {
    try {
      addresses = await resolveAll(host)
    } catch {
      throw new EndpointRefusedError(`${what} host does not resolve`)
    }
  }
  if (addresses.length === 0) throw new EndpointRefusedError(`${what} host does not resolve`)
  if (addresses.some((a) => !isPublicAddress(a.address))) throw new EndpointRefusedError(`${what} must not point to a loopback, private, link-local or other internal address`)
  return addresses
}

/**
 * A `lookup` for node:http(s) through `resolveAll`; with `check`, it refuses non-public addresses
 * (at connect time, so the address connected to is one that was checked).
 */
function guardedLookup(resolveAll: ResolveAll, check: boolean): LookupFunction {
  return (hostname, options, callback) => {
    ;(check ? checkHost(hostname, 'the endpoint', resolveAll) : resolveAll(hostname)).then(
      (addresses) => {
        const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses
        if (options.all) (callback as unknown as (err: null, addresses: LookupAddress[]) => void)(null, wanted)
        else if (wanted[0]) callback(null, wanted[0].address, wanted[0].family)
        else callback(Object.assign(new Error('no address of the wanted family'), { code: 'ENOTFOUND' }), '', 0)
      },
      (err: Error) => callback(err as NodeJS.ErrnoException, '', 0),
    )
  }
}

// Kept-alive connections made through the checked lookup live in their own pools, so a request
// that must be checked never reuses a connection opened without the check (an operator's
// allow_private_network webhook to the same host and port).
const CHECKED_AGENTS = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) }

/** The answer of {@link postToEndpoint}: status and up to 2,000 characters of the body. */
export interface EndpointResponse {
  status: number
  body: string
}

/**
 * POSTs `body` to an endpoint with the delivery-time check of the module comment: an IP literal
 * is checked before connecting, a host name through the connection's own DNS lookup, so the
 * address connected to is the address checked. Redirects are not followed.
 * @throws {EndpointRefusedError} for a refused address; network errors; `TimeoutError` after `timeoutMs`.
 */
export async function postToEndpoint(
  url: string,
  init: { headers: Record<string, string>; body: string; timeoutMs: number },
  policy: EndpointPolicy,
  resolveAll: ResolveAll = systemResolveAll,
): Promise<EndpointResponse> {
  const target = new URL(url)
  if (target.protocol !== 'https:' && !(target.protocol === 'http:' && policy.allowHttp)) throw new EndpointRefusedError('the endpoint must be an https URL')
  const literal = isIP(target.hostname.replace(/^\[|\]$/g, '')) !== 0
  if (!policy.allowPrivate && literal) await checkHost(target.hostname, 'the endpoint', resolveAll)
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest
  const signal = AbortSignal.timeout(init.timeoutMs)
  return new Promise<EndpointResponse>((resolve, reject) => {
    const req = request(
      target,
      {
        method: 'POST',
        headers: { ...init.headers, 'content-length': String(Buffer.byteLength(init.body)) },
        signal,
        ...(literal ? {} : { lookup: guardedLookup(resolveAll, !policy.allowPrivate) }),
        ...(policy.allowPrivate ? {} : { agent: target.protocol === 'https:' ? CHECKED_AGENTS.https : CHECKED_AGENTS.http }),
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          text += chunk
          // Enough to log an RFC 8935 §2.3 error: a receiver cannot make devicegate read more.
          if (text.length >= 2000) {
            resolve({ status: res.statusCode ?? 0, body: text.slice(0, 2000) })
            res.destroy()
          }
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
        res.on('error', reject)
      },
    )
    req.on('error', (err: Error) => reject(signal.aborted ? Object.assign(new Error('timeout'), { name: 'TimeoutError' }) : err))
    req.end(init.body)
  })
}

/** A failed attempt's error text for the log and the delivery record: never a header or secret. */
export function failureOf(err: unknown): string {
  const e = err as Error
  if (e.name === 'TimeoutError') return 'timeout'
  if (err instanceof EndpointRefusedError) return `refused: ${e.message}`
  return `network error: ${(e as NodeJS.ErrnoException).code ?? e.message}`.slice(0, 200)
}
