/**
 * Client directory and client authentication (RFC 6749 §2.3, §3.2.1).
 */
import { createHmac, randomBytes } from 'node:crypto'
import { verify as argon2Verify } from '@node-rs/argon2'
import type { Client, ClientDirectory } from '../core/model.js'
import { OAuthError } from './errors.js'
import type { Params } from './params.js'

/** Builds the in-memory directory of configured clients. */
export function createClientDirectory(clients: readonly Client[]): ClientDirectory {
  const byId = new Map(clients.map((c) => [c.id, c]))
  return { get: (id) => byId.get(id) }
}

const BASIC_CHALLENGE = { 'WWW-Authenticate': 'Basic realm="devicegate", charset="UTF-8"' }

/**
 * Verifies client secrets against their argon2id hashes. Successful verifications are remembered
 * (keyed by an HMAC of the secret under a per-process random key, never the secret itself) so the
 * slow hash runs once per client and secret, not on every token or introspection request.
 */
export class SecretVerifier {
  readonly #key = randomBytes(32)
  readonly #verified = new Map<string, true>()
  static readonly #MAX_ENTRIES = 10_000

  /** @returns true when `secret` matches the client's hash. */
  async verify(client: Client, secret: string): Promise<boolean> {
    if (!client.secretHash) return false
    const cacheKey = `${client.id}\0${client.secretHash}\0${createHmac('sha256', this.#key).update(secret).digest('base64')}`
    if (this.#verified.has(cacheKey)) return true
    let ok = false
    try {
      ok = await argon2Verify(client.secretHash, secret)
    } catch {
      ok = false
    }
    if (ok) {
      if (this.#verified.size >= SecretVerifier.#MAX_ENTRIES) this.#verified.clear()
      this.#verified.set(cacheKey, true)
    }
    return ok
  }
}

/** Decodes one half of HTTP Basic credentials (RFC 6749 §2.3.1: form-urlencoded, then base64). */
function decodeBasicPart(part: string): string {
  return decodeURIComponent(part.replace(/\+/g, ' '))
}

/** What a request presents to identify its client. */
export interface ClientAuthInput {
  /** The raw `Authorization` header. */
  authorization: string | undefined
  params: Params
}

/**
 * Identifies and authenticates the client of a token, device authorization, revocation or
 * introspection request.
 *
 * Public clients identify with `client_id` only (method `none`). Confidential clients must use one
 * of their methods: `client_secret_basic` (Authorization header) or `client_secret_post` (body).
 * Using more than one method is `invalid_request` (RFC 6749 §2.3).
 *
 * @throws {OAuthError} `invalid_client` (401; with `WWW-Authenticate: Basic` when the header was
 *   used) for unknown, disabled or badly authenticated clients; `invalid_request` when no client
 *   is identified or methods are mixed.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 */
export async function authenticateClient(
  input: ClientAuthInput,
  clients: ClientDirectory,
  secrets: SecretVerifier,
): Promise<Client> {
  const { authorization, params } = input
  // Any Basic header is an authentication attempt: one that is malformed (no credentials, extra
  // tokens, not base64, no colon) fails rather than being ignored in favour of `client_id`.
  if (/^Basic(\s|$)/i.test(authorization ?? '')) {
    const fail = (detail: string) => new OAuthError('invalid_client', 'client authentication failed', { headers: BASIC_CHALLENGE, detail })
    let id: string
    let secret: string
    try {
      const credentials = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(authorization!)?.[1]
      if (credentials === undefined) throw new Error('not base64 token68')
      const decoded = Buffer.from(credentials, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon < 0) throw new Error('no colon')
      id = decodeBasicPart(decoded.slice(0, colon))
      secret = decodeBasicPart(decoded.slice(colon + 1))
    } catch {
      throw fail('malformed basic credentials')
    }
    if (params.client_secret !== undefined)
      throw new OAuthError('invalid_request', 'use only one client authentication method')
    if (params.client_id !== undefined && params.client_id !== id)
      throw new OAuthError('invalid_request', '"client_id" does not match the authenticated client')
    const client = clients.get(id)
    if (!client || client.disabled || !client.authMethods.includes('client_secret_basic')) throw fail('unknown, disabled or basic not allowed')
    if (!(await secrets.verify(client, secret))) throw fail('wrong secret')
    return client
  }
  const id = params.client_id
  if (id === undefined) throw new OAuthError('invalid_client', 'client authentication is required', { headers: BASIC_CHALLENGE })
  const client = clients.get(id)
  const fail = (detail: string) => new OAuthError('invalid_client', 'client authentication failed', { detail })
  if (!client || client.disabled) throw fail('unknown or disabled client')
  if (params.client_secret !== undefined) {
    if (!client.authMethods.includes('client_secret_post')) throw fail('client_secret_post not allowed')
    if (!(await secrets.verify(client, params.client_secret))) throw fail('wrong secret')
    return client
  }
  if (client.isConfidential) throw fail('confidential client sent no secret')
  return client
}
