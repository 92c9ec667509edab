// Benchmark target: node-oidc-provider (npm `oidc-provider` 9.x) with its in-memory adapter.
//
// Storage: oidc-provider's shipped MemoryAdapter class, unchanged, over an UNBOUNDED Map with
// expiry (`--adapter map`, the default here). The shipped default puts that adapter over an LRU
// of 1,000 entries (at most ~2,000 alive), which evicts live device codes, user codes and tokens
// once a few hundred flows exist: with 1,000 pending codes it answers invalid_grant and reports
// live tokens inactive. `--adapter default` runs it exactly as shipped, for comparison.
// Configured for the same surface as devicegate: device flow (RFC 8628), introspection (RFC 7662),
// revocation (RFC 7009), client_credentials; a public device client and a confidential client.
// Dev interactions stay on so the harness can approve device flows over plain HTTP (scenario d).
// Usage: node bench/targets/oidc-provider.mjs --port P --host 127.0.0.1
// Prints one line `READY <json>` on stdout once listening.
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'

// oidc-provider prints development-only warnings through console.warn/info; silence them so the
// harness output stays readable (they say: dev keys, dev interactions, in-memory adapter).
console.warn = () => {}
console.info = () => {}

const { Provider } = await import('oidc-provider')

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    adapter: { type: 'string', default: 'map' },
  },
})

/** The subset of oidc-provider's LRU the MemoryAdapter uses, without the size cap. */
class UnboundedStore {
  #map = new Map()
  get(key) {
    const e = this.#map.get(key)
    if (!e) return undefined
    if (e.expiry !== undefined && e.expiry <= Date.now()) {
      this.#map.delete(key)
      return undefined
    }
    return e.value
  }
  set(key, value, { maxAge } = {}) {
    const expiry = typeof maxAge === 'number' && maxAge !== Number.POSITIVE_INFINITY ? Date.now() + maxAge : undefined
    this.#map.set(key, { value, expiry })
    return this
  }
  has(key) {
    return this.get(key) !== undefined
  }
  delete(key) {
    return this.#map.delete(key)
  }
  clear() {
    this.#map.clear()
  }
  get size() {
    return this.#map.size
  }
}

let adapter
if (values.adapter === 'map') {
  // Deep import by file URL: the package has no exports map entry for its adapters.
  const { createRequire } = await import('node:module')
  const { pathToFileURL } = await import('node:url')
  const { join, dirname } = await import('node:path')
  const pkgDir = dirname(createRequire(import.meta.url).resolve('oidc-provider/package.json'))
  const { default: MemoryAdapter } = await import(pathToFileURL(join(pkgDir, 'lib/adapters/memory_adapter.js')).href)
  const store = new UnboundedStore()
  adapter = (model) => new MemoryAdapter(model, store)
} else if (values.adapter !== 'default') {
  throw new TypeError(`--adapter: expected map or default, got ${values.adapter}`)
}

const host = values.host
const server = createServer()
await new Promise((resolve) => server.listen(Number(values.port), host, resolve))
const { port } = server.address()
const issuer = `http://${host}:${port}`

const provider = new Provider(issuer, {
  ...(adapter ? { adapter } : {}),
  clients: [
    {
      client_id: 'demo-cli',
      token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      scope: 'openid offline_access read write',
    },
    {
      client_id: 'demo-api',
      client_secret: 'bench-demo-api-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'read write',
    },
  ],
  scopes: ['openid', 'offline_access', 'read', 'write'],
  features: {
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    devInteractions: { enabled: true },
  },
  // Any account id the dev login form submits exists.
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  // Long enough that no device code or token expires during a run.
  ttl: {
    DeviceCode: 3600,
    AccessToken: 3600,
    ClientCredentials: 3600,
    RefreshToken: 86400,
    Grant: 86400,
    Interaction: 3600,
    Session: 86400,
  },
  // Same rotation behaviour as devicegate: a refresh token is single use.
  rotateRefreshToken: true,
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
})
provider.proxy = false

server.on('request', provider.callback())

process.stdout.write(
  `READY ${JSON.stringify({
    issuer,
    port,
    adapter: values.adapter,
    version: (await import('oidc-provider/package.json', { with: { type: 'json' } }).catch(() => null))
      ?.default?.version,
  })}\n`,
)

const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
