/**
 * DPoP proof checks at a resource server (RFC 9449 §4.3, §7) and the proof replay cache
 * (§11.1). Self-contained: the resource helper imports no authorization-server code.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify, type JWK } from 'jose'

/** Asymmetric algorithms accepted in DPoP proofs by default (never `none` or HMAC). */
export const DEFAULT_DPOP_ALGS = ['ES256', 'EdDSA', 'RS256', 'PS256'] as const

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const

/**
 * A bounded in-memory set of proof identifiers with a time-to-live: a `Map` in insertion order,
 * so the oldest entry is evicted first when full. Entries live until their own expiry.
 */
export class ReplayCache {
  readonly #entries = new Map<string, number>()
  constructor(readonly maxEntries = 100_000) {}

  /**
   * Remembers `key` until `expiresAtMs`.
   * @returns false when `key` is already remembered and unexpired (a replay).
   */
  remember(key: string, expiresAtMs: number, nowMs: number): boolean {
    const seen = this.#entries.get(key)
    if (seen !== undefined && seen > nowMs) return false
    this.#entries.delete(key)
    // Drop expired entries from the old end, then make room.
    for (const [k, exp] of this.#entries) {
      if (exp > nowMs && this.#entries.size < this.maxEntries) break
      this.#entries.delete(k)
    }
    this.#entries.set(key, expiresAtMs)
    return true
  }

  get size(): number {
    return this.#entries.size
  }
}

/**
 * Normalises an http(s) URI for `htu` comparison (RFC 9449 §4.3 check 9 with RFC 3986 §6.2.2–6.2.3
 * syntax- and scheme-based normalisation); query and fragment are ignored. Besides what the WHATWG
 * parser does (scheme and host case, default port, dot segments), the path's percent-encodings are
 * normalised (§6.2.2.1–6.2.2.2): an encoded unreserved character is decoded (`/t%6Fken` is
 * `/token`), any other keeps its encoding with upper-case hex digits (`%2f` is `%2F`, still not a
 * `/`).
 *
 * A URI with a userinfo subcomponent (`http://u:p@host/token`, even an empty `http://@host/…`)
 * gives undefined, so it never matches: userinfo is part of the authority (RFC 3986 §3.2.1), which
 * normalisation keeps, so such a URI is not the request's URI; and RFC 9110 §4.2.4 deprecates it in
 * http(s) URIs and tells a recipient to treat its presence as an error.
 *
 * @returns `scheme://host[:port]/path`, or undefined for a URI that is not absolute http(s) or
 *   that carries userinfo.
 */
export function normalizeHtu(uri: string): string | undefined {
  // The WHATWG parser drops an empty userinfo (`http://@host/`), so look at the raw authority too.
  if (/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(uri)) return undefined
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  if (url.username !== '' || url.password !== '') return undefined
  const path = url.pathname.includes('%') ? url.pathname.replace(PERCENT_ENCODED, normalizePercentEncoded) : url.pathname
  return `${url.protocol}//${url.host}${path}`
}

/** A percent-encoded octet (RFC 3986 §2.1). */
const PERCENT_ENCODED = /%([0-9A-Fa-f]{2})/g

/** RFC 3986 §6.2.2.1–6.2.2.2: an unreserved character (§2.3) decoded, any other octet with upper-case hex. */
function normalizePercentEncoded(_match: string, hex: string): string {
  const c = parseInt(hex, 16)
  const unreserved = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e
  return unreserved ? String.fromCharCode(c) : `%${hex.toUpperCase()}`
}

/** base64url SHA-256 of the access token: the `ath` claim (RFC 9449 §4.2). */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

/** Why a proof was refused; the caller turns it into `invalid_dpop_proof`. */
export class DpopProofError extends Error {
  override readonly name: string = 'DpopProofError'
  /** @param check The check that failed, when callers answer it differently (`iat`: clock skew). */
  constructor(
    message: string,
    readonly check?: 'iat',
  ) {
    super(message)
  }
}

/**
 * A proof that is valid in itself but made with another key than the one the access token is
 * bound to (`cnf.jkt`): the token is presented by someone who does not hold its key, so the caller
 * answers `invalid_token` rather than `invalid_dpop_proof` (RFC 9449 §7.1).
 */
export class DpopKeyMismatchError extends DpopProofError {
  override readonly name = 'DpopKeyMismatchError'
}

/**
 * A proof that is valid but lacks the resource server's current nonce (RFC 9449 §9): the caller
 * answers 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`. Not a {@link DpopProofError}: the
 * client is not at fault and retries with the nonce (the proof's `jti` was not remembered).
 */
export class DpopNonceError extends Error {
  override readonly name = 'DpopNonceError'
}

/**
 * Nonces a resource server hands out for DPoP proofs (RFC 9449 §9), stateless: a nonce is the
 * HMAC-SHA-256 (base64url) of the current time slot under `key`, accepted during its own slot and
 * the next, so it lives between one and two slots. Instances of one API that share `key` accept
 * each other's nonces without shared state per nonce; with a random key (the default) only the
 * process that made them does.
 */
export class ResourceDpopNonces {
  readonly #key: Uint8Array
  readonly #slotMs: number
  readonly #nowMs: () => number

  /**
   * @param key The HMAC key, at least 32 bytes (a string is read as UTF-8). Default: 32 random bytes.
   * @param slotSeconds Length of a slot in seconds (a nonce is accepted for one to two). Default: 60.
   * @param nowMs Current time in epoch milliseconds.
   * @throws {TypeError} for a key shorter than 32 bytes or a slot that is not a positive integer.
   */
  constructor(options: { key?: string | Uint8Array | undefined; slotSeconds?: number | undefined; nowMs: () => number }) {
    // A copy: the caller's buffer may change or be zeroed after this.
    const key = options.key === undefined ? randomBytes(32) : typeof options.key === 'string' ? Buffer.from(options.key, 'utf8') : Buffer.from(options.key)
    if (key.length < 32) throw new TypeError('dpop.nonce.secret: needs at least 32 bytes')
    const slotSeconds = options.slotSeconds ?? 60
    if (!Number.isInteger(slotSeconds) || slotSeconds < 1) throw new TypeError('dpop.nonce.slotSeconds: expected a positive integer (seconds)')
    this.#key = key
    this.#slotMs = slotSeconds * 1000
    this.#nowMs = options.nowMs
  }

  #forSlot(slot: number): string {
    return createHmac('sha256', this.#key).update(`dpop-nonce:${slot}`).digest('base64url')
  }

  /** The nonce to hand out now (the `DPoP-Nonce` header). */
  current(): string {
    return this.#forSlot(Math.floor(this.#nowMs() / this.#slotMs))
  }

  /** Whether `nonce` was issued in the current or the previous slot (constant-time comparison). */
  isValid(nonce: string): boolean {
    const slot = Math.floor(this.#nowMs() / this.#slotMs)
    const given = Buffer.from(nonce)
    let ok = false
    for (const s of [slot, slot - 1]) {
      const expected = Buffer.from(this.#forSlot(s))
      if (expected.length === given.length && timingSafeEqual(expected, given)) ok = true
    }
    return ok
  }
}

/** Options of {@link verifyResourceDpopProof}. */
export interface ResourceDpopOptions {
  algorithms: readonly string[]
  /** Oldest accepted `iat`, in seconds before now. */
  maxAgeSeconds: number
  /** Latest accepted `iat`, in seconds after now. */
  maxSkewSeconds: number
  replay: ReplayCache
  nowMs: number
  /** When given, the proof's `nonce` must be one of these (RFC 9449 §9). */
  nonces?: Pick<ResourceDpopNonces, 'isValid'> | undefined
}

/** A proof that passed {@link checkDpopProof}. */
export interface CheckedDpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's public key. */
  jkt: string
  jti: string
  /** Epoch seconds. */
  iat: number
  payload: Record<string, unknown>
}

/** A JWS in compact serialization: three base64url parts without padding (RFC 7515 §2, §7.1). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/**
 * The checks of RFC 9449 §4.3 that every receiver of a proof makes, shared by the authorization
 * server and the resource helper: one compact JWS (checks 1–2); `typ: dpop+jwt` (4); an allowed
 * asymmetric `alg`, never `none` or HMAC (5); a public `jwk` that verifies the signature (6–7);
 * a `jti`; `htm` equal to the method, case-sensitive (8); `htu` equal to the request URI after
 * normalisation, query and fragment ignored (9); `iat` within `maxAgeSeconds` in the past and
 * `maxSkewSeconds` in the future (11). Nonces, `ath`, key binding and replay are the caller's.
 *
 * @throws {DpopProofError} naming the failed check.
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-4.3
 */
export async function checkDpopProof(
  proof: string,
  request: { method: string; uri: string },
  options: { algorithms: readonly string[]; maxAgeSeconds: number; maxSkewSeconds: number; nowSeconds: number },
): Promise<CheckedDpopProof> {
  const fail = (message: string) => new DpopProofError(message)
  // RFC 7515 §7.1: three base64url parts (§2: no padding); anything else, e.g. two proofs joined
  // with a comma, or a part in padded or standard base64, is not one compact JWS.
  if (!COMPACT_JWS.test(proof)) throw fail('the DPoP proof is not a single compact JWS')
  let alg: string | undefined
  let jwk: JWK | undefined
  try {
    const header = decodeProtectedHeader(proof)
    alg = header.alg
    jwk = header.jwk as JWK | undefined
  } catch {
    throw fail('the DPoP proof is not a compact JWS')
  }
  if (!alg || !options.algorithms.includes(alg)) throw fail('unsupported DPoP proof "alg"')
  if (!jwk || typeof jwk !== 'object') throw fail('the DPoP proof has no "jwk" header')
  if (PRIVATE_JWK_MEMBERS.some((m) => m in jwk)) throw fail('the DPoP proof "jwk" must be a public key')
  let payload: Record<string, unknown>
  try {
    ;({ payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [...options.algorithms] }))
  } catch (err) {
    const e = err as { code?: string; claim?: string }
    if (e.code !== 'ERR_JWT_CLAIM_VALIDATION_FAILED') throw fail('the DPoP proof signature is invalid')
    throw fail(e.claim === 'typ' || e.claim === undefined ? 'the DPoP proof "typ" must be dpop+jwt' : `the DPoP proof "${e.claim}" claim is invalid`)
  }
  const { jti, htm, htu, iat } = payload
  if (typeof jti !== 'string' || jti.length === 0) throw fail('the DPoP proof needs a "jti"')
  if (jti.length > 256) throw fail('the DPoP proof "jti" is longer than 256 characters')
  if (htm !== request.method) throw fail('the DPoP proof "htm" does not match the request method')
  if (typeof htu !== 'string' || normalizeHtu(htu) === undefined || normalizeHtu(htu) !== normalizeHtu(request.uri))
    throw fail('the DPoP proof "htu" does not match the request URI')
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw fail('the DPoP proof needs an "iat"')
  if (iat < options.nowSeconds - options.maxAgeSeconds || iat > options.nowSeconds + options.maxSkewSeconds)
    throw new DpopProofError('the DPoP proof "iat" is outside the acceptance window', 'iat')
  return { jkt: await calculateJwkThumbprint(jwk, 'sha256'), jti, iat, payload }
}

/**
 * Verifies a DPoP proof presented with a DPoP-bound access token (RFC 9449 §7.1 and §4.3 checks
 * 1–12): one compact JWS; `typ: dpop+jwt`; an allowed asymmetric `alg`; a public `jwk` that
 * verifies the signature; `htm` = method; `htu` = request URI (normalised, no query); `iat`
 * within the window; `ath` = hash of the token; the key's thumbprint = the token's `cnf.jkt`;
 * with `options.nonces`, a current server `nonce` (check 10, RFC 9449 §9); `jti` never seen before
 * within the window (remembered only once everything else passed: a proof refused for its nonce
 * does not spend its `jti`).
 *
 * @throws {DpopProofError} naming the failed check; {@link DpopKeyMismatchError} (a subclass) when
 *   the proof is valid but its key is not the token's `cnf.jkt`; {@link DpopNonceError} when the
 *   proof has no current nonce.
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-7.1
 */
export async function verifyResourceDpopProof(
  proof: string,
  request: { method: string; uri: string; accessToken: string; boundJkt: string },
  options: ResourceDpopOptions,
): Promise<{ jkt: string; jti: string }> {
  const { jkt, jti, iat, payload } = await checkDpopProof(proof, request, {
    algorithms: options.algorithms,
    maxAgeSeconds: options.maxAgeSeconds,
    maxSkewSeconds: options.maxSkewSeconds,
    nowSeconds: Math.floor(options.nowMs / 1000),
  })
  const fail = (message: string) => new DpopProofError(message)
  const { ath } = payload
  if (ath !== accessTokenHash(request.accessToken)) throw fail('the DPoP proof "ath" does not match the access token')
  if (jkt !== request.boundJkt) throw new DpopKeyMismatchError('the access token is bound to another key')
  if (options.nonces !== undefined) {
    const { nonce } = payload
    if (typeof nonce !== 'string' || !options.nonces.isValid(nonce)) throw new DpopNonceError('the DPoP proof needs the current server "nonce"')
  }
  const expiresAtMs = (Math.ceil(iat) + options.maxAgeSeconds + options.maxSkewSeconds + 1) * 1000
  if (!options.replay.remember(`${jkt}\0${jti}`, expiresAtMs, options.nowMs)) throw fail('the DPoP proof has been used before')
  return { jkt, jti }
}
