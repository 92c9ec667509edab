/**
 * The synchronous JWS signer of the server's tokens (`src/protocol/jws.ts`): its output must verify
 * with jose for every configurable `signing.alg` (RFC 7515 §7.1, RFC 7518 §3, RFC 8037 §3.1).
 */
import { generateKeyPairSync } from 'node:crypto'
import { compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { createCompactJwsSigner } from '../src/protocol/jws.js'

describe('createCompactJwsSigner', () => {
  for (const alg of ['ES256', 'EdDSA', 'RS256', 'PS256'] as const) {
    it(`signs ${alg} JWTs that jose verifies with the public key (RFC 7515 §7.1)`, async () => {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
      const sign = createCompactJwsSigner(alg, (await exportJWK(privateKey)) as Record<string, unknown>)
      const now = Math.floor(Date.now() / 1000)
      const token = sign({ alg, kid: 'k1', typ: 'at+jwt' }, { iss: 'https://as.example', sub: 'ada', scope: 'read', cnf: { jkt: 'x' }, iat: now, exp: now + 60 })
      const { payload, protectedHeader } = await jwtVerify(token, publicKey, { issuer: 'https://as.example', typ: 'at+jwt' })
      expect(protectedHeader).toEqual({ alg, kid: 'k1', typ: 'at+jwt' })
      expect(payload).toEqual({ iss: 'https://as.example', sub: 'ada', scope: 'read', cnf: { jkt: 'x' }, iat: now, exp: now + 60 })
      expect(token).not.toContain('=') // base64url without padding (RFC 7515 §2)
    })
  }

  it('writes ES256 signatures as the 64-byte R || S pair, not DER (RFC 7518 §3.4)', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const token = createCompactJwsSigner('ES256', (await exportJWK(privateKey)) as Record<string, unknown>)({ alg: 'ES256' }, { a: 1 })
    expect(Buffer.from(token.split('.')[2]!, 'base64url')).toHaveLength(64)
    await expect(compactVerify(token, publicKey)).resolves.toBeDefined()
  })

  it('refuses a header that names another alg than the key signs with', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const sign = createCompactJwsSigner('ES256', (await exportJWK(privateKey)) as Record<string, unknown>)
    expect(() => sign({ alg: 'none' }, { a: 1 })).toThrow(TypeError)
    expect(() => sign({ alg: 'RS256' }, { a: 1 })).toThrow(TypeError)
    expect(decodeProtectedHeader(sign({ alg: 'ES256' }, { a: 1 })).alg).toBe('ES256')
  })

  it('refuses keys that do not fit the alg: another key type, another curve, RSA under 2048 bits, unknown alg', async () => {
    const ec = (await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey)) as Record<string, unknown>
    const p384 = (await exportJWK((await generateKeyPair('ES384', { extractable: true })).privateKey)) as Record<string, unknown>
    const smallRsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'jwk' }) as Record<string, unknown>
    expect(() => createCompactJwsSigner('RS256', ec)).toThrow(/cannot sign RS256/)
    expect(() => createCompactJwsSigner('EdDSA', ec)).toThrow(/cannot sign EdDSA/)
    expect(() => createCompactJwsSigner('ES256', p384)).toThrow(/P-256/)
    expect(() => createCompactJwsSigner('PS256', smallRsa)).toThrow(/2048/)
    expect(() => createCompactJwsSigner('HS256', ec)).toThrow(/unsupported alg/)
  })
})
