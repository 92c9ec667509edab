/**
 * Test support: a minimal OpenID provider built on `jose` that answers discovery, JWKS and the
 * token endpoint with an ID Token the test shapes (wrong `aud`, expired, `alg: none`, another
 * nonce…), so devicegate's relying party (openid-client) can be shown to refuse each one.
 */
import { createServer, type Server } from 'node:http'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'

/** How the next token response is made; `claims` are merged over the correct ones. */
export interface IdTokenShape {
  claims?: Record<string, unknown>
  /** `none` makes an unsecured JWT (RFC 7519 §6). */
  alg?: 'RS256' | 'none'
  /** Sign with a key that is not in the JWKS. */
  foreignKey?: boolean
  /** Answer the token request with this OAuth error instead. */
  error?: string
}

export interface FakeIdp {
  issuer: string
  /** The next token response. Default: a correct ID Token. */
  shape: IdTokenShape
  /** The nonce and client of the last authorization request (from the URL devicegate built). */
  lastAuthorization: URL | undefined
  close(): Promise<void>
}

export async function startFakeIdp(options: { clientId: string; subject?: () => Record<string, unknown> }): Promise<FakeIdp> {
  const { privateKey, publicKey } = await generateKeyPair('RS256')
  const foreign = await generateKeyPair('RS256')
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
  const codes = new Map<string, string>() // code → nonce
  let issuer = ''
  const idp: FakeIdp = {
    issuer: '',
    shape: {},
    lastAuthorization: undefined,
    close: () => new Promise((r) => server.close(() => r())),
  }
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', issuer)
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end(JSON.stringify(body))
    }
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
      })
    }
    if (url.pathname === '/jwks') return json(200, { keys: [jwk] })
    if (url.pathname === '/authorize') {
      idp.lastAuthorization = url
      const code = `code-${codes.size + 1}`
      codes.set(code, url.searchParams.get('nonce') ?? '')
      const back = new URL(url.searchParams.get('redirect_uri')!)
      back.searchParams.set('code', code)
      back.searchParams.set('state', url.searchParams.get('state') ?? '')
      res.writeHead(303, { location: back.href })
      return res.end()
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        void (async () => {
          const form = new URLSearchParams(body)
          const nonce = codes.get(form.get('code') ?? '')
          if (nonce === undefined) return json(400, { error: 'invalid_grant' })
          codes.delete(form.get('code')!)
          const shape = idp.shape
          if (shape.error) return json(400, { error: shape.error })
          const now = Math.floor(Date.now() / 1000)
          const claims = { iss: issuer, aud: options.clientId, sub: 'sub-1', iat: now, exp: now + 300, nonce, ...(options.subject?.() ?? {}), ...(shape.claims ?? {}) }
          let idToken: string
          if (shape.alg === 'none') {
            const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
            idToken = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`
          } else {
            idToken = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(shape.foreignKey ? foreign.privateKey : privateKey)
          }
          json(200, { access_token: 'at-opaque', token_type: 'Bearer', expires_in: 300, id_token: idToken })
        })()
      })
      return
    }
    json(404, { error: 'not_found' })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  idp.issuer = issuer
  return idp
}

/**
 * Signs in at devicegate through `provider` (start → fake provider → callback, as a browser
 * follows it) and returns the verification-page session, ready to decide codes.
 * @throws when the callback does not sign in.
 */
export async function upstreamPageSession(baseUrl: string, provider: string): Promise<import('./server.js').PageSession> {
  const { PageSession } = await import('./server.js')
  const start = await fetch(`${baseUrl}/device/upstream/${provider}/start`, { redirect: 'manual' })
  const state = start.headers.getSetCookie().find((c) => c.startsWith('dg_upstream='))?.split(';')[0]
  if (start.status !== 303 || state === undefined) throw new Error(`upstream start failed: ${start.status}`)
  const atIdp = await fetch(start.headers.get('location')!, { redirect: 'manual' })
  const res = await fetch(atIdp.headers.get('location')!, { redirect: 'manual', headers: { cookie: state } })
  const session = res.headers.getSetCookie().find((c) => c.startsWith('dg_session='))?.split(';')[0]
  if (res.status !== 303 || session === undefined) throw new Error(`upstream sign-in failed: ${res.status} ${await res.text()}`)
  const page = new PageSession(baseUrl)
  page.cookie = session
  await page.get('/device')
  return page
}
