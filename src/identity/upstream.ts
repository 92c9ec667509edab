/**
 * Upstream OpenID Connect sign-in for approvers: devicegate is a relying party of
 * the organisation's provider (Entra ID, Okta, Google, Keycloak…), using `openid-client` for
 * everything protocol: discovery, the authorization code flow with PKCE (RFC 7636, S256), `state`
 * (RFC 6749 §10.12) and `nonce` (OpenID Connect Core 1.0 §3.1.2.1), ID Token validation
 * (signature against the provider's JWKS, `iss`, `aud`, `exp`, `nonce`; `alg: none` refused) and
 * the RFC 9207 `iss` response parameter where the provider sends it.
 *
 * A person is keyed by the provider's (`iss`, `sub`) — never by email, which can be reassigned.
 * Someone seen for the first time is created just in time with the mapped groups (or, when the
 * provider's `join` says so, linked to a person SCIM provisioned); their groups, display name,
 * email and (when a `manager` claim is mapped and sent) manager are refreshed at every sign-in.
 *
 * Each provider has its own redirect URI (`<issuer>/device/upstream/<id>/callback`), so a response
 * can only be redeemed at the provider it came from (mix-up defence, RFC 9700 §4.4.2).
 *
 * Framework-free: `upstream-routes.ts` parses and renders; this module decides.
 */
import * as oidc from 'openid-client'
import type { Clock } from '../core/ports.js'
import type { IdentityProviderConfig } from '../config/identity.js'
import { sha256Hex } from '../system.js'
import type { PeopleStore } from '../storage/store.js'
import { newPerson, PeopleError, type Person, type PeopleService } from './people.js'

/** Why an upstream sign-in did not sign anyone in; each has its own page text. Stable codes. */
export type UpstreamFailure =
  | 'unknown_provider'
  | 'denied'
  | 'provider_error'
  | 'unreachable'
  | 'state_mismatch'
  | 'invalid_response'
  | 'email_not_allowed'
  | 'account_disabled'
  | 'account_conflict'
  | 'groups_unavailable'

/** Text shown for each failure: what happened and what to do. */
export const UPSTREAM_FAILURE_TEXT: Record<UpstreamFailure, { title: string; message: string }> = {
  unknown_provider: { title: 'Unknown sign-in provider', message: 'This sign-in provider is not configured here.' },
  denied: { title: 'Sign-in cancelled', message: 'The sign-in was cancelled or refused at your identity provider. Nothing was approved.' },
  provider_error: { title: 'Sign-in failed', message: 'Your identity provider reported an error. Try again, or ask your administrator.' },
  unreachable: { title: 'Identity provider unreachable', message: 'Your identity provider could not be reached or did not answer in time. Try again in a moment.' },
  state_mismatch: {
    title: 'Sign-in expired',
    message: 'This sign-in response does not belong to a sign-in started in this browser, or it took too long. Start again from the code entry page.',
  },
  invalid_response: { title: 'Sign-in refused', message: 'The answer from your identity provider failed its security checks, so you were not signed in.' },
  email_not_allowed: { title: 'Account not allowed', message: 'Accounts with this email domain may not approve devices here.' },
  account_disabled: { title: 'Account disabled', message: 'Your account is disabled here. Ask your administrator.' },
  account_conflict: { title: 'Account conflict', message: 'Your account matches another person here. Ask your administrator.' },
  groups_unavailable: {
    title: 'Groups not received',
    message: 'Your identity provider did not send your groups (it sent a reference to them instead, as it does for people in many groups), so approvals cannot be checked against them. Ask your administrator to limit the groups sent to this application.',
  },
}

/** Raised inside {@link UpstreamSignIn}; carries the stable code and a detail for logs (never shown). */
export class UpstreamError extends Error {
  override readonly name = 'UpstreamError'
  constructor(
    readonly code: UpstreamFailure,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${detail}`, options)
  }
}

/** A finished upstream sign-in. */
export interface UpstreamSignedIn {
  person: Person
  provider: IdentityProviderConfig
  /** Whether the provider reported a second factor (`amr` or `acr`, see {@link satisfiesMfa}). */
  mfa: boolean
  /** Local path to continue at. */
  returnTo: string
  /** Whether this was a step-up round trip. */
  stepUp: boolean
  /** `amr` and `acr` as reported, for the audit record. */
  amr: string[]
  acr: string | null
}

/** What {@link UpstreamSignIn} needs. */
export interface UpstreamSignInDeps {
  providers: readonly IdentityProviderConfig[]
  people: PeopleService
  store: PeopleStore
  clock: Clock
  /** devicegate's issuer URL (redirect URIs are built from it, never from request headers). */
  issuer: string
  /** How long a started sign-in may take, in seconds. */
  loginTtlSeconds: number
  /** Replaces `fetch` towards the providers (tests). */
  fetch?: oidc.CustomFetch
}

/**
 * Whether an ID Token's `amr` (RFC 8176) or `acr` counts as a second factor under this provider's
 * `mfa` settings.
 */
export function satisfiesMfa(provider: IdentityProviderConfig, amr: readonly string[], acr: string | null): boolean {
  return amr.some((v) => provider.mfa.amr.includes(v)) || (acr !== null && provider.mfa.acr.includes(acr))
}

/**
 * Whether a path is one an upstream sign-in may return to: a local absolute path under
 * `/device` or `/console`, without a scheme, authority (`//host`) or backslash.
 */
export function isLocalReturnPath(path: string): boolean {
  return /^\/(device|console)(?:[/?#]|$)/.test(path) && !path.startsWith('//') && !/[\\\s]/.test(path) && path.length <= 512
}

/** The relying party for every configured upstream provider. */
export class UpstreamSignIn {
  readonly #deps: UpstreamSignInDeps
  readonly #configs = new Map<string, Promise<oidc.Configuration>>()

  constructor(deps: UpstreamSignInDeps) {
    this.#deps = deps
  }

  /** The configured providers, for "Sign in with <name>" buttons. */
  get providers(): readonly IdentityProviderConfig[] {
    return this.#deps.providers
  }

  provider(id: string): IdentityProviderConfig | undefined {
    return this.#deps.providers.find((p) => p.id === id)
  }

  /** The redirect URI to register at the provider. */
  redirectUri(provider: IdentityProviderConfig): string {
    return `${this.#deps.issuer}/device/upstream/${provider.id}/callback`
  }

  /** Discovery (OpenID Connect Discovery 1.0 §4), cached; a failure is retried on the next sign-in. */
  async #config(provider: IdentityProviderConfig): Promise<oidc.Configuration> {
    let pending = this.#configs.get(provider.id)
    if (pending === undefined) {
      const server = new URL(provider.issuer)
      // Plain http only for a provider on this machine (development, tests); never across a network.
      const loopback = server.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(server.hostname)
      pending = oidc.discovery(
        server,
        provider.clientId,
        { redirect_uris: [this.redirectUri(provider)], response_types: ['code'] },
        provider.clientSecret !== undefined ? oidc.ClientSecretBasic(provider.clientSecret) : oidc.None(),
        {
          timeout: provider.timeoutSeconds,
          ...(loopback ? { execute: [oidc.allowInsecureRequests] } : {}),
          ...(this.#deps.fetch ? { [oidc.customFetch]: this.#deps.fetch } : {}),
        },
      )
      // Verify the ID Token's signature against the provider's JWKS too, not only trust TLS to the
      // token endpoint (OpenID Connect Core 1.0 §3.1.3.7 allows either; the stricter one is chosen).
      pending = pending.then((config) => {
        oidc.enableNonRepudiationChecks(config)
        return config
      })
      pending.catch(() => this.#configs.delete(provider.id))
      this.#configs.set(provider.id, pending)
    }
    try {
      const config = await pending
      if (this.#deps.fetch) config[oidc.customFetch] = this.#deps.fetch
      return config
    } catch (err) {
      throw new UpstreamError('unreachable', `discovery of ${provider.issuer} failed`, { cause: err })
    }
  }

  /**
   * Starts a sign-in: stores `state` (as a hash), `nonce` and the PKCE verifier for
   * {@link UpstreamSignIn.loginTtlSeconds}, and returns the authorization URL and the `state` the
   * caller must bind to the browser (a cookie). A step-up asks the provider for a fresh
   * authentication with a second factor: `acr_values` when configured, else `prompt=login` and
   * `max_age=0` (OpenID Connect Core 1.0 §3.1.2.1).
   * @throws {UpstreamError} `unknown_provider`, or `unreachable` when discovery fails.
   */
  async begin(providerId: string, options: { returnTo: string; stepUp?: boolean }): Promise<{ url: string; state: string }> {
    const provider = this.provider(providerId)
    if (provider === undefined) throw new UpstreamError('unknown_provider', providerId)
    if (!isLocalReturnPath(options.returnTo)) throw new TypeError(`not a local return path: ${options.returnTo}`)
    const config = await this.#config(provider)
    const state = oidc.randomState()
    const nonce = oidc.randomNonce()
    const codeVerifier = oidc.randomPKCECodeVerifier()
    const now = this.#deps.clock.nowSeconds()
    const stepUp = options.stepUp === true
    await this.#deps.store.createUpstreamLogin({
      stateHash: sha256Hex(state),
      provider: provider.id,
      nonce,
      codeVerifier,
      returnTo: options.returnTo,
      stepUp,
      createdAt: now,
      expiresAt: now + this.#deps.loginTtlSeconds,
    })
    const params: Record<string, string> = {
      redirect_uri: this.redirectUri(provider),
      scope: provider.scopes.join(' '),
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    }
    if (stepUp) {
      params.prompt = 'login'
      params.max_age = '0'
      if (provider.mfa.requestAcrValues !== undefined) params.acr_values = provider.mfa.requestAcrValues
    }
    return { url: oidc.buildAuthorizationUrl(config, params).href, state }
  }

  /**
   * Finishes a sign-in at the callback: the pending sign-in is taken (single use) by the `state`
   * in the response, which must equal the one bound to this browser; then openid-client redeems
   * the code and validates the ID Token; then the person is found by (`iss`, `sub`), joined or
   * created, and refreshed. Nothing is stored about the person before every check passed.
   *
   * @param callbackUrl The callback URL with the provider's query parameters.
   * @param browserState The `state` bound to this browser when the sign-in started.
   * @throws {UpstreamError} for every failure (see {@link UpstreamFailure}).
   */
  async complete(providerId: string, callbackUrl: URL, browserState: string | undefined): Promise<UpstreamSignedIn> {
    const provider = this.provider(providerId)
    if (provider === undefined) throw new UpstreamError('unknown_provider', providerId)
    const state = callbackUrl.searchParams.get('state')
    if (state === null || browserState === undefined || state !== browserState) {
      // Still consume a matching pending sign-in, so a response cannot be replayed elsewhere later.
      if (state !== null) await this.#deps.store.takeUpstreamLogin(sha256Hex(state), this.#deps.clock.nowSeconds())
      throw new UpstreamError('state_mismatch', state === null ? 'no state in the response' : 'state differs from the browser\'s')
    }
    const login = await this.#deps.store.takeUpstreamLogin(sha256Hex(state), this.#deps.clock.nowSeconds())
    if (login === undefined || login.provider !== provider.id) throw new UpstreamError('state_mismatch', 'unknown, used or expired state')
    const error = callbackUrl.searchParams.get('error')
    if (error !== null) {
      const code = error === 'access_denied' || error === 'login_required' || error === 'consent_required' ? 'denied' : 'provider_error'
      throw new UpstreamError(code, `provider answered error=${error.slice(0, 100)}`)
    }
    const config = await this.#config(provider)
    let claims: Record<string, unknown>
    try {
      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: login.codeVerifier,
        expectedState: state,
        expectedNonce: login.nonce,
        idTokenExpected: true,
      })
      const idClaims = tokens.claims()
      if (idClaims === undefined) throw new UpstreamError('invalid_response', 'no ID Token')
      claims = idClaims as Record<string, unknown>
    } catch (err) {
      throw classifyOidcError(err)
    }
    return this.#signIn(provider, claims, login.returnTo, login.stepUp)
  }

  async #signIn(provider: IdentityProviderConfig, claims: Record<string, unknown>, returnTo: string, stepUp: boolean): Promise<UpstreamSignedIn> {
    const map = provider.claims
    const iss = String(claims.iss)
    const sub = String(claims.sub)
    const email = stringClaim(claims[map.email])?.toLowerCase() ?? null
    if (provider.allowedEmailDomains.length > 0) {
      const domain = email?.split('@')[1]
      // An unverified address proves nothing about the domain (OpenID Connect Core 1.0 §5.1).
      if (email === null || claims.email_verified === false || domain === undefined || !provider.allowedEmailDomains.includes(domain))
        throw new UpstreamError('email_not_allowed', `email domain not allowed: ${domain ?? 'none'}`)
    }
    // A distributed claim (OpenID Connect Core §5.6.2) — Entra ID's groups "overage" above 200
    // groups — names the groups without sending them. Refreshing to no groups would lift every
    // policy rule that denies by group, so nobody is signed in (fail closed).
    if (claims[map.groups] === undefined && isDistributedClaim(claims, map.groups)) throw new UpstreamError('groups_unavailable', `"${map.groups}" is a distributed claim`)
    const groups = stringArrayClaim(claims[map.groups])
    const amr = stringArrayClaim(claims[map.amr])
    const acr = stringClaim(claims[map.acr]) ?? null
    const displayName = stringClaim(claims[map.display_name]) ?? null
    // Only a mapped claim that is present changes the manager (SCIM may be the one that sets it).
    const manager = map.manager === undefined ? undefined : stringClaim(claims[map.manager])?.slice(0, 256)
    const wantedUserName = (stringClaim(claims[map.username]) ?? email ?? sub).slice(0, 200)
    const actor = `upstream:${provider.id}`
    const { people } = this.#deps
    let person = await this.#deps.store.findPersonByUpstream(iss, sub).then((p) => p && people.directory.person(p.id))
    if (person === undefined && provider.join !== undefined) person = this.#joinCandidate(provider, claims)
    try {
      if (person === undefined) {
        const userName = people.directory.byUserName(wantedUserName) === undefined ? wantedUserName : `${provider.id}:${wantedUserName}`
        const now = this.#deps.clock.nowSeconds()
        person = await people.create(
          newPerson(undefined, now, { userName, displayName, email, source: 'provider', groups, upstreamIssuer: iss, upstreamSub: sub, manager: manager ?? null }),
          actor,
          'upstream_sign_in',
        )
      } else {
        if (person.status !== 'active') throw new UpstreamError('account_disabled', `person ${person.id} is ${person.status}`)
        person = await people.update(
          {
            ...person,
            upstreamIssuer: iss,
            upstreamSub: sub,
            groups,
            ...(displayName !== null ? { displayName } : {}),
            ...(email !== null ? { email } : {}),
            ...(manager !== undefined ? { manager } : {}),
          },
          actor,
          'upstream_sign_in',
        )
      }
    } catch (err) {
      if (err instanceof PeopleError && err.code === 'conflict') throw new UpstreamError('account_conflict', err.message)
      throw err
    }
    if (person.status !== 'active') throw new UpstreamError('account_disabled', `person ${person.id} is ${person.status}`)
    return { person, provider, mfa: satisfiesMfa(provider, amr, acr), returnTo, stepUp, amr, acr }
  }

  /** The provisioned person the `join` rule names, when exactly one not yet linked upstream matches. */
  #joinCandidate(provider: IdentityProviderConfig, claims: Record<string, unknown>): Person | undefined {
    const join = provider.join!
    const value = stringClaim(claims[join.claim])?.toLowerCase()
    if (value === undefined) return undefined
    const attribute = (p: Person) => (join.attribute === 'externalId' ? p.externalId : join.attribute === 'userName' ? p.userName : p.email)?.toLowerCase()
    const matches = this.#deps.people.directory.all().filter((p) => p.status !== 'deleted' && p.upstreamSub === null && attribute(p) === value)
    return matches.length === 1 ? matches[0] : undefined
  }
}

/** Maps an openid-client failure to a stable code: network → unreachable; provider error → provider_error/denied; validation → invalid_response. */
function classifyOidcError(err: unknown): UpstreamError {
  if (err instanceof UpstreamError) return err
  if (err instanceof oidc.AuthorizationResponseError) {
    const code = err.error === 'access_denied' ? 'denied' : 'provider_error'
    return new UpstreamError(code, `authorization response error=${err.error}`, { cause: err })
  }
  if (err instanceof oidc.ResponseBodyError) return new UpstreamError('provider_error', `token endpoint error=${err.error}`, { cause: err })
  if (err instanceof oidc.ClientError) return new UpstreamError('invalid_response', `${err.code ?? 'client error'}: ${err.message}`, { cause: err })
  const name = err instanceof Error ? err.name : ''
  if (name === 'TimeoutError' || name === 'AbortError' || err instanceof TypeError) return new UpstreamError('unreachable', String((err as Error).message), { cause: err })
  return new UpstreamError('invalid_response', err instanceof Error ? err.message : String(err), { cause: err })
}

/** Whether `name` is announced in `_claim_names` (aggregated or distributed claims, OpenID Connect Core §5.6.2). */
function isDistributedClaim(claims: Record<string, unknown>, name: string): boolean {
  const names = claims._claim_names
  return names !== null && typeof names === 'object' && Object.hasOwn(names, name)
}

function stringClaim(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined
}

function stringArrayClaim(v: unknown): string[] {
  if (typeof v === 'string') return v.split(' ').filter(Boolean)
  if (!Array.isArray(v)) return []
  return [...new Set(v.filter((x): x is string => typeof x === 'string' && x.length > 0 && x.length <= 200))].slice(0, 500)
}

