import type { EventSink } from '../core/events.js'
import type { ClientDirectory, UserDirectory } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import type { PolicyService } from '../policy/service.js'
import type { Store } from '../storage/store.js'
import type { SecretVerifier } from './clients.js'
import type { DpopNonces } from './dpop-nonce.js'
import type { KeyRing } from './keys.js'

/** Dependencies shared by the protocol handlers; built once by the composition root. */
export interface ProtocolDeps {
  /** Receives domain events (audit log, anomaly detectors, metrics); absent = dropped. */
  events?: EventSink
  /** Issuer URL without trailing slash. */
  issuer: string
  store: Store
  clock: Clock
  random: Random
  clients: ClientDirectory
  /** Users as they are now (disabled and deleted accounts applied): approvers may stop being allowed. */
  users: Pick<UserDirectory, 'get'>
  secrets: SecretVerifier
  keys: KeyRing
  /** Conditional approval (`policy/`); absent: no policy checks at the token endpoint. */
  policy?: PolicyService
  /** Set when DPoP proofs must carry a server nonce (RFC 9449 §8, `dpop.require_nonce`). */
  dpopNonces?: DpopNonces
}

/** What every protocol request carries besides its parameters. */
export interface RequestContext {
  /** The caller's address, derived once by the HTTP layer. */
  clientIp: string
  userAgent: string | undefined
  /**
   * The raw `Authorization` field (client authentication): its value, or every value when the
   * request repeated it (read from node's `rawHeaders`: `headers.authorization` keeps only the
   * first line); `authenticateClient` (clients.ts) refuses a repeated field.
   */
  authorization: string | string[] | undefined
}
