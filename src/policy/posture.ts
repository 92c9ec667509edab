/**
 * Device posture assertions: a JWT signed by the device-management system (MDM) with claims
 * about the requesting device, sent as the `device_posture` parameter of the Device Authorization
 * Request (a devicegate extension of RFC 8628 §3.1). Verified with jose against a configured key.
 *
 * Claims read: `sub` (device id), `managed` (boolean), `disk_encrypted` (boolean),
 * `os_patch_age_days` (non-negative integer). `iss`, `aud`, `exp` and `iat` are checked; an
 * assertion older than `maxAgeSeconds` is refused.
 */
import { readFile } from 'node:fs/promises'
import { createLocalJWKSet, importSPKI, jwtVerify, errors as joseErrors, type JSONWebKeySet, type JWTVerifyGetKey, type CryptoKey } from 'jose'
import type { PostureFacts } from './model.js'

/** Verifies posture assertions. */
export interface PostureVerifier {
  /** Never throws: an unusable assertion yields `{ status: 'invalid', error }`. */
  verify(jwt: string, now: number): Promise<PostureFacts>
}

/** Configuration of {@link createPostureVerifier}. */
export interface PostureVerifierOptions {
  /** JWKS (JSON) or an SPKI public key (PEM). */
  keyText: string
  /** Required `iss`. */
  issuer: string
  /** Required `aud`. Default: the devicegate issuer. */
  audience: string
  /** Oldest acceptable `iat`, in seconds. Default: 86400. */
  maxAgeSeconds: number
  /** Algorithms accepted. Default: ES256, EdDSA, RS256, PS256. */
  algorithms?: string[]
}

/** Longest assertion accepted, in characters (bounds parsing work). */
const MAX_POSTURE_LENGTH = 8192

/**
 * Builds a verifier from a key.
 * @throws {TypeError} when the key text is neither a JWKS nor an SPKI PEM.
 */
export async function createPostureVerifier(opts: PostureVerifierOptions): Promise<PostureVerifier> {
  const algorithms = opts.algorithms ?? ['ES256', 'EdDSA', 'RS256', 'PS256']
  let key: JWTVerifyGetKey | CryptoKey
  const text = opts.keyText.trim()
  if (text.startsWith('{')) {
    key = createLocalJWKSet(JSON.parse(text) as JSONWebKeySet)
  } else if (text.includes('BEGIN PUBLIC KEY')) {
    const alg = algorithms[0] ?? 'ES256'
    key = await importSPKI(text, alg)
  } else throw new TypeError('device posture key: expected a JWKS (JSON) or a PEM public key')
  return {
    async verify(jwt, now) {
      if (jwt.length > MAX_POSTURE_LENGTH) return { status: 'invalid', error: 'too_long' }
      try {
        const options = {
          issuer: opts.issuer,
          audience: opts.audience,
          algorithms,
          currentDate: new Date(now * 1000),
          maxTokenAge: opts.maxAgeSeconds,
          requiredClaims: ['iat', 'exp'],
        }
        const { payload } =
          typeof key === 'function' ? await jwtVerify(jwt, key, options) : await jwtVerify(jwt, key, options)
        const facts: PostureFacts = { status: 'valid' }
        if (typeof payload.sub === 'string') facts.deviceId = payload.sub.slice(0, 200)
        if (typeof payload.managed === 'boolean') facts.managed = payload.managed
        if (typeof payload.disk_encrypted === 'boolean') facts.diskEncrypted = payload.disk_encrypted
        const age = payload.os_patch_age_days
        if (typeof age === 'number' && Number.isInteger(age) && age >= 0) facts.osPatchAgeDays = age
        return facts
      } catch (err) {
        return { status: 'invalid', error: postureErrorCode(err) }
      }
    },
  }
}

function postureErrorCode(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'expired'
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim_${err.claim}`
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature'
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'unknown_key'
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm'
  return 'malformed'
}

/** Reads the key file named in the configuration. */
export async function loadPostureVerifier(opts: Omit<PostureVerifierOptions, 'keyText'> & { keyFile: string }): Promise<PostureVerifier> {
  return createPostureVerifier({ ...opts, keyText: await readFile(opts.keyFile, 'utf8') })
}
