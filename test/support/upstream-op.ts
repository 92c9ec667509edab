/**
 * Test support: node-oidc-provider (`oidc-provider`) as the organisation's upstream OpenID
 * provider, on 127.0.0.1 with port 0. Its login page (our own interaction, so the test chooses the
 * account and whether a second factor was used) has a labelled Username field, a "Use my security
 * key" checkbox and a "Sign in" button; the ID Token carries `groups`, `amr` (`pwd`, plus `hwk`
 * with the security key) and `email`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'

/** The subset of oidc-provider's API used here (the package ships no type declarations). */
interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<{ uid: string; prompt: { name: string }; params: Record<string, string> }>
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: unknown, options?: { mergeWithLastSubmission?: boolean }): Promise<void>
  Grant: new (init: { accountId: string; clientId: string }) => { addOIDCScope(scope: string): void; save(): Promise<string> }
}
type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => OidcProvider

async function loadOidcProvider(): Promise<ProviderConstructor> {
  const name = 'oidc-provider' // through a variable: the untyped module stays out of type checking
  return ((await import(name)) as { default: ProviderConstructor }).default
}

export interface UpstreamAccount {
  email: string
  name: string
  groups: string[]
}

export interface UpstreamOp {
  issuer: string
  /** Sign-ins completed at the provider, with whether the security key was used. */
  logins: { accountId: string; mfa: boolean; prompt: string | undefined }[]
  /** Registers the client with devicegate's redirect URI (known once devicegate listens); call before any sign-in. */
  register(redirectUri: string): void
  close(): Promise<void>
}

/** Starts the provider's HTTP server; {@link UpstreamOp.register} then configures its one confidential client. */
export async function startUpstreamOp(options: { clientId: string; clientSecret: string; accounts: Record<string, UpstreamAccount> }): Promise<UpstreamOp> {
  const Provider = await loadOidcProvider()
  const logins: UpstreamOp['logins'] = []
  let provider: OidcProvider | undefined
  const page = (uid: string) => `<!doctype html><html lang="en"><head><title>Corp sign-in</title></head><body><main>
    <h1>Corp sign-in</h1>
    <form method="post" action="/interaction/${uid}">
      <label for="login">Username</label><input id="login" name="login" autocomplete="username" required>
      <label><input type="checkbox" name="mfa" value="1"> Use my security key</label>
      <button type="submit">Sign in</button>
    </form></main></body></html>`
  const server: Server = createServer((req, res) => {
    const m = /^\/interaction\/([^/?]+)/.exec(req.url ?? '')
    if (!m) return provider!.callback()(req, res)
    void (async () => {
      try {
        const details = await provider!.interactionDetails(req, res)
        if (req.method === 'GET') {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
          res.end(page(details.uid))
          return
        }
        let body = ''
        for await (const chunk of req) body += (chunk as Buffer).toString()
        const form = new URLSearchParams(body)
        const accountId = form.get('login') ?? ''
        const mfa = form.get('mfa') === '1'
        logins.push({ accountId, mfa, prompt: details.params.prompt })
        const grant = new provider!.Grant({ accountId, clientId: details.params.client_id! })
        grant.addOIDCScope(details.params.scope!)
        const grantId = await grant.save()
        await provider!.interactionFinished(
          req,
          res,
          { login: { accountId, amr: mfa ? ['pwd', 'hwk'] : ['pwd'], remember: false }, consent: { grantId } },
          { mergeWithLastSubmission: false },
        )
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' })
        res.end(String(err))
      }
    })()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const register = (redirectUri: string) => {
    provider = new Provider(issuer, {
      clients: [
        {
          client_id: options.clientId,
          client_secret: options.clientSecret,
          redirect_uris: [redirectUri],
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
      // amr and acr under openid: this provider always reports them, as Entra ID and Okta do.
      claims: { sid: null, auth_time: null, openid: ['sub', 'amr', 'acr'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
      scopes: ['openid', 'profile', 'email', 'groups'],
      // The ID Token carries the claims itself (devicegate does not call userinfo).
      conformIdTokenClaims: false,
      findAccount: (_ctx: unknown, id: string) => {
        const account = options.accounts[id]
        if (account === undefined) return undefined
        return {
          accountId: id,
          claims: () => ({ sub: id, email: account.email, email_verified: true, name: account.name, preferred_username: account.email, groups: account.groups }),
        }
      },
      interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
      features: { devInteractions: { enabled: false } },
      pkce: { required: () => true },
      cookies: { keys: ['devicegate-test-upstream-cookie-key-0123456789'] },
    })
  }
  return {
    issuer,
    logins,
    register,
    close: () => new Promise((r) => server.close(() => r())),
  }
}
