/**
 * Type-level tests of the public SDK surface (`devicegate/client`): what callers can rely on,
 * and what the compiler must refuse. Checked by `tsc` (typecheck) and run by vitest.
 */
import { describe, expect, expectTypeOf, it } from 'vitest'
import {
  ClientError,
  DeviceClient,
  MemoryTokenStore,
  OAuthResponseError,
  openTokenStore,
  pollForToken,
  startDeviceAuthorization,
  type AuthorizationServerMetadata,
  type ClientErrorCode,
  type DeviceAuthorization,
  type OAuthErrorName,
  type PollProgress,
  type SessionInfo,
  type TokenSet,
  type TokenStore,
  type TokenStoreKind,
} from '../src/client/index.js'

describe('public SDK types', () => {
  it('OAuthResponseError carries error, error_description and status', () => {
    expectTypeOf<OAuthResponseError['error']>().toEqualTypeOf<OAuthErrorName>()
    expectTypeOf<OAuthResponseError['error_description']>().toEqualTypeOf<string | undefined>()
    expectTypeOf<OAuthResponseError['status']>().toEqualTypeOf<number>()
    // known codes complete, and any server's code is accepted
    expectTypeOf<'slow_down'>().toExtend<OAuthErrorName>()
    expectTypeOf<'some_vendor_error'>().toExtend<OAuthErrorName>()
    expectTypeOf<OAuthResponseError>().toExtend<Error>()
  })

  it('ClientError has a closed set of codes', () => {
    expectTypeOf<ClientError['code']>().toEqualTypeOf<ClientErrorCode>()
    expectTypeOf<'ERR_LOGIN_REQUIRED'>().toExtend<ClientErrorCode>()
    // @ts-expect-error not a ClientErrorCode
    const bad: ClientErrorCode = 'ERR_SOMETHING_ELSE'
    void bad
  })

  it('device flow functions take and return the documented shapes', () => {
    expectTypeOf(startDeviceAuthorization).returns.resolves.toEqualTypeOf<DeviceAuthorization>()
    expectTypeOf(pollForToken).returns.resolves.toEqualTypeOf<TokenSet>()
    expectTypeOf<DeviceAuthorization['intervalSeconds']>().toEqualTypeOf<number>()
    expectTypeOf<DeviceAuthorization['verificationUriComplete']>().toEqualTypeOf<string | undefined>()
    expectTypeOf<PollProgress>().toEqualTypeOf<{ secondsLeft: number; intervalSeconds: number; polls: number }>()
    expectTypeOf<AuthorizationServerMetadata['device_authorization_endpoint']>().toEqualTypeOf<string>()
    expectTypeOf<AuthorizationServerMetadata['revocation_endpoint']>().toEqualTypeOf<string | undefined>()
  })

  it('stores are pluggable through TokenStore', () => {
    expectTypeOf<MemoryTokenStore>().toExtend<TokenStore>()
    expectTypeOf(openTokenStore).parameter(0).toEqualTypeOf<import('../src/client/index.js').OpenTokenStoreOptions | undefined>()
    expectTypeOf<TokenStoreKind>().toEqualTypeOf<'auto' | 'keyring' | 'file' | 'memory'>()
    const custom: TokenStore = { kind: 'vault', location: 'vault://x', get: async () => undefined, set: async () => {}, delete: async () => {} }
    void new DeviceClient({ issuer: 'https://as.example', clientId: 'cli', store: custom })
    // @ts-expect-error a store must be able to delete
    const incomplete: TokenStore = { kind: 'x', location: 'y', get: async () => undefined, set: async () => {} }
    void incomplete
  })

  it('DeviceClient never hands out token values through session()', () => {
    expectTypeOf<DeviceClient['session']>().returns.resolves.toEqualTypeOf<SessionInfo | undefined>()
    expectTypeOf<SessionInfo>().not.toHaveProperty('accessToken')
    expectTypeOf<SessionInfo>().not.toHaveProperty('refreshToken')
    expectTypeOf<DeviceClient['getAccessToken']>().returns.resolves.toEqualTypeOf<{ accessToken: string; tokenType: string; expiresAt?: number }>()
    // @ts-expect-error dpop mode is auto | required | off
    void new DeviceClient({ issuer: 'https://as.example', clientId: 'cli', store: new MemoryTokenStore(), dpop: true })
  })
})

describe('SDK boundary', () => {
  it('src/client imports no server code (only protocol/errors.ts types)', async () => {
    const { readdirSync, readFileSync } = await import('node:fs')
    const dir = new URL('../src/client/', import.meta.url)
    const offenders: string[] = []
    for (const file of readdirSync(dir)) {
      const text = readFileSync(new URL(file, dir), 'utf8')
      for (const m of text.matchAll(/^\s*import\s+(type\s+)?[^'"]*from\s+'(\.\.\/[^']+)'/gm))
        if (!(m[1] && m[2] === '../protocol/errors.js')) offenders.push(`${file}: ${m[0].trim()}`)
    }
    expect(offenders).toEqual([])
  })
})
