/**
 * A public device-flow client as the verification service sees it (`core/model.ts` `Client`), for
 * tests that build the service without a configuration file.
 */
import type { Client } from '../../src/core/model.js'

/** Public client `id` for the device grant with the `read` scope; `extra` overrides any field. */
export function publicDeviceClient(id = 'cli', extra: Partial<Client> = {}): Client {
  return {
    id,
    name: id === 'cli' ? 'CLI' : `App ${id}`,
    isConfidential: false,
    authMethods: ['none'],
    grantTypes: ['urn:ietf:params:oauth:grant-type:device_code'],
    scopes: ['read'],
    defaultScopes: ['read'],
    accessTokenFormat: 'jwt',
    accessTokenTtlSeconds: 600,
    refreshTokenTtlSeconds: 86_400,
    deviceCodeTtlSeconds: 600,
    pollIntervalSeconds: 5,
    canIntrospect: false,
    disabled: false,
    ...extra,
  }
}
