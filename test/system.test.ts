/**
 * The production randomness and identifier primitives (`src/system.ts`).
 */
import { describe, expect, it } from 'vitest'
import { randomToken, recordId, systemRandom } from '../src/system.js'

describe('systemRandom (pooled CSPRNG)', () => {
  it('hands out distinct bytes of the requested length, also across pool refills and above the pool size', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 2_000; i++) seen.add(randomToken(systemRandom, 32)) // 64 KB: many refills
    expect(seen.size).toBe(2_000)
    expect(systemRandom.bytes(10_000)).toHaveLength(10_000)
    const a = systemRandom.bytes(16)
    const copy = Buffer.from(a)
    systemRandom.bytes(4_096) // a refill must not change bytes already handed out
    expect(Buffer.from(a).equals(copy)).toBe(true)
  })
})

describe('recordId', () => {
  it('is 26 characters: 12 hex digits of milliseconds, then 80 random bits in base64url', () => {
    const before = Date.now()
    const id = recordId(systemRandom)
    expect(id).toMatch(/^[0-9a-f]{12}[A-Za-z0-9_-]{14}$/)
    const ms = parseInt(id.slice(0, 12), 16)
    expect(ms).toBeGreaterThanOrEqual(before)
    expect(ms).toBeLessThanOrEqual(Date.now())
  })

  it('sorts by creation time and never repeats', async () => {
    const first = recordId(systemRandom)
    await new Promise((r) => setTimeout(r, 5))
    const later = Array.from({ length: 1_000 }, () => recordId(systemRandom))
    expect(later.every((id) => id > first)).toBe(true)
    expect(new Set(later).size).toBe(1_000)
  })
})

describe('sha256Hex and sha256Base64Url', () => {
  it('give the SHA-256 of the UTF-8 bytes (FIPS 180-4 test vector "abc", and a non-ASCII string)', async () => {
    const { sha256Hex, sha256Base64Url } = await import('../src/system.js')
    const { createHash } = await import('node:crypto')
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(sha256Base64Url('abc')).toBe(Buffer.from('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'hex').toString('base64url'))
    expect(sha256Hex('dgr_é€😀')).toBe(createHash('sha256').update(Buffer.from('dgr_é€😀', 'utf8')).digest('hex'))
  })
})
