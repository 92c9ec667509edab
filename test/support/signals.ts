/**
 * Test support for the signals domain: a configuration with Shared Signals receivers, a
 * global-revocation client and users with e-mail addresses; receivers built on node:http that
 * verify every SET (RFC 8417) or webhook they get; a device login over HTTP.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { hash } from '@node-rs/argon2'
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm } from './server.js'

export const RECEIVER_SECRET = 'receiver-secret-0123456789abcdef'
export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

/** Fixture config plus receivers `receiver` and `receiver-2` (ssf), `sec-tool` (global_token_revocation), `cli-no-ssf`. */
export async function signalsConfig(extra: Record<string, unknown> = {}) {
  const base = await fixtureConfigFile()
  const secret = await hash(RECEIVER_SECRET)
  const cc = (id: string, scopes: string[]) => ({ client_id: id, type: 'confidential', client_secret_hash: secret, grant_types: ['client_credentials'], scopes })
  return fixtureConfigFile({
    clients: [
      ...base.clients,
      cc('receiver', ['ssf']),
      cc('receiver-2', ['ssf']),
      cc('sec-tool', ['global_token_revocation']),
      cc('no-scope', ['read']),
      cc('admin-client', ['admin']),
    ],
    users: [
      { username: 'alice', display_name: 'Alice', email: 'Alice@Example.com', password_hash: await hash(FIXTURE.password) },
      { username: 'mallory', display_name: 'Mallory', password_hash: await hash(FIXTURE.attackerPassword) },
    ],
    signals: {
      // Receivers in the tests listen on 127.0.0.1 (http): both guards are relaxed here only.
      allow_private_endpoints: true,
      ssf: { allow_http_push: true, min_verification_interval_seconds: 0, long_poll_seconds: 1 },
      delivery: { base_backoff_ms: 20, max_backoff_ms: 200, poll_interval_ms: 50, timeout_ms: 2000 },
      ...extra,
    },
  })
}

/** A client_credentials access token. */
export async function clientToken(url: string, clientId: string, scope?: string): Promise<string> {
  const res = await postForm(`${url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { authorization: basic(clientId, RECEIVER_SECRET) })
  if (res.status !== 200) throw new Error(`client_credentials for ${clientId}: ${res.status} ${res.text}`)
  return res.json.access_token as string
}

/** Logs `alice` in with the device flow (client `cli`) and returns the token response. */
export async function deviceLogin(url: string, scope = 'read offline_access'): Promise<{ access_token: string; refresh_token: string }> {
  const auth = await postForm(`${url}/device_authorization`, { client_id: 'cli', scope })
  await approveAs(url, auth.json.user_code)
  const res = await postForm(`${url}/token`, { grant_type: DEVICE_GRANT, client_id: 'cli', device_code: auth.json.device_code })
  if (res.status !== 200) throw new Error(`token: ${res.status}`)
  return res.json
}

/** JSON request helper with a bearer token. */
export async function json(url: string, method: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  let parsed: unknown
  try {
    parsed = text ? JSON.parse(text) : undefined
  } catch {
    parsed = text
  }
  return { status: res.status, body: parsed, headers: res.headers }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

/** An RFC 8935 push receiver that verifies every SET with jose against the transmitter's JWKS. */
export interface PushReceiver {
  url: string
  /** Verified SET payloads in arrival order (repeats included). */
  sets: JWTPayload[]
  /** Requests whose SET failed verification or whose headers were wrong. */
  refused: string[]
  /** Authorization headers seen. */
  authorizations: (string | undefined)[]
  /** Answer 503 to this many requests first. */
  failNext: number
  /** Resolves once `n` SETs have been received. */
  waitFor(n: number, timeoutMs?: number): Promise<JWTPayload[]>
  close(): Promise<void>
}

export async function startPushReceiver(opts: { transmitter: string; issuer: string; audience: string; port?: number }): Promise<PushReceiver> {
  const jwks = createRemoteJWKSet(new URL(`${opts.transmitter}/jwks`))
  const receiver: PushReceiver = {
    url: '',
    sets: [],
    refused: [],
    authorizations: [],
    failNext: 0,
    async waitFor(n, timeoutMs = 10_000) {
      const end = Date.now() + timeoutMs
      while (receiver.sets.length < n) {
        if (Date.now() > end) throw new Error(`receiver got ${receiver.sets.length} SETs, expected ${n}; refused: ${JSON.stringify(receiver.refused)}`)
        await new Promise((r) => setTimeout(r, 20))
      }
      return receiver.sets
    },
    close: () => new Promise((r) => server.close(() => r())),
  }
  const server: Server = createServer(async (req, res) => {
    const body = await readBody(req)
    receiver.authorizations.push(req.headers.authorization)
    if (receiver.failNext > 0) {
      receiver.failNext--
      res.writeHead(503).end()
      return
    }
    if (req.method !== 'POST' || req.headers['content-type'] !== 'application/secevent+jwt') {
      receiver.refused.push(`bad request: ${req.method} ${req.headers['content-type']}`)
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_request', description: 'expected application/secevent+jwt' }))
      return
    }
    try {
      const { payload } = await jwtVerify(body, jwks, { typ: 'secevent+jwt', issuer: opts.issuer, audience: opts.audience })
      receiver.sets.push(payload)
      res.writeHead(202).end()
    } catch (err) {
      // The transmitter's JWKS could not be fetched (it may still be starting): try again later.
      if ((err as Error).message === 'fetch failed' || (err as { code?: string }).code === 'ERR_JWKS_TIMEOUT') {
        res.writeHead(503).end()
        return
      }
      receiver.refused.push((err as Error).message)
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_key', description: (err as Error).message }))
    }
  })
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', () => r()))
  receiver.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/events`
  return receiver
}
