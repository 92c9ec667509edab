/**
 * The verified-secret cache of client authentication (RFC 6749 §2.3.1) keeps one entry per
 * (client, secret): two clients configured with the same secret, authenticating in turn, each pay
 * one argon2 verification, once — they do not evict each other so that every request pays a full
 * argon2 check. A wrong secret never hits the cache. argon2 verifications are counted by wrapping
 * `@node-rs/argon2`'s `verify`.
 */
import { describe, expect, it, vi } from 'vitest'

const argon2 = vi.hoisted(() => ({ verifications: 0 }))
vi.mock('@node-rs/argon2', async (importOriginal) => {
  const original = await importOriginal<typeof import('@node-rs/argon2')>()
  return {
    ...original,
    verify: async (...args: Parameters<typeof original.verify>) => {
      argon2.verifications++
      return original.verify(...args)
    },
  }
})

const { hash } = await import('@node-rs/argon2')
const { SecretVerifier } = await import('../src/protocol/clients.js')

const client = (id: string, secretHash: string) => ({ id, secretHash }) as never

describe('verified-secret cache: one entry per (client, secret) (RFC 6749 §2.3.1)', () => {
  it('two clients sharing one secret, alternating, cost one argon2 verification each in all', async () => {
    const shared = 'shared-secret-0123456789'
    const [ha, hb] = await Promise.all([hash(shared), hash(shared)])
    const v = new SecretVerifier(ha)
    argon2.verifications = 0
    for (let i = 0; i < 5; i++) {
      expect(await v.verify(client('a', ha), shared)).toBe(true)
      expect(await v.verify(client('b', hb), shared)).toBe(true)
    }
    expect(argon2.verifications).toBe(2)
  })

  it('a client whose configured hash changed verifies afresh, and the other client sharing the secret keeps its entry', async () => {
    const shared = 'shared-secret-9876543210'
    const [ha, hb, ha2] = await Promise.all([hash(shared), hash(shared), hash(shared)])
    const v = new SecretVerifier(ha)
    expect(await v.verify(client('a', ha), shared)).toBe(true)
    expect(await v.verify(client('b', hb), shared)).toBe(true)
    argon2.verifications = 0
    // a re-hashed (same secret, new hash): verified once more, then cached again.
    expect(await v.verify(client('a', ha2), shared)).toBe(true)
    expect(await v.verify(client('a', ha2), shared)).toBe(true)
    expect(argon2.verifications).toBe(1)
    // b still hits; a's old hash no longer does.
    expect(await v.verify(client('b', hb), shared)).toBe(true)
    expect(argon2.verifications).toBe(1)
    expect(await v.verify(client('a', ha), shared)).toBe(true) // the old hash still matches the secret: verified in full
    expect(argon2.verifications).toBe(2)
  })

  it('a wrong secret never hits the cache: each one costs a verification and is refused', async () => {
    const [ha, hb] = await Promise.all([hash('secret-of-a-0123456789'), hash('secret-of-b-0123456789')])
    const v = new SecretVerifier(ha)
    expect(await v.verify(client('a', ha), 'secret-of-a-0123456789')).toBe(true)
    expect(await v.verify(client('b', hb), 'secret-of-b-0123456789')).toBe(true)
    argon2.verifications = 0
    // a's secret presented by b, b's by a, and a near miss: all refused, all verified in full.
    expect(await v.verify(client('b', hb), 'secret-of-a-0123456789')).toBe(false)
    expect(await v.verify(client('a', ha), 'secret-of-b-0123456789')).toBe(false)
    expect(await v.verify(client('a', ha), 'secret-of-a-012345678')).toBe(false)
    expect(argon2.verifications).toBe(3)
    // The right secrets still hit.
    expect(await v.verify(client('a', ha), 'secret-of-a-0123456789')).toBe(true)
    expect(await v.verify(client('b', hb), 'secret-of-b-0123456789')).toBe(true)
    expect(argon2.verifications).toBe(3)
  })
})
