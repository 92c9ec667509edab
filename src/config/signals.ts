/**
 * The `signals:` section of the configuration: what leaves the server — the Shared Signals
 * transmitter, global token revocation, signed webhooks — and how the outbox delivers.
 */
import { isIP } from 'node:net'
import { z } from 'zod'
import { isPublicAddress } from '../signals/endpoint-guard.js'

const int = (min: number, max: number) => z.number().int().min(min).max(max)

/**
 * Outbox event types an endpoint may subscribe to: the webhook's `type` (Standard Webhooks:
 * full-stop delimited `<resource>.<what happened>`). The `review.*` types are the access-review
 * events (issue 15 §1), so reviewers can be reminded through a webhook.
 */
export const WEBHOOK_EVENTS = [
  'grant.revoked',
  'anomaly.raised',
  'admin.action',
  'device.retired',
  'token.claims_changed',
  'review.round_opened',
  'review.reminder_due',
  'review.item_decided',
  'review.round_closed',
] as const

export const signalsSchema = z
  .object({
    /** Run the outbox dispatcher (SSF push, webhooks). Default: true. */
    enabled: z.boolean().default(true),
    /**
     * Let SSF push endpoints and webhooks be on loopback, private, link-local (cloud metadata) or
     * other non-public addresses. Off, every endpoint's host must resolve only to public addresses,
     * checked when a stream is created or updated and again at every delivery (server-side request
     * forgery guard, `signals/endpoint-guard.ts`). For development (`--dev` turns it on) and tests
     * with 127.0.0.1 receivers. Default: false.
     */
    allow_private_endpoints: z.boolean().default(false),
    /** Shared Signals transmitter (OpenID SSF 1.0, CAEP 1.0). */
    ssf: z
      .object({
        /** Serve /.well-known/ssf-configuration and stream management. Default: true. */
        enabled: z.boolean().default(true),
        /** Scope a receiver's access token (client_credentials of a confidential client) needs. Default: ssf. */
        scope: z.string().min(1).default('ssf'),
        /** Streams one receiver may create, 1–100. Default: 5. */
        max_streams_per_receiver: int(1, 100).default(5),
        /** Accept http: push endpoints (development and tests only). Default: false (https only). */
        allow_http_push: z.boolean().default(false),
        /** Shortest time between two verification requests of a stream, seconds, 0–86400. Default: 30. */
        min_verification_interval_seconds: int(0, 86_400).default(30),
        /** Longest wait of an RFC 8936 poll without returnImmediately, seconds, 0–60. Default: 15. */
        long_poll_seconds: int(0, 60).default(15),
      })
      .strict()
      .prefault({}),
    /** Global token revocation (draft-parecki-oauth-global-token-revocation) at POST /global-token-revocation. */
    global_revocation: z
      .object({
        /** Default: true. */
        enabled: z.boolean().default(true),
        /** Scope the caller's access token needs. Default: global_token_revocation. */
        scope: z.string().min(1).default('global_token_revocation'),
      })
      .strict()
      .prefault({}),
    /** Signed webhook endpoints (Standard Webhooks). Default: none. */
    webhooks: z
      .array(
        z
          .object({
            /** Stable name, e.g. `siem` (letters, digits, . _ -). */
            id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits and . _ - only, at most 64'),
            /** Where to POST (https; http only with ssf.allow_http_push). */
            url: z.string().url(),
            /** Environment variable holding the `whsec_…` secret (Standard Webhooks). */
            secret_env: z.string().min(1),
            /** Event types to send. Default: grant.revoked, anomaly.raised, admin.action. */
            events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).default(['grant.revoked', 'anomaly.raised', 'admin.action']),
            /** An endpoint failing for longer than this is paused, seconds, 60–2592000. Default: 86400. */
            pause_after_seconds: int(60, 2_592_000).default(86_400),
            /**
             * The operator's own receiver on a private network (an internal SIEM): skip the
             * public-address check for this endpoint only. Default: false.
             */
            allow_private_network: z.boolean().default(false),
          })
          .strict(),
      )
      .default([]),
    /** Delivery tuning of the outbox dispatcher. */
    delivery: z
      .object({
        /** First retry delay, ms, 10–600000. Default: 1000. */
        base_backoff_ms: int(10, 600_000).default(1000),
        /** Longest retry delay, ms, 100–3600000. Default: 300000. */
        max_backoff_ms: int(100, 3_600_000).default(300_000),
        /** How often the outbox is read when nothing woke the dispatcher, ms, 50–60000. Default: 500. */
        poll_interval_ms: int(50, 60_000).default(500),
        /** Timeout of one push, ms, 100–60000. Default: 10000. */
        timeout_ms: int(100, 60_000).default(10_000),
      })
      .strict()
      .prefault({}),
    /** Delivered events and finished deliveries are kept this many days, 1–365. Default: 7. */
    retention_days: int(1, 365).default(7),
  })
  .strict()
  .superRefine((s, ctx) => {
    const ids = new Set<string>()
    for (const [i, w] of s.webhooks.entries()) {
      if (ids.has(w.id)) ctx.addIssue({ code: 'custom', message: `duplicate webhook id "${w.id}"`, path: ['webhooks', i, 'id'] })
      ids.add(w.id)
      if (!w.url.startsWith('https:') && !(w.url.startsWith('http:') && s.ssf.allow_http_push))
        ctx.addIssue({ code: 'custom', message: 'a webhook url must be https (http only with ssf.allow_http_push)', path: ['webhooks', i, 'url'] })
      // A host name is checked at every delivery; an IP literal can be refused now.
      const host = URL.canParse(w.url) ? new URL(w.url).hostname.replace(/^\[|\]$/g, '') : ''
      if (isIP(host) !== 0 && !isPublicAddress(host) && !w.allow_private_network && !s.allow_private_endpoints)
        ctx.addIssue({ code: 'custom', message: 'a webhook url on a loopback, private or link-local address needs allow_private_network: true', path: ['webhooks', i, 'url'] })
    }
    if (s.delivery.max_backoff_ms < s.delivery.base_backoff_ms)
      ctx.addIssue({ code: 'custom', message: 'max_backoff_ms must be at least base_backoff_ms', path: ['delivery', 'max_backoff_ms'] })
  })
  .prefault({})

export type SignalsFile = z.infer<typeof signalsSchema>

/** Resolved signals settings (camelCase, secrets read, frozen). */
export interface SignalsConfig {
  readonly enabled: boolean
  /** Endpoints may be on non-public addresses (see the schema). */
  readonly allowPrivateEndpoints: boolean
  readonly ssf: {
    readonly enabled: boolean
    readonly scope: string
    readonly maxStreamsPerReceiver: number
    readonly allowHttpPush: boolean
    readonly minVerificationIntervalSeconds: number
    readonly longPollSeconds: number
  }
  readonly globalRevocation: { readonly enabled: boolean; readonly scope: string }
  readonly webhooks: readonly {
    readonly id: string
    readonly url: string
    /** The `whsec_…` secret: memory only, never logged. */
    readonly secret: string
    readonly events: readonly (typeof WEBHOOK_EVENTS)[number][]
    readonly pauseAfterSeconds: number
    readonly allowPrivateNetwork: boolean
  }[]
  readonly delivery: { readonly baseBackoffMs: number; readonly maxBackoffMs: number; readonly pollIntervalMs: number; readonly timeoutMs: number }
  readonly retentionDays: number
}

/**
 * Resolves the section, reading webhook secrets from the environment.
 * @throws {Error} naming the field when a secret variable is unset or not `whsec_` + base64.
 */
export function resolveSignalsConfig(file: SignalsFile | undefined, env: Readonly<Record<string, string | undefined>>): SignalsConfig {
  const s = file ?? signalsSchema.parse(undefined)
  const webhooks = s.webhooks.map((w, i) => {
    const secret = env[w.secret_env]
    if (!secret) throw new Error(`signals.webhooks[${i}].secret_env: environment variable ${w.secret_env} is not set`)
    const b64 = secret.startsWith('whsec_') ? secret.slice(6) : ''
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || Buffer.from(b64, 'base64').length < 24)
      throw new Error(`signals.webhooks[${i}].secret_env: ${w.secret_env} must hold "whsec_" followed by at least 24 bytes in base64`)
    return Object.freeze({ id: w.id, url: w.url, secret, events: Object.freeze([...w.events]), pauseAfterSeconds: w.pause_after_seconds, allowPrivateNetwork: w.allow_private_network })
  })
  return Object.freeze({
    enabled: s.enabled,
    allowPrivateEndpoints: s.allow_private_endpoints,
    ssf: Object.freeze({
      enabled: s.ssf.enabled,
      scope: s.ssf.scope,
      maxStreamsPerReceiver: s.ssf.max_streams_per_receiver,
      allowHttpPush: s.ssf.allow_http_push,
      minVerificationIntervalSeconds: s.ssf.min_verification_interval_seconds,
      longPollSeconds: s.ssf.long_poll_seconds,
    }),
    globalRevocation: Object.freeze({ enabled: s.global_revocation.enabled, scope: s.global_revocation.scope }),
    webhooks: Object.freeze(webhooks),
    delivery: Object.freeze({
      baseBackoffMs: s.delivery.base_backoff_ms,
      maxBackoffMs: s.delivery.max_backoff_ms,
      pollIntervalMs: s.delivery.poll_interval_ms,
      timeoutMs: s.delivery.timeout_ms,
    }),
    retentionDays: s.retention_days,
  })
}
