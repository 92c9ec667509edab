import type { FastifyBaseLogger } from 'fastify'
import type { ClientDirectory, UserDirectory } from '../core/model.js'
import type { Clock } from '../core/ports.js'
import type { VerificationServiceDeps } from '../verification/service.js'
import type { IdentityPageOptions } from './pages/kit.js'

export type { ClientDirectory, UserDirectory }

/**
 * What the verification pages (RFC 8628 §3.3) need; built by the composition root. The service's
 * dependencies (store, directories, limits, policy…), plus what only the pages use.
 */
export interface VerificationDeps extends Omit<VerificationServiceDeps, 'logger'> {
  /** Origin of the issuer URL (`https://auth.example.com`); browsers' `Origin` must equal it. */
  issuerOrigin: string
  clock: Clock
  /** Plain-language descriptions of scopes shown on the review page. */
  scopeDescriptions: Readonly<Record<string, string>>
  /**
   * IANA time zone the pages show clock times in, always with the offset stated (the pages have no
   * JavaScript, so the browser's zone is unknown). Default: UTC.
   */
  timeZone?: string | undefined
  logger: FastifyBaseLogger
  /** Upstream sign-in, step-up and local passwords (`src/identity/`); absent: local passwords only. */
  identity?: IdentityPageOptions
}
