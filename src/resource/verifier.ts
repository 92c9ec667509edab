/**
 * Verifies requests to a protected resource: the access token (RFC 9068 JWT against the issuer's
 * JWKS, or introspection), its audience (RFC 8707), expiry, sender constraint (RFC 9449 DPoP,
 * with `ath` and replay), scope, and revocation state.
 */
import { createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'
import { DEFAULT_DPOP_ALGS, DpopKeyMismatchError, DpopNonceError, DpopProofError, ReplayCache, ResourceDpopNonces, verifyResourceDpopProof } from './dpop.js'
import { headerFieldValues, receivedField } from './header-fields.js'
import { ResourceAuthError, type ChallengeContext, type ChallengeScheme, type ResourceErrorCode } from './errors.js'
import { IntrospectionClient, RevocationFeed, RevocationUnavailableError, type ClientCredentials, type IntrospectionResult } from './revocation.js'
import { SsfRevocations } from './ssf.js'

/** The part of an HTTP request the helper reads (node:http `IncomingMessage` and fastify requests fit). */
export interface RequestLike {
  method?: string | undefined
  /** Path and query (`/things?x=1`) or an absolute URL. */
  url?: string | undefined
  headers: Record<string, string | string[] | undefined>
  /**
   * The header fields as received (node's `IncomingMessage.rawHeaders`: names and values
   * alternating). When given, `Authorization` and `DPoP` are read from here, so a repeated field is
   * seen and refused: `Authorization` with 400 `invalid_request` (node's `headers.authorization`
   * keeps only the first line), `DPoP` with 401 `invalid_dpop_proof` (node joins its lines with
   * commas; RFC 9449 §4.3 check 1). `authorize` (node) and the fastify plugin pass it.
   */
  rawHeaders?: readonly string[] | undefined
}

/** How revocation is checked. */
export type RevocationOptions =
  | {
      /** Poll the authorization server's `GET /revocations` feed (JWT access tokens). */
      mode: 'feed'
      credentials: ClientCredentials
      /** Poll interval in milliseconds. Default: 1000 (revoked tokens refused within about 2 s). */
      pollIntervalMs?: number
      /** Refuse every request when no poll succeeded for this long, in milliseconds. Default: max(5000, 5 × interval). */
      maxStalenessMs?: number
      /** Feed URL. Default: issuer + `/revocations`. */
      url?: string
    }
  | {
      /** Ask the introspection endpoint (RFC 7662), cached briefly; also accepts opaque tokens. */
      mode: 'introspection'
      credentials: ClientCredentials
      /** Cache lifetime per token in milliseconds. Default: 1000. */
      cacheTtlMs?: number
      /** Introspection URL. Default: issuer + `/introspect`. */
      url?: string
    }
  | {
      /**
       * Follow a Shared Signals stream (CAEP session-revoked) as a receiver: `credentials` are a
       * confidential client with the `ssf` scope. Poll (RFC 8936, default) or push (RFC 8935: mount
       * `receiveSsfPush` at `delivery.push.endpointUrl`). See `ssf.ts`.
       */
      mode: 'ssf'
      credentials: ClientCredentials
      delivery?: 'poll' | { push: { endpointUrl: string } }
      /** Poll interval in milliseconds. Default: 1000. */
      pollIntervalMs?: number
      /** Poll mode: refuse every request when no poll succeeded for this long, ms. Default: max(5000, 5 × interval). */
      maxStalenessMs?: number
    }
  | {
      /** No revocation check: tokens are valid until `exp`. Say so explicitly. */
      mode: 'none'
    }

/** Options of {@link createResourceServer}. */
export interface ResourceServerOptions {
  /** The authorization server's issuer identifier (`iss`), without trailing slash. */
  issuer: string
  /** This API's resource indicator(s) (RFC 8707): the token's `aud` must contain one. */
  audience: string | readonly string[]
  /** JWKS URL. Default: issuer + `/jwks`. */
  jwksUri?: string
  /**
   * Least time between two JWKS fetches, in milliseconds: a token with an unknown `kid` refetches
   * the set (key rotation) at most this often. Default: 1000.
   */
  jwksCooldownMs?: number
  /** Token signing algorithms accepted. Default: ES256, EdDSA, RS256, PS256. */
  algorithms?: readonly string[]
  /**
   * Public base URL of this API (scheme, host, optional port), for the DPoP `htu` check: the
   * request's path is judged under it, also when the request target is in absolute form (whose
   * scheme and authority are the client's to choose). Default: `http://` + the Host header, or the
   * absolute-form target as sent. Set it behind a proxy, and wherever a client could otherwise
   * replay a proof made for another server (RFC 9449 §11.1).
   */
  baseUrl?: string
  revocation: RevocationOptions
  dpop?: {
    /** Refuse bearer (unbound) tokens altogether. Default: false. */
    required?: boolean
    /** Proof algorithms accepted. Default: ES256, EdDSA, RS256, PS256. */
    algorithms?: readonly string[]
    /** Oldest accepted proof `iat`, in seconds. Default: 60. */
    maxAgeSeconds?: number
    /** Latest accepted proof `iat` ahead of the clock, in seconds. Default: 5. */
    maxSkewSeconds?: number
    /** Capacity of the proof replay cache. Default: 100000. */
    replayCacheSize?: number
    /**
     * Require a server nonce in DPoP proofs (RFC 9449 §9; opt-in, off by default). A proof without
     * the current nonce is refused with 401 `use_dpop_nonce` on the DPoP challenge and a fresh
     * `DPoP-Nonce` header (its `jti` is not spent, so the client retries at once); every refusal
     * carries the current `DPoP-Nonce`, and so does every accepted request ({@link
     * VerifiedAccess.dpopNonce}: `authorize` and the fastify plugin send it), so a client learns it
     * without a `use_dpop_nonce` round trip. Bearer requests are not affected.
     */
    nonce?: {
      /**
       * HMAC key of the nonces, at least 32 bytes (a string is read as UTF-8). Every instance of
       * the API must share it to accept each other's nonces. Default: 32 random bytes per process
       * (one instance only).
       */
      secret?: string | Uint8Array
      /** A nonce is accepted for one to two slots of this length, in seconds. Default: 60. */
      slotSeconds?: number
    }
  }
  /** Leeway for `exp`/`iat` of access tokens, in seconds. Default: 5. */
  clockToleranceSeconds?: number
  /** `realm` of the challenges. Default: none. */
  realm?: string
  /** For tests. */
  fetch?: typeof fetch
  /** Current time in milliseconds. Default: Date.now. */
  nowMs?: () => number
}

/** A verified request. */
export interface VerifiedAccess {
  /** The access token as presented. */
  token: string
  tokenType: 'Bearer' | 'DPoP'
  subject: string
  clientId: string
  scopes: string[]
  /** Thumbprint of the key the token is bound to (`cnf.jkt`), or null for a bearer token. */
  jkt: string | null
  /** Token identifier (`jti`). */
  tokenId: string
  expiresAt: number
  /** The JWT claims (or the introspection response for opaque tokens). */
  claims: JWTPayload | IntrospectionResult
  /**
   * The current `DPoP-Nonce` to send with the answer (RFC 9449 §9) when the resource requires
   * nonces (`dpop.nonce`); undefined otherwise.
   */
  dpopNonce?: string
}

/** The helper; build one per API with {@link createResourceServer}. */
export interface ResourceServer {
  /**
   * Verifies one request.
   * @param options.scopes Scopes the request needs (all of them); `insufficient_scope` otherwise.
   * @param options.clientIp The address the request came from. Introspection mode sends it as
   *   `client_ip`, so the authorization server records where the token was used (last use, the
   *   new-network detector); the introspection cache is per token and address, so a replay from
   *   another address is reported at once.
   * @throws {ResourceAuthError} with the status and `WWW-Authenticate` challenge to send.
   */
  verifyRequest(request: RequestLike, options?: { scopes?: readonly string[]; clientIp?: string }): Promise<VerifiedAccess>
  /**
   * What this API's challenges say besides the error: `realm` (when configured) and the DPoP
   * `algs` (RFC 9449 §7.1), for refusals made outside {@link ResourceServer.verifyRequest} (a
   * route's own scope check, `requireAccess` after the plugin verified the request).
   */
  readonly challenge: Readonly<ChallengeContext>
  /**
   * SSF push mode: handles one RFC 8935 push at the API's push URL (`body` as text). Answer with
   * the returned status and JSON body. Pass `rawHeaders` (node's `req.rawHeaders`) so a repeated
   * `Authorization` field is refused with 400 `invalid_request` (see `SsfRevocations.receivePush`).
   * Undefined in other modes.
   */
  receiveSsfPush?: (request: {
    body: string
    headers: Record<string, string | string[] | undefined>
    rawHeaders?: readonly string[] | undefined
  }) => Promise<{ status: number; body?: { err: string; description: string } }>
  /** Stops background polling. */
  close(): void
}

function single(value: string | string[] | undefined): string | string[] | undefined {
  return Array.isArray(value) && value.length === 1 ? value[0] : value
}

/**
 * Builds a resource-server helper.
 *
 * Order of checks: credentials present and well-formed (RFC 6750 §2.1, RFC 9449 §7.1); token
 * signature against the issuer's JWKS (cached; an unknown `kid` refetches it), `typ: at+jwt`
 * (RFC 9068 §4), `iss`, `aud`, `exp`; sender constraint: a token with `cnf.jkt` only with the
 * `DPoP` scheme and a valid proof for this request (RFC 9449 §7.1–7.2), a token without it only as
 * Bearer (and not at all when `dpop.required`); revocation; scope.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-7
 */
export function createResourceServer(options: ResourceServerOptions): ResourceServer {
  const issuer = options.issuer.replace(/\/+$/, '')
  const audiences = typeof options.audience === 'string' ? [options.audience] : [...options.audience]
  if (audiences.length === 0) throw new TypeError('audience: name at least one resource indicator')
  const nowMs = options.nowMs ?? Date.now
  const dpopAlgs = options.dpop?.algorithms ?? DEFAULT_DPOP_ALGS
  const dpopRequired = options.dpop?.required ?? false
  const replay = new ReplayCache(options.dpop?.replayCacheSize)
  const nonceOptions = options.dpop?.nonce
  const nonces = nonceOptions === undefined ? undefined : new ResourceDpopNonces({ key: nonceOptions.secret, slotSeconds: nonceOptions.slotSeconds, nowMs })
  const jwks = createRemoteJWKSet(new URL(options.jwksUri ?? `${issuer}/jwks`), { cooldownDuration: options.jwksCooldownMs ?? 1000, cacheMaxAge: 600_000 })
  const algorithms = [...(options.algorithms ?? ['ES256', 'EdDSA', 'RS256', 'PS256'])]
  const tolerance = options.clockToleranceSeconds ?? 5
  const challenge: Readonly<ChallengeContext> = Object.freeze({ ...(options.realm ? { realm: options.realm } : {}), dpopAlgs })
  const revocation = options.revocation
  const feed =
    revocation.mode === 'feed'
      ? new RevocationFeed({
          url: revocation.url ?? `${issuer}/revocations`,
          credentials: revocation.credentials,
          ...(revocation.pollIntervalMs !== undefined ? { pollIntervalMs: revocation.pollIntervalMs } : {}),
          ...(revocation.maxStalenessMs !== undefined ? { maxStalenessMs: revocation.maxStalenessMs } : {}),
          ...(options.fetch ? { fetch: options.fetch } : {}),
          nowMs,
        })
      : undefined
  feed?.start()
  feed?.sync().catch(() => {})
  const ssf =
    revocation.mode === 'ssf'
      ? new SsfRevocations({
          issuer,
          credentials: revocation.credentials,
          ...(revocation.delivery !== undefined ? { delivery: revocation.delivery } : {}),
          ...(revocation.pollIntervalMs !== undefined ? { pollIntervalMs: revocation.pollIntervalMs } : {}),
          ...(revocation.maxStalenessMs !== undefined ? { maxStalenessMs: revocation.maxStalenessMs } : {}),
          ...(options.fetch ? { fetch: options.fetch } : {}),
          nowMs,
        })
      : undefined
  ssf?.start().catch(() => {})
  const introspection =
    revocation.mode === 'introspection'
      ? new IntrospectionClient({
          url: revocation.url ?? `${issuer}/introspect`,
          credentials: revocation.credentials,
          ...(revocation.cacheTtlMs !== undefined ? { cacheTtlMs: revocation.cacheTtlMs } : {}),
          ...(options.fetch ? { fetch: options.fetch } : {}),
          nowMs,
        })
      : undefined

  const refuse = (error: ResourceErrorCode | undefined, description: string, scheme: ChallengeScheme, extra: { scope?: string; cause?: unknown } = {}) =>
    new ResourceAuthError(error, description, scheme, { ...challenge, ...(extra.scope ? { scope: extra.scope } : {}) }, { cause: extra.cause, dpopNonce: nonces?.current() })

  /**
   * The URI a DPoP proof's `htu` is judged against (RFC 9449 §4.3 check 9). With `baseUrl`, it
   * names this API whatever the request says: an absolute-form target (`GET http://other/me`, RFC
   * 9112 §3.2.2) gives only its path, else a proof made for another server (§11.1) would pass.
   */
  function requestUri(request: RequestLike): string {
    const url = request.url ?? '/'
    const origin = /^https?:\/\/[^/?#]*/i.exec(url)
    if (options.baseUrl) return options.baseUrl.replace(/\/+$/, '') + (origin === null ? url : url.slice(origin[0].length) || '/')
    if (origin !== null) return url
    const host = single(request.headers.host)
    return `http://${typeof host === 'string' ? host : 'localhost'}${url}`
  }

  async function verifyRequest(request: RequestLike, verifyOptions: { scopes?: readonly string[]; clientIp?: string } = {}): Promise<VerifiedAccess> {
    const noCredentialsScheme: ChallengeScheme = dpopRequired ? 'DPoP' : 'both'
    const authorization = request.rawHeaders !== undefined ? headerFieldValues(request.rawHeaders, 'authorization') : single(request.headers.authorization)
    if (authorization === undefined || authorization === '') throw refuse(undefined, 'authentication required', noCredentialsScheme)
    if (Array.isArray(authorization)) throw refuse('invalid_request', 'one Authorization header only', noCredentialsScheme)
    // RFC 6750 §3.1: another scheme ("attempted using an unsupported authentication method") is
    // answered like no credentials, with no error code; a Bearer or DPoP header without a
    // well-formed token is a malformed request, 400 invalid_request.
    if (!/^(Bearer|DPoP)(\s|$)/i.test(authorization)) throw refuse(undefined, 'use "Authorization: Bearer <token>" or "Authorization: DPoP <token>"', noCredentialsScheme)
    const match = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization)
    if (!match) throw refuse('invalid_request', 'expected "Authorization: Bearer <token>" or "Authorization: DPoP <token>"', noCredentialsScheme)
    const scheme: 'Bearer' | 'DPoP' = match[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer'
    const token = match[2]!
    const now = nowMs()

    // 1. The token itself.
    let claims: JWTPayload | IntrospectionResult
    let jkt: string | null
    let isJwt = token.split('.').length === 3
    if (isJwt) {
      try {
        decodeJwt(token)
      } catch {
        isJwt = false
      }
    }
    if (isJwt) {
      try {
        ;({ payload: claims } = await jwtVerify(token, jwks, {
          issuer,
          audience: audiences,
          typ: 'at+jwt',
          algorithms,
          clockTolerance: tolerance,
          currentDate: new Date(now),
          requiredClaims: ['exp', 'jti', 'sub'],
        }))
      } catch (err) {
        const description =
          err instanceof joseErrors.JWTExpired
            ? 'the access token has expired'
            : err instanceof joseErrors.JWTClaimValidationFailed
              ? `the access token "${err.claim}" claim is not acceptable`
              : 'the access token is invalid'
        throw refuse('invalid_token', description, scheme, { cause: err })
      }
      const cnf = (claims as JWTPayload & { cnf?: { jkt?: unknown } }).cnf
      jkt = typeof cnf?.jkt === 'string' ? cnf.jkt : null
    } else if (introspection) {
      const result = await introspection.introspect(token, verifyOptions.clientIp).catch((err: unknown) => {
        throw refuse('temporarily_unavailable', 'token state cannot be checked now', scheme, { cause: err })
      })
      if (!result.active) throw refuse('invalid_token', 'the access token is not active', scheme)
      if (result.token_type === 'refresh_token') throw refuse('invalid_token', 'a refresh token is not an access token', scheme)
      const aud = result.aud ?? issuer
      if (!(Array.isArray(aud) ? aud : [aud]).some((a) => audiences.includes(a))) throw refuse('invalid_token', 'the access token is not for this resource', scheme)
      claims = result
      jkt = result.cnf?.jkt ?? null
    } else {
      throw refuse('invalid_token', 'the access token is invalid', scheme)
    }

    // 2. Sender constraint (RFC 9449 §7.1–7.2).
    // RFC 9449 §4.3 check 1: one DPoP field; read as received when the lines are known.
    const proofHeader = receivedField(request, 'dpop')
    if (jkt !== null) {
      if (scheme !== 'DPoP') throw refuse('invalid_token', 'a DPoP-bound access token must be sent with the DPoP scheme', 'DPoP')
      if (proofHeader === undefined) throw refuse('invalid_dpop_proof', 'a DPoP proof is required', 'DPoP')
      if (Array.isArray(proofHeader) && proofHeader.length !== 1) throw refuse('invalid_dpop_proof', 'exactly one DPoP header is allowed', 'DPoP')
      try {
        await verifyResourceDpopProof(
          Array.isArray(proofHeader) ? proofHeader[0]! : proofHeader,
          { method: request.method ?? 'GET', uri: requestUri(request), accessToken: token, boundJkt: jkt },
          {
            algorithms: dpopAlgs,
            maxAgeSeconds: options.dpop?.maxAgeSeconds ?? 60,
            maxSkewSeconds: options.dpop?.maxSkewSeconds ?? 5,
            replay,
            nowMs: now,
            nonces,
          },
        )
      } catch (err) {
        // RFC 9449 §7.1: a valid proof by another key than the token's is a token problem.
        if (err instanceof DpopKeyMismatchError) throw refuse('invalid_token', err.message, 'DPoP', { cause: err })
        // RFC 9449 §9: the client retries with the nonce of the answer's DPoP-Nonce.
        if (err instanceof DpopNonceError) throw refuse('use_dpop_nonce', err.message, 'DPoP', { cause: err })
        if (err instanceof DpopProofError) throw refuse('invalid_dpop_proof', err.message, 'DPoP', { cause: err })
        throw err
      }
    } else {
      if (scheme === 'DPoP') throw refuse('invalid_token', 'the access token is not DPoP-bound', 'DPoP')
      if (dpopRequired) throw refuse('invalid_token', 'this resource accepts DPoP-bound access tokens only', 'DPoP')
    }

    // 3. Revocation.
    const tokenId = typeof claims.jti === 'string' ? claims.jti : ''
    if (feed && isJwt) {
      let revoked: boolean
      try {
        revoked = await feed.isRevoked(tokenId)
      } catch (err) {
        if (err instanceof RevocationUnavailableError) throw refuse('temporarily_unavailable', 'token state cannot be checked now', scheme, { cause: err })
        throw err
      }
      if (revoked) throw refuse('invalid_token', 'the access token has been revoked', scheme)
    } else if (ssf && isJwt) {
      let revoked: boolean
      try {
        revoked = await ssf.isRevoked(claims as JWTPayload)
      } catch (err) {
        if (err instanceof RevocationUnavailableError) throw refuse('temporarily_unavailable', 'token state cannot be checked now', scheme, { cause: err })
        throw err
      }
      if (revoked) throw refuse('invalid_token', 'the access token has been revoked', scheme)
    } else if (introspection && isJwt) {
      const result = await introspection.introspect(token, verifyOptions.clientIp).catch((err: unknown) => {
        throw refuse('temporarily_unavailable', 'token state cannot be checked now', scheme, { cause: err })
      })
      if (!result.active) throw refuse('invalid_token', 'the access token is not active', scheme)
    }

    // 4. Scope (RFC 6750 §3.1 insufficient_scope).
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : []
    const needed = verifyOptions.scopes ?? []
    if (needed.some((s) => !scopes.includes(s))) throw refuse('insufficient_scope', 'the access token lacks a required scope', scheme, { scope: needed.join(' ') })

    return {
      token,
      tokenType: scheme,
      subject: String(claims.sub ?? ''),
      clientId: String(claims.client_id ?? ''),
      scopes,
      jkt,
      tokenId,
      expiresAt: typeof claims.exp === 'number' ? claims.exp : 0,
      claims,
      ...(nonces !== undefined ? { dpopNonce: nonces.current() } : {}),
    }
  }

  return {
    verifyRequest,
    challenge,
    ...(ssf ? { receiveSsfPush: (request: Parameters<SsfRevocations['receivePush']>[0]) => ssf.receivePush(request) } : {}),
    close: () => {
      feed?.stop()
      ssf?.stop()
    },
  }
}
