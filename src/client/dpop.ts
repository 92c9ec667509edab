/**
 * The client side of DPoP (RFC 9449): an ES256 key pair per installation and proof JWTs.
 *
 * The private key lives in memory only as a non-extractable WebCrypto `CryptoKey`. WebCrypto
 * cannot export a non-extractable key, so {@link DpopKey.generate} creates an extractable pair
 * once, hands its private JWK to the caller to put in the secure store, and re-imports it as
 * non-extractable; later runs use {@link DpopKey.fromJwk}.
 */
import type { webcrypto } from 'node:crypto'
import { calculateJwkThumbprint, SignJWT, type JWK } from 'jose'
import { ClientError } from './errors.js'
import { findChallenge } from './www-authenticate.js'

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair
type JsonWebKey = webcrypto.JsonWebKey

const ALG = 'ES256'
const CURVE = { name: 'ECDSA', namedCurve: 'P-256' } as const

/** A private P-256 key as stored (RFC 7517 JWK with `d`). */
export interface DpopPrivateJwk {
  kty: 'EC'
  crv: 'P-256'
  x: string
  y: string
  d: string
}

/** What a proof is for (RFC 9449 §4.2). */
export interface DpopProofInput {
  /** HTTP method, e.g. `POST` (`htm`). */
  method: string
  /** Target URI (`htu`); query and fragment are dropped as RFC 9449 §4.2 requires. */
  url: string
  /** Access token the request carries; its hash becomes `ath` (RFC 9449 §4.2, resource requests). */
  accessToken?: string
}

function base64url(bytes: ArrayBuffer | Uint8Array): string {
  return Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).toString('base64url')
}

/** `htu`: the URI without query and fragment (RFC 9449 §4.2). */
export function htuOf(url: string): string {
  const u = new URL(url)
  return `${u.origin}${u.pathname}`
}

/**
 * A difference between the server's `Date` and the local clock, in seconds, below which the local
 * clock is trusted (the `Date` header has a resolution of one second).
 */
export const CLOCK_SKEW_TOLERANCE_SECONDS = 2

/** A DPoP key pair with the server nonces and clock offset it has learnt (RFC 9449 §8, §9). */
export class DpopKey {
  readonly #privateKey: CryptoKey
  /** The public key for the proof header `jwk` (never holds `d`). */
  readonly publicJwk: Readonly<JWK>
  /** RFC 7638 SHA-256 thumbprint, what the server puts in `cnf.jkt` (RFC 9449 §6.1). */
  readonly thumbprint: string
  /** Latest `DPoP-Nonce` per origin (RFC 9449 §8.2: a nonce is for one server). */
  readonly #nonces = new Map<string, string>()
  /** Seconds to add to the local clock for each origin's `iat` (its clock minus ours). */
  readonly #clockOffsets = new Map<string, number>()

  private constructor(privateKey: CryptoKey, publicJwk: JWK, thumbprint: string) {
    this.#privateKey = privateKey
    this.publicJwk = Object.freeze(publicJwk)
    this.thumbprint = thumbprint
  }

  /**
   * Generates a new installation key.
   * @returns the usable key (non-extractable) and its private JWK, to be written to the secure
   *   store and then dropped by the caller.
   */
  static async generate(): Promise<{ key: DpopKey; privateJwk: DpopPrivateJwk }> {
    const pair = (await crypto.subtle.generateKey(CURVE, true, ['sign', 'verify'])) as CryptoKeyPair
    const jwk = (await crypto.subtle.exportKey('jwk', pair.privateKey)) as JsonWebKey
    const privateJwk: DpopPrivateJwk = { kty: 'EC', crv: 'P-256', x: jwk.x!, y: jwk.y!, d: jwk.d! }
    return { key: await DpopKey.fromJwk(privateJwk), privateJwk }
  }

  /**
   * Imports a stored private JWK as a non-extractable signing key.
   * @throws {ClientError} `ERR_STORE_CORRUPT` when the JWK is not a P-256 private key.
   */
  static async fromJwk(jwk: DpopPrivateJwk): Promise<DpopKey> {
    if (jwk?.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string')
      throw new ClientError('ERR_STORE_CORRUPT', 'the stored DPoP key is not a P-256 private key')
    let privateKey: CryptoKey
    try {
      privateKey = await crypto.subtle.importKey('jwk', { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, d: jwk.d, ext: false }, CURVE, false, ['sign'])
    } catch (err) {
      throw new ClientError('ERR_STORE_CORRUPT', 'the stored DPoP key cannot be imported', { cause: err })
    }
    const publicJwk: JWK = { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }
    return new DpopKey(privateKey, publicJwk, await calculateJwkThumbprint(publicJwk, 'sha256'))
  }

  /** Whether the private key can leave memory. Always false; exposed for tests and audits. */
  get isExtractable(): boolean {
    return this.#privateKey.extractable
  }

  /**
   * Remembers the `DPoP-Nonce` header of a response from `url`'s server (RFC 9449 §8.2, §9).
   * @returns true when the header carried a new nonce.
   */
  rememberNonce(url: string, headers: Headers): boolean {
    const nonce = headers.get('dpop-nonce')
    if (!nonce) return false
    const origin = new URL(url).origin
    const changed = this.#nonces.get(origin) !== nonce
    this.#nonces.set(origin, nonce)
    return changed
  }

  /**
   * After a proof was refused (`invalid_dpop_proof`), learns the server's clock from the
   * response's `Date` header (RFC 9110 §6.6.1) when it differs from ours by more than
   * {@link CLOCK_SKEW_TOLERANCE_SECONDS}: later proofs for that origin carry `iat` on the server's
   * clock, so a client whose clock is minutes off still logs in (RFC 9449 §11.1 leaves the `iat`
   * window to the server; devicegate sends `Date` from the clock that judged the proof).
   *
   * @param nowMs The local time the response arrived, in epoch milliseconds.
   * @returns true when the offset changed, i.e. a retry may now succeed.
   */
  adjustClock(url: string, headers: Headers, nowMs: number = Date.now()): boolean {
    const date = Date.parse(headers.get('date') ?? '')
    if (!Number.isFinite(date)) return false
    const origin = new URL(url).origin
    const offset = Math.round((date - nowMs) / 1000)
    const previous = this.#clockOffsets.get(origin) ?? 0
    if (Math.abs(offset - previous) <= CLOCK_SKEW_TOLERANCE_SECONDS) return false
    this.#clockOffsets.set(origin, offset)
    return true
  }

  /**
   * Signs a DPoP proof JWT (RFC 9449 §4.2): header `typ: dpop+jwt`, `alg: ES256`, public `jwk`;
   * claims `jti` (128 random bits), `htm`, `htu`, `iat` (now on the server's clock as learnt by
   * {@link adjustClock}, epoch seconds), `ath` when `accessToken` is given, and the server's latest
   * `nonce` for that origin when it sent one.
   */
  async proof(input: DpopProofInput): Promise<string> {
    const claims: Record<string, unknown> = { htm: input.method.toUpperCase(), htu: htuOf(input.url) }
    const nonce = this.#nonces.get(new URL(input.url).origin)
    if (nonce !== undefined) claims.nonce = nonce
    if (input.accessToken !== undefined)
      claims.ath = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(input.accessToken)))
    return new SignJWT(claims)
      .setProtectedHeader({ alg: ALG, typ: 'dpop+jwt', jwk: { ...this.publicJwk } })
      .setJti(base64url(crypto.getRandomValues(new Uint8Array(16))))
      .setIssuedAt(Math.floor(Date.now() / 1000) + (this.#clockOffsets.get(new URL(input.url).origin) ?? 0))
      .sign(this.#privateKey)
  }
}

/**
 * True when a resource server's 401 asks for a (new) nonce: a `DPoP` challenge with
 * `error="use_dpop_nonce"` (RFC 9449 §9), wherever it stands among the `WWW-Authenticate`
 * challenges (RFC 9110 §11.6.1: a resource taking both schemes may name `Bearer` first, or send
 * each challenge in a field line of its own).
 */
export function isResourceNonceChallenge(status: number, headers: Headers): boolean {
  return status === 401 && findChallenge(headers.get('www-authenticate'), 'DPoP')?.params.error === 'use_dpop_nonce'
}
