/**
 * `devicegate/resource`: a helper for APIs that accept devicegate access tokens — and only live,
 * correctly bound ones. Works with any RFC 9068 / RFC 9449 authorization server; the revocation
 * feed mode needs devicegate's `GET /revocations`.
 */
export { createResourceServer } from './verifier.js';
export { ResourceAuthError, formatChallenge } from './errors.js';
export { ReplayCache, accessTokenHash, normalizeHtu, DEFAULT_DPOP_ALGS } from './dpop.js';
export { RevocationFeed, IntrospectionClient, RevocationUnavailableError } from './revocation.js';
export { devicegateResource, requireAccess, sendResourceError } from './fastify.js';
export { authorize, writeResourceError } from './node.js';
