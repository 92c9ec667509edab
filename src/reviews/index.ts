/**
 * The reviews domain: access-review campaigns of device-issued grants and the compliance report
 * with live evidence. {@link startReviews} builds it for the server (scheduler included);
 * {@link createReviewService} alone serves tools (CLI report) and tests.
 */
import type { Config } from '../config/load.js'
import { NO_EVENTS, type EventSink } from '../core/events.js'
import type { ClientDirectory, User } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import { RevocationService } from '../governance/revocation.js'
import type { Store } from '../storage/store.js'
import { ReviewService } from './campaigns.js'

export { ReviewError, ReviewService, type ItemFacts, type ReviewItemView, type TickResult } from './campaigns.js'
export { createComplianceReport, renderComplianceHtml } from './report.js'

/** What the reviews domain needs; built by the composition root. */
export interface ReviewsDeps {
  config: Config
  store: Store
  clock: Clock
  random: Random
  clients: ClientDirectory
  users: { get(username: string): User | undefined }
  /**
   * Ids of the active people in a group (configured, upstream or SCIM), for `reviewers: group`:
   * the people directory's `membersOf`. Absent: the configured users with that group.
   */
  groupMembers?: (group: string) => string[]
  /** Central revocation (absent: one without events, for tools that never revoke). */
  revocation?: RevocationService
  events?: EventSink
}

/**
 * Builds the review service. Reviewers are people ids: `reviewers: manager` takes the person's
 * resolved `manager` from `users` (the people directory resolves it whatever its source:
 * configuration, SCIM enterprise `manager.value`, or a mapped upstream claim), `reviewers: group`
 * the members `groupMembers` gives.
 */
export function createReviewService(deps: ReviewsDeps): ReviewService {
  const events = deps.events ?? NO_EVENTS
  return new ReviewService({
    store: deps.store,
    grants: deps.store,
    clients: deps.clients,
    users: deps.users,
    groupMembers: deps.groupMembers ?? ((group) => deps.config.users.filter((u) => !u.disabled && (u.groups ?? []).includes(group)).map((u) => u.username)),
    revocation: deps.revocation ?? new RevocationService(deps.store, deps.clock, events),
    events,
    clock: deps.clock,
    random: deps.random,
    config: deps.config.reviews,
  })
}

/**
 * Starts the reviews domain for a server: the service and its scheduler, run every
 * `reviews.check_every_seconds` (deadlines, reminders, next rounds); `close` stops it.
 */
export function startReviews(deps: ReviewsDeps & { onError: (err: unknown) => void }): { service: ReviewService; close(): void } {
  const service = createReviewService(deps)
  const run = () => {
    service.tick().catch(deps.onError)
  }
  const timer = setInterval(run, deps.config.reviews.checkEverySeconds * 1000)
  timer.unref()
  return { service, close: () => clearInterval(timer) }
}
