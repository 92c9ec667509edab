/**
 * Client directory and client authentication (RFC 6749 §2.3, §3.2.1).
 */
import { randomBytes } from 'node:crypto'
import { hash as argon2Hash, verify as argon2Verify, type Algorithm } from '@node-rs/argon2'
import type { Client, ClientDirectory } from '../core/model.js'
import { sha256Base64Url } from '../system.js'
import { OAuthError } from './errors.js'
import type { Params } from './params.js'

/** Builds the in-memory directory of configured clients. */
export function createClientDirectory(clients: readonly Client[]): ClientDirectory {
  const byId = new Map(clients.map((c) => [c.id, c]))
  return { get: (id) => byId.get(id) }
}

const BASIC_CHALLENGE = { 'WWW-Authenticate': 'Basic realm="devicegate", charset="UTF-8"' }

/** argon2 cost parameters as `@node-rs/argon2` takes them. */
interface Argon2Cost {
  algorithm: Algorithm
  memoryCost: number
  timeCost: number
  parallelism: number
}

/** argon2id, 19 MiB, 2 passes, 1 lane: the library defaults, which `devicegate hash-secret` uses. */
const DEFAULT_COST: Argon2Cost = { algorithm: 2 as Algorithm, memoryCost: 19_456, timeCost: 2, parallelism: 1 }

/**
 * Reads the cost parameters of an argon2 PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`, RFC 9106);
 * the defaults when absent or unreadable.
 */
export function argon2CostOf(phc: string | undefined): Argon2Cost {
  const m = /^\$argon2(id|i|d)\$(?:v=\d+\$)?m=(\d+),t=(\d+),p=(\d+)\$/.exec(phc ?? '')
  if (!m) return DEFAULT_COST
  // `Algorithm` is an ambient const enum (Argon2d = 0, Argon2i = 1, Argon2id = 2).
  const algorithm = ({ d: 0, i: 1, id: 2 } as const)[m[1] as 'd' | 'i' | 'id'] as Algorithm
  return { algorithm, memoryCost: Number(m[2]), timeCost: Number(m[3]), parallelism: Number(m[4]) }
}

/**
 * Verifies client secrets against their argon2id hashes. Successful verifications are remembered
 * per (client, secret) so the slow hash runs once per client and secret, not on every token or
 * introspection request. Entries are keyed by the SHA-256 of a per-process random key followed by
 * the secret (never the secret itself), each listing the clients it was verified for with the hash
 * it was verified against: two clients sharing one secret keep an entry each instead of evicting
 * each other (the list is as long as the clients configured with that secret, usually one, so a
 * hit costs what it did with one client per secret), and a wrong secret has another digest, so it
 * never hits. The key has a fixed length (32 bytes, as 64 hex digits), so key and secret cannot
 * run into each other; the digest never leaves the process. (A plain one-shot hash instead of an
 * HMAC or a Hash object: a fraction of the cost, which was a few percent of an introspection
 * request.) At most 10,000 digests; then all are dropped.
 *
 * A presented secret always costs one argon2 verification when it fails: for an unknown or
 * disabled client, or one not allowed the method, it is checked against a dummy hash made with the
 * cost parameters of the configured clients' hashes, so an unknown `client_id` answers as slowly
 * as a wrong secret and the response time does not reveal which clients exist.
 */
export class SecretVerifier {
  /** 32 random bytes as 64 hex digits: a fixed length, so key and secret cannot run into each other. */
  readonly #key = randomBytes(32).toString('hex')
  /** Digest of a verified secret → the clients (and hashes) it was verified for. */
  readonly #verified = new Map<string, VerifiedSecret>()
  readonly #dummyHash: Promise<string>
  static readonly #MAX_ENTRIES = 10_000

  /**
   * @param referenceHash A configured client's argon2 PHC string, whose cost parameters the dummy
   *   hash copies. Default: argon2id, m=19456, t=2, p=1.
   */
  constructor(referenceHash?: string) {
    // Made once, up front, so the first unknown client costs one verification like any other.
    this.#dummyHash = argon2Hash(randomBytes(16).toString('base64url'), argon2CostOf(referenceHash))
    this.#dummyHash.catch(() => undefined)
  }

  /**
   * @param client The client the request names, or undefined when it is unknown, disabled or
   *   may not use the method (the secret is then checked against the dummy hash and refused).
   * @returns true when `secret` matches the client's hash.
   */
  async verify(client: Client | undefined, secret: string): Promise<boolean> {
    if (!client?.secretHash) {
      await verifySafely(await this.#dummyHash, secret)
      return false
    }
    const digest = sha256Base64Url(this.#key + secret)
    // The hash too: a client whose configured hash changed verifies afresh.
    for (let v = this.#verified.get(digest); v !== undefined; v = v.next) if (v.clientId === client.id && v.secretHash === client.secretHash) return true
    const ok = await verifySafely(client.secretHash, secret)
    if (ok) {
      if (this.#verified.size >= SecretVerifier.#MAX_ENTRIES) this.#verified.clear()
      // This client in front, before the other clients that share the secret (its own stale entry, for an old hash, dropped).
      let others: VerifiedSecret | undefined
      for (let v = this.#verified.get(digest); v !== undefined; v = v.next) if (v.clientId !== client.id) others = { clientId: v.clientId, secretHash: v.secretHash, next: others }
      this.#verified.set(digest, { clientId: client.id, secretHash: client.secretHash, next: others })
    }
    return ok
  }
}

/** A client a secret was verified for, with the hash it was verified against; `next`: another client with the same secret. */
interface VerifiedSecret {
  readonly clientId: string
  readonly secretHash: string
  readonly next: VerifiedSecret | undefined
}

/** argon2 verification that treats a malformed hash as a mismatch (it must never authenticate). */
async function verifySafely(phc: string, secret: string): Promise<boolean> {
  try {
    return await argon2Verify(phc, secret)
  } catch {
    return false
  }
}

/** Decodes one half of HTTP Basic credentials (RFC 6749 §2.3.1: form-urlencoded, then base64). */
function decodeBasicPart(part: string): string {
  // Most ids and secrets hold neither `%` nor `+`: nothing to decode.
  if (!part.includes('%') && !part.includes('+')) return part
  return decodeURIComponent(part.replace(/\+/g, ' '))
}

/** What a request presents to identify its client. */
export interface ClientAuthInput {
  /** The raw `Authorization` field: its value, or every value when the request repeated it (refused). */
  authorization: string | string[] | undefined
  params: Params
}

/** A `Basic` `Authorization` field, well-formed or not: an HTTP Basic authentication attempt (RFC 6749 §2.3.1). */
const BASIC_SCHEME = /^Basic(\s|$)/i

/**
 * The client id and secret of a `Basic` field (RFC 6749 §2.3.1: each form-urlencoded, then
 * joined by a colon and base64-encoded, RFC 7617 §2), or undefined when it is malformed (no
 * credentials, extra tokens, not base64, no colon, a bad percent-encoding).
 */
function decodeBasicCredentials(authorization: string): { id: string; secret: string } | undefined {
  const credentials = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(authorization)?.[1]
  if (credentials === undefined) return undefined
  const decoded = Buffer.from(credentials, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  try {
    return { id: decodeBasicPart(decoded.slice(0, colon)), secret: decodeBasicPart(decoded.slice(colon + 1)) }
  } catch {
    return undefined
  }
}

/**
 * Checks the form of a request's client authentication, without judging any credential: one
 * method at most (RFC 6749 §2.3: "MUST NOT use more than one authentication method in each
 * request"), one `Authorization` field (RFC 9110 §5.3: not a list field), and a body `client_id`
 * naming the client of the `Basic` credentials. Cheap and synchronous (no secret is verified, no
 * client looked up), so an endpoint runs it before anything costlier or with side effects — at the
 * token and device authorization endpoints, before the DPoP proof is judged (RFC 9449 §4.3), so a
 * request that is malformed in both ways gets RFC 6749 §5.2's `invalid_request` and the proof's
 * `jti` is not spent. {@link authenticateClient} runs it first too.
 *
 * The methods counted: HTTP Basic (any `Basic` field, RFC 6749 §2.3.1), `client_secret` in the
 * body (§2.3.1), and a client assertion (`client_assertion` or `client_assertion_type`, RFC 7521
 * §4.2). devicegate verifies no client assertion, but one sent beside another method is still a
 * second method: refusing the request is the safer reading than authenticating by one credential
 * and ignoring the other.
 *
 * @throws {OAuthError} `invalid_request` (400) when the `Authorization` field is repeated, more
 *   than one method is used, or the body `client_id` differs from the `Basic` one.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3
 * @see https://www.rfc-editor.org/rfc/rfc7521#section-4.2
 */
export function checkClientAuthenticationForm(input: ClientAuthInput): void {
  const { authorization, params } = input
  // Two credentials (node would keep only the first line): judged on neither, whatever the order.
  if (Array.isArray(authorization)) throw new OAuthError('invalid_request', 'the Authorization header must be sent once')
  const basic = authorization !== undefined && BASIC_SCHEME.test(authorization)
  const assertion = params.client_assertion !== undefined || params.client_assertion_type !== undefined
  if ((basic ? 1 : 0) + (params.client_secret !== undefined ? 1 : 0) + (assertion ? 1 : 0) > 1)
    throw new OAuthError('invalid_request', 'use only one client authentication method')
  if (basic && params.client_id !== undefined) {
    const credentials = decodeBasicCredentials(authorization)
    // Malformed credentials are judged by authenticateClient (invalid_client).
    if (credentials !== undefined && credentials.id !== params.client_id)
      throw new OAuthError('invalid_request', '"client_id" does not match the authenticated client')
  }
}

/**
 * Identifies and authenticates the client of a token, device authorization, revocation or
 * introspection request.
 *
 * Public clients identify with `client_id` only (method `none`). Confidential clients must use one
 * of their methods: `client_secret_basic` (Authorization header) or `client_secret_post` (body).
 * The form is checked first ({@link checkClientAuthenticationForm}): more than one method is
 * `invalid_request` (RFC 6749 §2.3), and so is a repeated `Authorization` field, whatever its
 * values (two credentials, or Basic and Bearer): RFC 6749 §2.3 allows one method per request and
 * `Authorization` is not a list field (RFC 9110 §5.3).
 *
 * @throws {OAuthError} `invalid_client` (401; with `WWW-Authenticate: Basic` when the header was
 *   used) for unknown, disabled or badly authenticated clients; `invalid_request` when no client
 *   is identified, methods are mixed or the `Authorization` field is repeated.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-5.3
 */
export async function authenticateClient(
  input: ClientAuthInput,
  clients: ClientDirectory,
  secrets: SecretVerifier,
): Promise<Client> {
  checkClientAuthenticationForm(input)
  const { params } = input
  const authorization = input.authorization as string | undefined
  // Any Basic header is an authentication attempt: one that is malformed (no credentials, extra
  // tokens, not base64, no colon) fails rather than being ignored in favour of `client_id`.
  if (authorization !== undefined && BASIC_SCHEME.test(authorization)) {
    const credentials = decodeBasicCredentials(authorization)
    if (credentials === undefined) throw new OAuthError('invalid_client', 'client authentication failed', { headers: BASIC_CHALLENGE, detail: 'malformed basic credentials' })
    const { id, secret } = credentials
    const found = clients.get(id)
    const client = found && !found.disabled && found.authMethods.includes('client_secret_basic') ? found : undefined
    // Verified (against a dummy hash when there is no such client) before refusing: same cost.
    if (!(await secrets.verify(client, secret)))
      throw new OAuthError('invalid_client', 'client authentication failed', { headers: BASIC_CHALLENGE, detail: client ? 'wrong secret' : 'unknown, disabled or basic not allowed' })
    return client!
  }
  const id = params.client_id
  if (id === undefined) throw new OAuthError('invalid_client', 'client authentication is required', { headers: BASIC_CHALLENGE })
  const found = clients.get(id)
  const fail = (detail: string) => new OAuthError('invalid_client', 'client authentication failed', { detail })
  if (params.client_secret !== undefined) {
    const client = found && !found.disabled && found.authMethods.includes('client_secret_post') ? found : undefined
    if (!(await secrets.verify(client, params.client_secret)))
      throw fail(client ? 'wrong secret' : 'unknown, disabled or client_secret_post not allowed')
    return client!
  }
  // No secret presented: nothing slow runs for known and unknown clients alike.
  const client = found && !found.disabled ? found : undefined
  if (!client) throw fail('unknown or disabled client')
  if (client.isConfidential) throw fail('confidential client sent no secret')
  return client
}
