/** The one CSRF + Origin + Sec-Fetch-Site check of devicegate's form POSTs (RFC 6749 §10.12). */
import { describe, expect, it } from 'vitest'
import { createPostGuard } from '../src/web/csrf.js'

const isTrustedPost = createPostGuard('https://auth.example.com/some/path')
const TOKEN = 'session-csrf-token'

describe('RFC 6749 §10.12 trusted form POSTs', () => {
  it('accepts the session token with the issuer Origin, or with no Origin (older browsers)', () => {
    expect(isTrustedPost({ origin: 'https://auth.example.com', csrfToken: TOKEN }, TOKEN)).toBe(true)
    expect(isTrustedPost({ origin: 'https://auth.example.com:443', csrfToken: TOKEN }, TOKEN)).toBe(true)
    expect(isTrustedPost({ csrfToken: TOKEN, secFetchSite: 'same-origin' }, TOKEN)).toBe(true)
  })

  it('refuses without a session, without or with another token, or with a repeated field', () => {
    expect(isTrustedPost({ csrfToken: TOKEN }, undefined)).toBe(false)
    expect(isTrustedPost({ csrfToken: undefined }, TOKEN)).toBe(false)
    expect(isTrustedPost({ csrfToken: '' }, TOKEN)).toBe(false)
    expect(isTrustedPost({ csrfToken: 'other-session-token' }, TOKEN)).toBe(false)
    expect(isTrustedPost({ csrfToken: [TOKEN, TOKEN] }, TOKEN)).toBe(false)
  })

  it('refuses a foreign or malformed Origin and Sec-Fetch-Site: cross-site, even with the right token', () => {
    expect(isTrustedPost({ origin: 'https://evil.example', csrfToken: TOKEN }, TOKEN)).toBe(false)
    expect(isTrustedPost({ origin: 'http://auth.example.com', csrfToken: TOKEN }, TOKEN)).toBe(false)
    expect(isTrustedPost({ origin: 'null', csrfToken: TOKEN }, TOKEN)).toBe(false)
    expect(isTrustedPost({ origin: 'https://auth.example.com/path', csrfToken: TOKEN }, TOKEN)).toBe(false)
    expect(isTrustedPost({ secFetchSite: 'cross-site', csrfToken: TOKEN }, TOKEN)).toBe(false)
  })

  it('fails at start-up for an issuer that is not a URL', () => {
    expect(() => createPostGuard('not a url')).toThrow(TypeError)
  })
})
