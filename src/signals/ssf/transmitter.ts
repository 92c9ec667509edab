/**
 * The Shared Signals transmitter as a destination of the outbox dispatcher: renders each outbox
 * event as a signed SET for each stream that takes it, and pushes SETs to push streams (RFC 8935).
 * Poll streams (RFC 8936) keep their SETs pending until the receiver acknowledges them
 * (`StreamService.poll`).
 */
import type { Clock } from '../../core/ports.js'
import type { KeyRing } from '../../protocol/keys.js'
import type { DestinationHandler, PushOutcome } from '../dispatcher.js'
import type { DestinationRecord, SignalOutboxStore, StreamSubjectRecord } from '../../storage/store.js'
import { failureOf, postToEndpoint, type EndpointPolicy, type EndpointResponse } from '../endpoint-guard.js'
import { openStreamSecret, type SecretSealer } from '../secrets.js'
import { caepEventOf, signSet, subIdOf, subjectMatches, subjectsOf } from './events.js'
import { audienceOf, eventsDelivered, pushTarget, setJti } from './streams.js'

/** What the transmitter needs. */
export interface TransmitterDeps {
  issuer: string
  keys: KeyRing
  clock: Clock
  store: SignalOutboxStore
  /** The e-mail address of a user, when known (SSF `email` subjects). */
  emailOf(username: string): string | undefined
  /** Timeout of one push, in ms. */
  pushTimeoutMs: number
  /** Opens the streams' sealed `authorization_header`s (the key encryption of signing keys). */
  secrets: SecretSealer
  /** Which push endpoints may be reached (checked again at every delivery). */
  endpointPolicy: EndpointPolicy
}

/**
 * Reads an RFC 8935 §2.3 error body (`{ err, description }`) for the log; never echoes more than
 * 200 characters of what a receiver sent.
 */
function errorOf(res: EndpointResponse): string {
  try {
    const body = JSON.parse(res.body) as { err?: unknown; description?: unknown }
    if (typeof body.err === 'string') return `${body.err}${typeof body.description === 'string' ? `: ${body.description}` : ''}`.slice(0, 200)
  } catch {
    // not JSON
  }
  return `HTTP ${res.status}`
}

/**
 * Pushes one SET (RFC 8935 §2): `POST` with `Content-Type: application/secevent+jwt`,
 * `Accept: application/json` and the receiver's `authorization_header`, through the
 * delivery-time address check of `endpoint-guard.ts`. 202 (any 2xx) is success; 400 is the
 * receiver refusing this SET (§2.3), recorded and not retried; anything else (401/403, 429, 5xx,
 * network, an address refused) is retried with backoff, since the receiver may recover.
 */
export async function pushSet(url: string, authorization: string | null, set: string, timeoutMs: number, policy: EndpointPolicy): Promise<PushOutcome> {
  try {
    const res = await postToEndpoint(
      url,
      { headers: { 'content-type': 'application/secevent+jwt', accept: 'application/json', ...(authorization ? { authorization } : {}) }, body: set, timeoutMs },
      policy,
    )
    if (res.status >= 200 && res.status < 300) return { ok: true }
    const error = errorOf(res)
    return res.status === 400 ? { ok: false, permanent: true, error } : { ok: false, permanent: false, error }
  } catch (err) {
    return { ok: false, permanent: false, error: failureOf(err) }
  }
}

/** The Shared Signals destination handler; see the module comment. */
export function ssfStreamHandler(deps: TransmitterDeps): DestinationHandler {
  // The subjects a receiver removed, read once per fan-out batch: the dispatcher passes the same
  // destination record for every event of a batch (and a fresh one for the next batch).
  const removedOf = new WeakMap<DestinationRecord, Promise<StreamSubjectRecord[]>>()
  const removed = (stream: DestinationRecord) => {
    let list = removedOf.get(stream)
    if (list === undefined) {
      list = deps.store.listStreamSubjects(stream.id).then((all) => all.filter((s) => !s.included))
      list.catch(() => removedOf.delete(stream))
      removedOf.set(stream, list)
    }
    return list
  }
  return {
    kind: 'ssf_stream',
    async render(stream, event) {
      const caep = caepEventOf(event)
      if (caep === null) return null
      const verification = event.type === 'ssf.verification'
      if (!verification && !eventsDelivered(stream).includes(caep.type)) return null
      const subjects = subjectsOf(event, deps.issuer, deps.emailOf)
      if (!verification) {
        // default_subjects ALL: every subject, except those the receiver removed.
        if ((await removed(stream)).some((s) => subjectMatches(s.subject, subjects))) return null
      }
      const jti = setJti(event.id, stream.id)
      const payload = await signSet(
        {
          issuer: deps.issuer,
          audience: audienceOf(stream),
          jti,
          iat: deps.clock.nowSeconds(),
          txn: event.id,
          subId: verification ? { format: 'opaque', id: stream.id } : subIdOf(subjects),
          eventType: caep.type,
          body: caep.body,
        },
        await deps.keys.activeKey(),
      )
      return { jti, payload }
    },
    isPush: (stream) => pushTarget(stream) !== null,
    async push(stream, delivery) {
      const target = pushTarget(stream)
      if (target === null) return { ok: false, permanent: false, error: 'not a push stream' }
      let authorization: string | null = null
      if (target.sealedAuthorization !== null) {
        try {
          authorization = await openStreamSecret(deps.secrets, stream.id, target.sealedAuthorization)
        } catch {
          // Sealed under a key-encryption key not configured here (or tampered): never pushed without it.
          return { ok: false, permanent: false, error: 'the authorization_header does not open with the configured key-encryption keys' }
        }
      }
      return pushSet(target.url, authorization, delivery.payload, deps.pushTimeoutMs, deps.endpointPolicy)
    },
  }
}
