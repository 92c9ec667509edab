import type { FastifyBaseLogger } from 'fastify'
import type { Client, User } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import type { Store } from '../storage/store.js'

/** Read access to registered clients, cached in memory. */
export interface ClientDirectory {
  get(clientId: string): Client | undefined
}

/** Read access to the built-in user store. */
export interface UserDirectory {
  get(username: string): User | undefined
  /**
   * Checks a password against the user's argon2id hash. Runs a dummy verification for unknown
   * users so the response time does not reveal which usernames exist.
   * @returns the user when the password is right and the account is enabled.
   */
  authenticate(username: string, password: string): Promise<User | undefined>
}

/** What the verification pages (RFC 8628 §3.3) need; built by the composition root. */
export interface VerificationDeps {
  store: Store
  clock: Clock
  random: Random
  clients: ClientDirectory
  users: UserDirectory
  /** Plain-language descriptions of scopes shown on the review page. */
  scopeDescriptions: Readonly<Record<string, string>>
  /** Failed code entries allowed per source in one window (RFC 8628 §5.1). Default: 5. */
  codeEntryMaxFailures: number
  /** Length of the code-entry rate-limit window in seconds. Default: 600. */
  codeEntryWindowSeconds: number
  /** Sign-in sessions last this long, in seconds. Default: 3600. */
  sessionTtlSeconds: number
  logger: FastifyBaseLogger
}
