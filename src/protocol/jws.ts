/**
 * Synchronous JWS Compact Serialization (RFC 7515 §7.1) with node:crypto, for the tokens the server
 * signs on every token response (RFC 9068 access tokens, ID Tokens).
 *
 * jose (v6) signs through WebCrypto: each signature is an asynchronous crypto job plus algorithm
 * normalisation and WebIDL conversion, measured at about twice the CPU of the signature itself
 * (bench/README.md, "Tokens: introspection and refresh"). The same OpenSSL signature called
 * synchronously costs only itself. Keys, JWKS and every verification stay with jose; this module
 * only produces the three base64url parts, and the tests verify its output with jose.
 */
import { createPrivateKey, constants, sign, type JsonWebKey, type KeyObject, type SignKeyObjectInput } from 'node:crypto'

/** The JWS algorithms the server signs with (`signing.alg`). */
export type JwsSigningAlg = 'ES256' | 'EdDSA' | 'RS256' | 'PS256'

/** A compact JWS signer bound to one private key: `(header, payload) => "h.p.s"`. */
export type CompactJwsSigner = (header: Readonly<Record<string, unknown>>, payload: Readonly<Record<string, unknown>>) => string

/** Smallest RSA modulus accepted for RS256/PS256 (RFC 7518 §3.3: 2048 bits or larger). */
const MIN_RSA_BITS = 2048

/**
 * How node:crypto signs for each `alg` (RFC 7518 §3.1, RFC 8037 §3.1): the digest and options.
 * ES256 signatures are the raw `R || S` pair (RFC 7518 §3.4), not DER; PS256 uses MGF1 with
 * SHA-256 and a salt as long as the hash (RFC 7518 §3.5); EdDSA hashes nothing (Ed25519).
 */
const ALGORITHMS: Record<JwsSigningAlg, { digest: string | null; keyTypes: readonly string[]; options: Omit<SignKeyObjectInput, 'key'> }> = {
  ES256: { digest: 'sha256', keyTypes: ['ec'], options: { dsaEncoding: 'ieee-p1363' } },
  EdDSA: { digest: null, keyTypes: ['ed25519', 'ed448'], options: {} },
  RS256: { digest: 'sha256', keyTypes: ['rsa'], options: { padding: constants.RSA_PKCS1_PADDING } },
  PS256: { digest: 'sha256', keyTypes: ['rsa'], options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } },
}

/**
 * Makes a signer for `alg` from a private JWK (RFC 7517), imported once.
 *
 * The header must name the same `alg` (checked on each call: a token must never state another
 * algorithm than the one that signed it). Header and payload are serialised with `JSON.stringify`
 * and base64url-encoded without padding (RFC 7515 §2, §7.1).
 *
 * @throws {TypeError} when `alg` is not supported, or the key does not fit it (wrong key type or
 *   curve, RSA modulus under 2048 bits).
 */
export function createCompactJwsSigner(alg: string, privateJwk: Readonly<Record<string, unknown>>): CompactJwsSigner {
  const spec = ALGORITHMS[alg as JwsSigningAlg]
  if (spec === undefined) throw new TypeError(`JWS signing: unsupported alg "${alg}"`)
  const key: KeyObject = createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' })
  if (!spec.keyTypes.includes(key.asymmetricKeyType ?? '')) throw new TypeError(`JWS signing: a ${key.asymmetricKeyType ?? 'non-asymmetric'} key cannot sign ${alg}`)
  if (alg === 'ES256' && key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new TypeError('JWS signing: ES256 needs a P-256 key')
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS)
    throw new TypeError(`JWS signing: ${alg} needs an RSA key of at least ${MIN_RSA_BITS} bits`)
  const options = { key, ...spec.options }
  return (header, payload) => {
    if (header.alg !== alg) throw new TypeError(`JWS signing: header alg "${String(header.alg)}" does not match the key's "${alg}"`)
    const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`
    return `${input}.${sign(spec.digest, Buffer.from(input), options).toString('base64url')}`
  }
}

function base64url(json: string): string {
  return Buffer.from(json).toString('base64url')
}
