/**
 * An example API protected by devicegate access tokens, using the resource-server helper
 * (`devicegate/resource`; imported here by path so the example compiles with the sources).
 *
 * It accepts only live tokens for its own audience: DPoP-bound tokens with a valid proof
 * (RFC 9449 §7), bearer tokens unless `DPOP_REQUIRED=1`, and refuses a token revoked at the
 * authorization server within about 2 s (revocation feed, polled every second).
 *
 * Run against `npm start` (`devicegate serve --dev`, whose `demo-api` client may read the feed
 * and whose `demo-cli` may ask for tokens for `http://127.0.0.1:9090/`):
 *
 *   npm run build:examples
 *   DEVICEGATE_ISSUER=http://127.0.0.1:8080 API_AUDIENCE=http://127.0.0.1:9090/ \
 *   RS_CLIENT_ID=demo-api RS_CLIENT_SECRET=<the secret serve --dev printed> node build/examples/resource-api.js
 *
 * Tokens must be issued for this API (`resource=http://127.0.0.1:9090/`, RFC 8707), as
 * `examples/client-login.ts` asks; a token whose `aud` is only the issuer is refused. Run in
 * `npm test` against a real server (test/examples.test.ts).
 *
 * Plain node:http works the same way with `authorize(rs, req, res, { scopes })`.
 */
import { pathToFileURL } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { createResourceServer, devicegateResource, requireAccess } from '../src/resource/index.js'

/** Options of {@link buildResourceApi}. */
export interface ResourceApiOptions {
  /** The authorization server's issuer. */
  issuer: string
  /** This API's resource indicator (RFC 8707), e.g. `https://api.example.com/`. */
  audience: string
  /** Public base URL of this API, for the DPoP `htu` check. */
  baseUrl?: string
  /** A confidential client with `introspection: true`, to read the revocation feed. */
  credentials: { clientId: string; clientSecret: string }
  /** Revocation feed poll interval in milliseconds. Default: 1000. */
  pollIntervalMs?: number
  /** Refuse bearer tokens. Default: false. */
  dpopRequired?: boolean
}

/** Builds the example API (not listening). */
export async function buildResourceApi(options: ResourceApiOptions): Promise<FastifyInstance> {
  const rs = createResourceServer({
    issuer: options.issuer,
    audience: options.audience,
    ...(options.baseUrl ? { baseUrl: options.baseUrl } : {}),
    revocation: {
      mode: 'feed',
      credentials: options.credentials,
      ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
    },
    dpop: { required: options.dpopRequired ?? false },
    realm: 'example-api',
  })
  const app = Fastify()
  app.addHook('onClose', async () => rs.close())
  app.get('/healthz', async () => ({ status: 'ok' }))
  await app.register(async (api) => {
    // Every route registered in this context needs a valid access token.
    await api.register(devicegateResource, { server: rs })
    api.get('/me', async (request) => {
      const access = request.devicegate!
      return { sub: access.subject, client_id: access.clientId, scope: access.scopes.join(' '), token_type: access.tokenType, jkt: access.jkt }
    })
    api.post('/notes', { preHandler: requireAccess(rs, { scopes: ['write'] }) }, async (_request, reply) => reply.code(201).send({ saved: true }))
  })
  return app
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = (name: string, fallback?: string): string => {
    const value = process.env[name] ?? fallback
    if (value === undefined) throw new Error(`set ${name}`)
    return value
  }
  const port = Number(env('PORT', '9090'))
  const app = await buildResourceApi({
    issuer: env('DEVICEGATE_ISSUER', 'http://127.0.0.1:8080'),
    audience: env('API_AUDIENCE', `http://127.0.0.1:${port}/`),
    baseUrl: env('API_BASE_URL', `http://127.0.0.1:${port}`),
    credentials: { clientId: env('RS_CLIENT_ID', 'demo-api'), clientSecret: env('RS_CLIENT_SECRET') },
    dpopRequired: process.env.DPOP_REQUIRED === '1',
  })
  await app.listen({ host: '127.0.0.1', port })
  process.stdout.write(`example API on http://127.0.0.1:${port} (GET /me, POST /notes)\n`)
  const stop = () => void app.close().then(() => process.exit(0))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
