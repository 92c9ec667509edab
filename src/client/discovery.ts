/**
 * Authorization Server Metadata discovery (RFC 8414 §3), with the OpenID Connect Discovery
 * location as a fallback so servers that publish only `openid-configuration` also work.
 */
import { sdkFetch } from './version.js'
import { ClientError } from './errors.js'
import { requestJson, type FetchLike } from './http.js'

/**
 * The metadata fields the SDK uses, in RFC spelling (RFC 8414 §2, RFC 8628 §4, RFC 9449 §5.1).
 * Other members are kept as they came.
 */
export interface AuthorizationServerMetadata {
  issuer: string
  /** RFC 8628 §4. Required by {@link discover}. */
  device_authorization_endpoint: string
  token_endpoint: string
  /** RFC 7009 (via RFC 8414 §2). Without it, logout can only delete locally. */
  revocation_endpoint?: string
  /** OpenID Connect UserInfo, used by `whoami` for opaque access tokens when present. */
  userinfo_endpoint?: string
  /** RFC 9449 §5.1: when it lists `ES256`, the SDK binds tokens to its DPoP key by default. */
  dpop_signing_alg_values_supported?: string[]
  grant_types_supported?: string[]
  scopes_supported?: string[]
  [member: string]: unknown
}

/** Options for {@link discover}. */
export interface DiscoverOptions {
  fetch?: FetchLike
  signal?: AbortSignal
}

/** The RFC 8414 §3 well-known URL: the suffix goes between the host and the issuer's path. */
export function metadataUrls(issuer: string): string[] {
  const url = new URL(issuer)
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '')
  return [
    `${url.origin}/.well-known/oauth-authorization-server${path}`,
    // OpenID Connect Discovery 1.0 §4: the suffix is appended to the issuer.
    `${url.origin}${path}/.well-known/openid-configuration`,
  ]
}

function checkIssuer(issuer: string): string {
  let url: URL
  try {
    url = new URL(issuer)
  } catch {
    throw new ClientError('ERR_INVALID_ARGUMENT', `issuer ${JSON.stringify(issuer)} is not an absolute URL`)
  }
  // RFC 8414 §2: https, no query, no fragment. Plain http is allowed only on loopback (development).
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
    throw new ClientError('ERR_INVALID_ARGUMENT', `issuer ${issuer} must use https (plain http is allowed only for localhost)`)
  if (url.search || url.hash) throw new ClientError('ERR_INVALID_ARGUMENT', `issuer ${issuer} must have no query or fragment`)
  return issuer
}

/**
 * Fetches and validates the authorization server's metadata.
 *
 * Tries `/.well-known/oauth-authorization-server` (RFC 8414 §3.1), then
 * `/.well-known/openid-configuration`. The document's `issuer` must equal `issuer` exactly
 * (RFC 8414 §3.3, against mix-up attacks) and it must name a `device_authorization_endpoint`
 * and a `token_endpoint`.
 *
 * @param issuer The issuer identifier, e.g. `https://auth.example.com`.
 * @throws {ClientError} `ERR_INVALID_ARGUMENT` (bad issuer URL), `ERR_NETWORK`, `ERR_DISCOVERY`.
 * @see https://www.rfc-editor.org/rfc/rfc8414#section-3
 */
export async function discover(issuer: string, opts: DiscoverOptions = {}): Promise<AuthorizationServerMetadata> {
  checkIssuer(issuer)
  const fetchImpl = opts.fetch ?? sdkFetch
  const tried: string[] = []
  for (const url of metadataUrls(issuer)) {
    const res = await requestJson(fetchImpl, url, { headers: { accept: 'application/json' }, ...(opts.signal ? { signal: opts.signal } : {}) })
    if (res.status === 404 || res.status === 400) {
      tried.push(`${url} (${res.status})`)
      continue
    }
    if (res.status !== 200 || typeof res.body !== 'object' || res.body === null)
      throw new ClientError('ERR_DISCOVERY', `${url} answered HTTP ${res.status} without a metadata document`)
    const doc = res.body as Record<string, unknown>
    if (doc.issuer !== issuer)
      throw new ClientError('ERR_DISCOVERY', `the metadata at ${url} is for issuer ${JSON.stringify(doc.issuer)}, not ${issuer} (RFC 8414 §3.3)`)
    for (const field of ['token_endpoint', 'device_authorization_endpoint'] as const) {
      if (typeof doc[field] !== 'string')
        throw new ClientError(
          'ERR_DISCOVERY',
          field === 'device_authorization_endpoint'
            ? `${issuer} does not offer the device authorization grant (no device_authorization_endpoint in its metadata)`
            : `the metadata of ${issuer} has no ${field}`,
        )
    }
    return doc as AuthorizationServerMetadata
  }
  throw new ClientError('ERR_DISCOVERY', `no authorization server metadata for ${issuer}: tried ${tried.join(', ')}`)
}

/**
 * True when the server does DPoP at all: its metadata lists `dpop_signing_alg_values_supported`
 * (RFC 9449 §5.1). Such a server must answer a request with a proof by a DPoP-bound token.
 */
export function advertisesDpop(metadata: Pick<AuthorizationServerMetadata, 'dpop_signing_alg_values_supported'>): boolean {
  return Array.isArray(metadata.dpop_signing_alg_values_supported) && metadata.dpop_signing_alg_values_supported.length > 0
}

/** True when the server lists ES256 for DPoP proofs (RFC 9449 §5.1), the algorithm the SDK uses. */
export function supportsDpop(metadata: AuthorizationServerMetadata): boolean {
  return Array.isArray(metadata.dpop_signing_alg_values_supported) && metadata.dpop_signing_alg_values_supported.includes('ES256')
}
