/**
 * Authorization Server Metadata (RFC 8414 §2) with the device endpoint (RFC 8628 §4) and DPoP
 * algorithms (RFC 9449 §5.1).
 */
import { DECLARABLE_STORAGE_CLASSES } from '../core/storage-class.js'
import { VERIFICATION_PATH } from './device-authorization.js'

/** Endpoint paths, relative to the issuer. */
export const ENDPOINTS = {
  metadata: '/.well-known/oauth-authorization-server',
  deviceAuthorization: '/device_authorization',
  token: '/token',
  revocation: '/revoke',
  introspection: '/introspect',
  jwks: '/jwks',
  verification: VERIFICATION_PATH,
} as const

/** Builds the metadata document once; it is static for the life of the process. */
export function buildMetadata(opts: {
  issuer: string
  grantTypes: readonly string[]
  scopes: readonly string[]
  signingAlg: string
  dpopAlgs: readonly string[]
}): Record<string, unknown> {
  const { issuer } = opts
  const clientAuth = ['client_secret_basic', 'client_secret_post', 'none']
  return {
    issuer,
    device_authorization_endpoint: issuer + ENDPOINTS.deviceAuthorization,
    token_endpoint: issuer + ENDPOINTS.token,
    revocation_endpoint: issuer + ENDPOINTS.revocation,
    introspection_endpoint: issuer + ENDPOINTS.introspection,
    jwks_uri: issuer + ENDPOINTS.jwks,
    grant_types_supported: [...opts.grantTypes],
    response_types_supported: [],
    scopes_supported: [...opts.scopes],
    token_endpoint_auth_methods_supported: clientAuth,
    revocation_endpoint_auth_methods_supported: clientAuth,
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    dpop_signing_alg_values_supported: [...opts.dpopAlgs],
    access_token_signing_alg_values_supported: [opts.signingAlg],
    // devicegate extension: the `storage_class` values a client may declare at the
    // device authorization and refresh requests. Clients send the parameter only to servers
    // that list it here.
    storage_classes_supported: [...DECLARABLE_STORAGE_CLASSES],
  }
}
