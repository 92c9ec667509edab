/**
 * DPoP proof verification (RFC 9449 §4.3) at the authorization server, with `jose`.
 */
import type { Clock } from '../core/ports.js'
import type { Store } from '../storage/store.js'
import { sha256Hex } from '../system.js'
import type { DpopNonces } from './dpop-nonce.js'
import { OAuthError } from './errors.js'
import { checkDpopProof, DpopProofError, normalizeHtu, type CheckedDpopProof } from '../resource/dpop.js'

/** Asymmetric algorithms accepted in DPoP proofs (RFC 9449 §4.3 check 5; never `none` or HMAC). */
export const DPOP_ALGS = ['ES256', 'EdDSA', 'RS256', 'PS256'] as const

/** How old a proof's `iat` may be, in seconds (RFC 9449 §11.1). */
export const DPOP_MAX_AGE_SECONDS = 60
/** How far in the future a proof's `iat` may be (clock skew), in seconds. */
export const DPOP_MAX_SKEW_SECONDS = 5


/** A verified proof. */
export interface VerifiedDpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's public key (`cnf.jkt`). */
  jkt: string
  jti: string
  iat: number
}

// One htu normalisation (RFC 9449 §4.3 check 9) for the server and the resource helper; the helper
// is a standalone library, so the server borrows it rather than the other way round.
export { normalizeHtu }

const fail = (description: string) => new OAuthError('invalid_dpop_proof', description)

/**
 * Verifies the `DPoP` header of a request, RFC 9449 §4.3 checks 1–11 and the §11.1 replay rule:
 * one header; a JWS with `typ: dpop+jwt`, an allowed asymmetric `alg` and a public `jwk` that
 * verifies it; `htm` equal to the method (case-sensitive); `htu` equal to the request URI after
 * normalisation; `iat` within 60 s in the past and 5 s in the future; `jti` never seen before
 * for this key (remembered through the Store, so the rule holds across instances). When the
 * server requires nonces (`deps.dpopNonces`), a proof without a current `nonce` gets
 * `use_dpop_nonce` with a fresh `DPoP-Nonce` header (RFC 9449 §8). The replay check runs last,
 * so a rejected proof does not burn its `jti`.
 *
 * @param header The `DPoP` header value(s) as received.
 * @param method The request method, e.g. `POST`.
 * @param requestUri The absolute URI of the request under the issuer (no query).
 * @throws {OAuthError} `invalid_dpop_proof` naming the failed check (with a `Date` header of the
 *   server's time when the check was `iat`); `use_dpop_nonce`.
 * @see https://www.rfc-editor.org/rfc/rfc9449#section-4.3
 */
export async function verifyDpopProof(
  header: string | string[],
  method: string,
  requestUri: string,
  deps: { store: Store; clock: Clock; dpopNonces?: DpopNonces | undefined },
): Promise<VerifiedDpopProof> {
  if (Array.isArray(header)) {
    if (header.length !== 1) throw fail('exactly one DPoP header is allowed')
    header = header[0]!
  }
  let checked: CheckedDpopProof
  try {
    checked = await checkDpopProof(header, { method, uri: requestUri }, {
      algorithms: DPOP_ALGS,
      maxAgeSeconds: DPOP_MAX_AGE_SECONDS,
      maxSkewSeconds: DPOP_MAX_SKEW_SECONDS,
      nowSeconds: deps.clock.nowSeconds(),
    })
  } catch (err) {
    // On an `iat` refusal the answer states the server's time (RFC 9110 §6.6.1 `Date`, from the
    // clock that judged the proof), so a client whose clock is off can correct it and retry once.
    if (err instanceof DpopProofError && err.check === 'iat')
      throw new OAuthError('invalid_dpop_proof', err.message, { headers: { Date: new Date(deps.clock.nowSeconds() * 1000).toUTCString() } })
    if (err instanceof DpopProofError) throw fail(err.message)
    throw err
  }
  const { jkt, jti, iat } = checked
  const { nonce } = checked.payload
  if (deps.dpopNonces && (typeof nonce !== 'string' || !deps.dpopNonces.isValid(nonce)))
    throw new OAuthError('use_dpop_nonce', 'the DPoP proof needs the current server "nonce"', {
      headers: { 'DPoP-Nonce': deps.dpopNonces.current() },
    })
  const fresh = await deps.store.rememberDpopJti(
    sha256Hex(`${jkt}\0${jti}`),
    Math.ceil(iat) + DPOP_MAX_AGE_SECONDS + DPOP_MAX_SKEW_SECONDS,
    deps.clock.nowSeconds(),
  )
  if (!fresh) throw fail('the DPoP proof has been used before')
  return { jkt, jti, iat }
}
