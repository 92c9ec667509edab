/**
 * Test support: DPoP keys and proofs (RFC 9449 §4.2), including deliberately broken ones.
 */
import { createHash, randomUUID } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'

/** A DPoP key pair with its public JWK and RFC 7638 thumbprint. */
export interface DpopKey {
  alg: string
  privateKey: CryptoKey
  publicKey: CryptoKey
  jwk: JWK
  privateJwk: JWK
  jkt: string
}

/** Generates a DPoP key (ES256 unless told). */
export async function dpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = await exportJWK(publicKey)
  return { alg, privateKey, publicKey, jwk, privateJwk: await exportJWK(privateKey), jkt: await calculateJwkThumbprint(jwk, 'sha256') }
}

/** base64url SHA-256 of an access token, the `ath` claim (RFC 9449 §4.2). */
export const ath = (token: string) => createHash('sha256').update(token).digest('base64url')

export interface ProofOptions {
  htu: string
  htm?: string
  /** Seconds relative to `now` (e.g. -600), or an absolute `iat`. */
  iatOffset?: number
  now?: number
  jti?: string
  nonce?: string
  ath?: string
  typ?: string | null
  /** Sign with another algorithm, `none` (unsigned) or `HS256` (symmetric). */
  alg?: string
  /** Header `jwk` to embed instead of the key's public JWK (null: omit it). */
  jwk?: JWK | null
  /** Claims to remove from the payload. */
  omit?: string[]
  /** Corrupts the signature. */
  badSignature?: boolean
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** Makes a DPoP proof JWT; every field can be broken on purpose. */
export async function makeProof(key: DpopKey, opts: ProofOptions): Promise<string> {
  const now = opts.now ?? Math.floor(Date.now() / 1000)
  const payload: Record<string, unknown> = {
    jti: opts.jti ?? randomUUID(),
    htm: opts.htm ?? 'POST',
    htu: opts.htu,
    iat: now + (opts.iatOffset ?? 0),
    ...(opts.nonce !== undefined ? { nonce: opts.nonce } : {}),
    ...(opts.ath !== undefined ? { ath: opts.ath } : {}),
  }
  for (const claim of opts.omit ?? []) delete payload[claim]
  const header: Record<string, unknown> = { alg: opts.alg ?? key.alg }
  if (opts.typ !== null) header.typ = opts.typ ?? 'dpop+jwt'
  if (opts.jwk !== null) header.jwk = opts.jwk ?? key.jwk
  let jws: string
  if (header.alg === 'none') {
    jws = `${b64(header)}.${b64(payload)}.`
  } else if (header.alg === 'HS256') {
    jws = await new SignJWT(payload).setProtectedHeader(header as never).sign(new TextEncoder().encode('x'.repeat(32)))
  } else {
    jws = await new SignJWT(payload).setProtectedHeader(header as never).sign(key.privateKey)
  }
  if (opts.badSignature) {
    const [h, p, s] = jws.split('.') as [string, string, string]
    const sig = Buffer.from(s, 'base64url')
    sig[5] = sig[5]! ^ 0xff
    jws = `${h}.${p}.${sig.toString('base64url')}`
  }
  return jws
}
