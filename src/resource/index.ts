/**
 * `devicegate/resource`: a helper for APIs that accept devicegate access tokens — and only live,
 * correctly bound ones. Works with any RFC 9068 / RFC 9449 authorization server; the revocation
 * feed mode needs devicegate's `GET /revocations`.
 */
export { createResourceServer, type RequestLike, type ResourceServer, type ResourceServerOptions, type RevocationOptions, type VerifiedAccess } from './verifier.js'
export { ResourceAuthError, formatChallenge, type ResourceErrorCode } from './errors.js'
export { ReplayCache, ResourceDpopNonces, accessTokenHash, normalizeHtu, DEFAULT_DPOP_ALGS } from './dpop.js'
export { RevocationFeed, IntrospectionClient, RevocationUnavailableError, type ClientCredentials } from './revocation.js'
export { SsfRevocations, type SsfRevocationOptions } from './ssf.js'
export { devicegateResource, requireAccess, sendResourceError, type DevicegateResourceOptions } from './fastify.js'
export { authorize, writeResourceError } from './node.js'
