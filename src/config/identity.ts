/**
 * The identity sections of the configuration: `identity_providers` (upstream OpenID
 * Connect sign-in for approvers) and `identity` (local passwords, SCIM 2.0 provisioning, Shared
 * Signals receiver). Their own module so the main schema only references them.
 */
import { z } from 'zod'

const positive = (min: number, max: number) => z.number().int().min(min).max(max)
const httpUrl = z.string().url().refine((v) => /^https?:\/\//.test(v), 'an http(s) URL')

/** Default `amr` values (RFC 8176 §2) that count as a second factor. */
export const DEFAULT_MFA_AMR = ['mfa', 'otp', 'hwk', 'swk', 'fido', 'sc', 'face', 'fpt', 'iris', 'retina', 'vbm'] as const

/** One upstream OpenID Connect provider approvers sign in with (OpenID Connect Core 1.0 §3.1). */
export const identityProviderSchema = z
  .object({
    /** Short identifier used in URLs (`/device/upstream/<id>/start`): letters, digits, - and _. */
    id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, - and _ (at most 64)'),
    /** Shown as "Sign in with <name>". Default: the id. */
    name: z.string().min(1).max(100).optional(),
    /** Issuer identifier; its discovery document (`/.well-known/openid-configuration`) is fetched at start. */
    issuer: httpUrl,
    client_id: z.string().min(1),
    /** Environment variable holding the client secret (`client_secret_basic`). Absent: a public client (PKCE only). */
    client_secret_env: z.string().min(1).optional(),
    /** Scopes requested. Default: openid profile email. `openid` is always added. */
    scopes: z.array(z.string().min(1)).default(['openid', 'profile', 'email']),
    /** Which ID Token claims carry what. */
    claims: z
      .object({
        /** Default: preferred_username (falls back to email, then sub). */
        username: z.string().default('preferred_username'),
        /** Default: name. */
        display_name: z.string().default('name'),
        /** Default: email. */
        email: z.string().default('email'),
        /** An array of group names. Default: groups. */
        groups: z.string().default('groups'),
        /** Authentication Methods References (RFC 8176). Default: amr. */
        amr: z.string().default('amr'),
        /** Authentication Context Class Reference. Default: acr. */
        acr: z.string().default('acr'),
        /**
         * A claim naming the person's manager (the manager's user name, email, SCIM externalId or
         * devicegate person id), for access reviews with `reviewers: manager`; a sign-in without
         * it leaves the stored manager as it is. Default: none (SCIM or the configuration sets it).
         */
        manager: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /** Only people whose (verified) email is in one of these domains may sign in. Default: any. */
    allowed_email_domains: z.array(z.string().min(1).toLowerCase()).default([]),
    /** When the policy asks for a second factor (step-up). */
    mfa: z
      .object({
        /** `amr` values that count as a second factor. Default: mfa otp hwk swk fido sc face fpt iris retina vbm. */
        amr: z.array(z.string().min(1)).default([...DEFAULT_MFA_AMR]),
        /** `acr` values that count as a second factor. Default: none. */
        acr: z.array(z.string().min(1)).default([]),
        /** `acr_values` sent when asking for a second factor (e.g. Okta's `urn:okta:loa:2fa:any`). Default: none (then `prompt=login max_age=0`). */
        request_acr_values: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /**
     * How a person seen for the first time with this provider joins a person provisioned by SCIM:
     * the provisioned `attribute` must equal the ID Token's `claim`. Default: no join (a new person).
     */
    join: z
      .object({
        attribute: z.enum(['externalId', 'userName', 'email']),
        claim: z.string().min(1),
      })
      .strict()
      .optional(),
    /** Longest wait for the provider (discovery, token endpoint), in seconds, 1–60. Default: 10. */
    timeout_seconds: positive(1, 60).default(10),
  })
  .strict()

/** One Shared Signals transmitter (OpenID Shared Signals Framework 1.0). */
export const transmitterSchema = z
  .object({
    /** The transmitter's `iss`. */
    issuer: z.string().min(1),
    /** Where its signing keys are (JWKS, RFC 7517). */
    jwks_uri: httpUrl,
    /** The `aud` its SETs carry for us. Default: the devicegate issuer. */
    audience: z.string().min(1).optional(),
    /** Event type URIs accepted; others are acknowledged, audited and ignored. Default: every one devicegate handles. */
    events: z.array(z.string().min(1)).optional(),
    /** RFC 8935 push to `/ssf/push`, or RFC 8936 poll of `endpoint`. Default: push. */
    delivery: z
      .discriminatedUnion('method', [
        z
          .object({
            method: z.literal('push'),
            /** Environment variable holding the exact `Authorization` header value the transmitter must send to /ssf/push (RFC 8935 §2.3 `authentication_failed` otherwise). Default: none required (the SET's signature authenticates it). */
            authorization_env: z.string().min(1).optional(),
          })
          .strict(),
        z
          .object({
            method: z.literal('poll'),
            /** The transmitter's poll endpoint (RFC 8936 §2). */
            endpoint: httpUrl,
            /** Environment variable holding the `Authorization` header value for the poll endpoint. */
            authorization_env: z.string().min(1).optional(),
            /** Seconds between polls, 5–3600. Default: 30. */
            every_seconds: positive(5, 3600).default(30),
            /** SETs asked for per poll (`maxEvents`), 1–1000. Default: 100. */
            max_events: positive(1, 1000).default(100),
          })
          .strict(),
      ])
      .default({ method: 'push' }),
    /** Risk (0–100) set for each reported level (CAEP risk-level-change, assurance-level-change). Default: low 10, medium 50, high 90. */
    risk_levels: z
      .object({ low: positive(0, 100).default(10), medium: positive(0, 100).default(50), high: positive(0, 100).default(90) })
      .strict()
      .prefault({}),
    /** Revoke the person's grants when their risk reaches this value (0–100). Default: never. */
    revoke_at_risk: positive(0, 100).optional(),
  })
  .strict()

export const identitySchema = z
  .object({
    /** Built-in (configured) users may sign in with a password. Switch off once everyone signs in upstream. Default: true. */
    local_passwords: z.boolean().default(true),
    /** How long an upstream sign-in may take (authorization request to callback), in seconds, 60–3600. Default: 600. */
    upstream_login_ttl_seconds: positive(60, 3600).default(600),
    /** SCIM 2.0 server at /scim/v2 (RFC 7644). */
    scim: z
      .object({
        /** Default: false. */
        enabled: z.boolean().default(false),
        /** Scope a confidential client's access token must carry. Default: scim. */
        scope: z.string().min(1).default('scim'),
      })
      .strict()
      .prefault({}),
    /** Shared Signals receiver (RFC 8935 push at /ssf/push, RFC 8936 poll). */
    shared_signals: z
      .object({
        transmitters: z.array(transmitterSchema).default([]),
        /** Oldest acceptable SET `iat`, in seconds, 60–604800. Default: 86400. */
        max_age_seconds: positive(60, 604_800).default(86_400),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({})

export type IdentityProviderFile = z.infer<typeof identityProviderSchema>
export type TransmitterFile = z.infer<typeof transmitterSchema>
export type IdentityFile = z.infer<typeof identitySchema>

/** A resolved upstream provider (secrets read from the environment). */
export interface IdentityProviderConfig {
  readonly id: string
  readonly name: string
  readonly issuer: string
  readonly clientId: string
  /** Absent: a public client. Never logged. */
  readonly clientSecret?: string
  readonly scopes: readonly string[]
  readonly claims: Readonly<IdentityProviderFile['claims']>
  readonly allowedEmailDomains: readonly string[]
  readonly mfa: { readonly amr: readonly string[]; readonly acr: readonly string[]; readonly requestAcrValues?: string }
  readonly join?: { readonly attribute: 'externalId' | 'userName' | 'email'; readonly claim: string }
  readonly timeoutSeconds: number
}

/** A resolved transmitter. */
export interface TransmitterConfig {
  readonly issuer: string
  readonly jwksUri: string
  readonly audience: string
  readonly events?: readonly string[]
  readonly delivery:
    | { readonly method: 'push'; readonly authorization?: string }
    | { readonly method: 'poll'; readonly endpoint: string; readonly authorization?: string; readonly everySeconds: number; readonly maxEvents: number }
  readonly riskLevels: { readonly low: number; readonly medium: number; readonly high: number }
  readonly revokeAtRisk?: number
}

export interface IdentityConfig {
  readonly localPasswords: boolean
  readonly upstreamLoginTtlSeconds: number
  readonly providers: readonly IdentityProviderConfig[]
  readonly scim: { readonly enabled: boolean; readonly scope: string }
  readonly sharedSignals: { readonly transmitters: readonly TransmitterConfig[]; readonly maxAgeSeconds: number }
}

/**
 * Resolves the identity sections.
 * @param readEnv Reads a named environment variable; throws when it is unset (the loader's `secretFromEnv`).
 */
export function resolveIdentityConfig(
  file: IdentityFile,
  providers: IdentityProviderFile[],
  issuer: string,
  readEnv: (name: string, path: string) => string,
): IdentityConfig {
  return Object.freeze({
    localPasswords: file.local_passwords,
    upstreamLoginTtlSeconds: file.upstream_login_ttl_seconds,
    providers: Object.freeze(
      providers.map((p, i) =>
        Object.freeze({
          id: p.id,
          name: p.name ?? p.id,
          issuer: p.issuer,
          clientId: p.client_id,
          ...(p.client_secret_env ? { clientSecret: readEnv(p.client_secret_env, `identity_providers[${i}].client_secret_env`) } : {}),
          scopes: Object.freeze([...new Set(['openid', ...p.scopes])]),
          claims: Object.freeze({ ...p.claims }),
          allowedEmailDomains: Object.freeze(p.allowed_email_domains.map((d) => d.replace(/^@/, ''))),
          mfa: Object.freeze({ amr: p.mfa.amr, acr: p.mfa.acr, ...(p.mfa.request_acr_values ? { requestAcrValues: p.mfa.request_acr_values } : {}) }),
          ...(p.join ? { join: Object.freeze({ ...p.join }) } : {}),
          timeoutSeconds: p.timeout_seconds,
        }),
      ),
    ),
    scim: Object.freeze({ enabled: file.scim.enabled, scope: file.scim.scope }),
    sharedSignals: Object.freeze({
      maxAgeSeconds: file.shared_signals.max_age_seconds,
      transmitters: Object.freeze(
        file.shared_signals.transmitters.map((t, i) =>
          Object.freeze({
            issuer: t.issuer,
            jwksUri: t.jwks_uri,
            audience: t.audience ?? issuer,
            ...(t.events ? { events: Object.freeze([...t.events]) } : {}),
            delivery:
              t.delivery.method === 'push'
                ? {
                    method: 'push' as const,
                    ...(t.delivery.authorization_env
                      ? { authorization: readEnv(t.delivery.authorization_env, `identity.shared_signals.transmitters[${i}].delivery.authorization_env`) }
                      : {}),
                  }
                : {
                    method: 'poll' as const,
                    endpoint: t.delivery.endpoint,
                    ...(t.delivery.authorization_env
                      ? { authorization: readEnv(t.delivery.authorization_env, `identity.shared_signals.transmitters[${i}].delivery.authorization_env`) }
                      : {}),
                    everySeconds: t.delivery.every_seconds,
                    maxEvents: t.delivery.max_events,
                  },
            riskLevels: Object.freeze({ ...t.risk_levels }),
            ...(t.revoke_at_risk !== undefined ? { revokeAtRisk: t.revoke_at_risk } : {}),
          }),
        ),
      ),
    }),
  })
}
