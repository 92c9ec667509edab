import type { FastifyBaseLogger } from 'fastify'
import type { EventSink } from '../core/events.js'
import type { ClientDirectory, UserDirectory } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import type { PolicyService } from '../policy/service.js'
import type { Store } from '../storage/store.js'

export type { ClientDirectory, UserDirectory }

/** What the verification pages (RFC 8628 §3.3) need; built by the composition root. */
export interface VerificationDeps {
  /** Receives domain events (audit log, anomaly detectors, metrics); absent = dropped. */
  events?: EventSink
  store: Store
  /** Origin of the issuer URL (`https://auth.example.com`); browsers' `Origin` must equal it. */
  issuerOrigin: string
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
  /** Conditional approval (issue 3); absent: every signed-in user may approve. */
  policy?: PolicyService
  /** Issuer name shown in authenticator apps for TOTP enrolment. Default: devicegate. */
  totpIssuerLabel?: string
  logger: FastifyBaseLogger
}
