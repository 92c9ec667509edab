/**
 * The configuration schema: one zod schema yields the typed, frozen {@link Config}.
 *
 * The file is YAML with snake_case keys (see `examples/devicegate.yaml` and the README's
 * configuration reference). Every option documents its default and unit.
 */
import { z } from 'zod'
import { consoleSchema } from './console.js'
import { governanceSchema } from './governance.js'
import { reviewsSchema } from './reviews.js'
import { identityProviderSchema, identitySchema } from './identity.js'
import { signalsSchema } from './signals.js'
import { GRANT_TYPES } from '../core/model.js'
import { RISK_TIERS } from '../policy/schema.js'

const seconds = (min: number, max: number) =>
  z.number().int().min(min).max(max)

const grantTypeSchema = z.enum([
  GRANT_TYPES.deviceCode,
  GRANT_TYPES.refreshToken,
  GRANT_TYPES.clientCredentials,
])

const scopeToken = z
  .string()
  .regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'a scope token is printable ASCII without space, " or \\ (RFC 6749 §3.3)')

/** An RFC 8707 §2 resource indicator: an absolute URI without a fragment. */
export const resourceUri = z.string().refine((v) => {
  try {
    return !v.includes('#') && !/\s/.test(v) && new URL(v).protocol.length > 1
  } catch {
    return false
  }
}, 'a resource is an absolute URI without fragment (RFC 8707 §2)')

/** One registered client (RFC 6749 §2). */
export const clientSchema = z
  .object({
    /** Public identifier (RFC 6749 §2.2). */
    client_id: z.string().min(1).max(200).regex(/^[\x21-\x7E]+$/, 'printable ASCII without spaces'),
    /** Name shown to approvers. Default: the client_id. */
    name: z.string().min(1).max(200).optional(),
    /** `public` (no secret, e.g. a CLI) or `confidential`. Default: public. */
    type: z.enum(['public', 'confidential']).default('public'),
    /** argon2id PHC hash of the secret (`devicegate hash-secret` prints one). */
    client_secret_hash: z.string().startsWith('$argon2').optional(),
    /** Name of an environment variable holding the secret; hashed at start-up, never stored. */
    client_secret_env: z.string().optional(),
    /** Client authentication methods (RFC 8414 §2). Default: none for public, client_secret_basic + client_secret_post for confidential. */
    token_endpoint_auth_methods: z.array(z.enum(['client_secret_basic', 'client_secret_post'])).optional(),
    /** Grant types this client may use. Default: device_code + refresh_token. */
    grant_types: z.array(grantTypeSchema).min(1).default([GRANT_TYPES.deviceCode, GRANT_TYPES.refreshToken]),
    /** Scopes the client may request. */
    scopes: z.array(scopeToken).default([]),
    /** Scopes granted when a request names none. Default: all of `scopes` except offline_access. */
    default_scopes: z.array(scopeToken).optional(),
    /** RFC 9068 JWT or opaque handle. Default: jwt. */
    access_token_format: z.enum(['jwt', 'opaque']).default('jwt'),
    /** Access-token lifetime in seconds, 60–86400. Default: 600. */
    access_token_ttl_seconds: seconds(60, 86_400).default(600),
    /** Refresh-token family lifetime in seconds, 300–31536000. Default: 2592000 (30 days). */
    refresh_token_ttl_seconds: seconds(300, 31_536_000).default(2_592_000),
    /**
     * When redeeming a device code issues a refresh token (the client also needs the refresh_token
     * grant): `offline_access` only when the granted scope includes offline_access; `always` on
     * every redemption. Default: offline_access.
     */
    refresh_token_issuance: z.enum(['offline_access', 'always']).default('offline_access'),
    /**
     * Rotation leeway (cf. Okta's grace period, Auth0's reuse interval) in seconds, 0–60: a refresh
     * token presented again within this time of its rotation, by the same client with the same
     * DPoP key — sender-constrained: a DPoP-bound request or a confidential client — is a retry of
     * a lost response and gets fresh tokens (the unused first answer is revoked) instead of tripping
     * reuse detection. Outside it, and always for unbound public clients, reuse revokes the family
     * (RFC 9700 §4.14.2). 0 turns it off. Default: 10.
     */
    refresh_token_retry_grace_seconds: z.number().int().min(0).max(60).default(10),
    /** Device-code lifetime (`expires_in`, RFC 8628 §3.2) in seconds, 10–1800. Default: 600. */
    device_code_ttl_seconds: seconds(10, 1800).default(600),
    /** Polling interval (RFC 8628 §3.2) in seconds, 1–60. Default: 5. */
    poll_interval_seconds: seconds(1, 60).default(5),
    /** May call introspection (RFC 7662) for any client's tokens. Default: false. */
    introspection: z.boolean().default(false),
    /** A disabled client cannot authenticate and its tokens are inactive. Default: false. */
    disabled: z.boolean().default(false),
    /** Risk tier for conditional approval: low, standard, high or admin. Default: standard. */
    risk_tier: z.enum(RISK_TIERS).default('standard'),
    /** Sender-constrained tokens (RFC 9449). */
    dpop: z
      .object({
        /** Token requests must carry a DPoP proof; bearer requests get `invalid_dpop_proof` (RFC 9449 §5). Default: false. */
        required: z.boolean().default(false),
        /**
         * The device authorization request must bind the device code to a DPoP key (a DPoP proof or
         * `dpop_jkt`, devicegate extension of RFC 8628 modelled on RFC 9449 §10); an unbound request
         * gets `invalid_request`. Default: false.
         */
        bind_device_code: z.boolean().default(false),
      })
      .strict()
      .default({ required: false, bind_device_code: false }),
    /**
     * Resource servers (absolute URIs without fragment) this client may request tokens for with the
     * RFC 8707 `resource` parameter; tokens then carry that `aud`. Others get `invalid_target`.
     * Default: none (requests naming a resource are refused; `aud` is the issuer).
     */
    resources: z.array(resourceUri).default([]),
    /**
     * Usernames of the people who own this app: they review its grants in access-review
     * campaigns (`reviews.campaigns[].reviewers: owners`) and answer for its offboarding (OWASP
     * NHI1). Default: none (the compliance report flags it).
     */
    owners: z.array(z.string().min(1).max(100)).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.type === 'confidential' && !c.client_secret_hash && !c.client_secret_env)
      ctx.addIssue({ code: 'custom', message: 'a confidential client needs client_secret_hash or client_secret_env', path: ['client_secret_hash'] })
    if (c.type === 'public' && (c.client_secret_hash || c.client_secret_env))
      ctx.addIssue({ code: 'custom', message: 'a public client has no secret', path: ['client_secret_hash'] })
    if (c.type === 'public' && c.grant_types.includes(GRANT_TYPES.clientCredentials))
      ctx.addIssue({ code: 'custom', message: 'client_credentials requires a confidential client (RFC 6749 §4.4)', path: ['grant_types'] })
    for (const [i, s] of (c.default_scopes ?? []).entries())
      if (!c.scopes.includes(s)) ctx.addIssue({ code: 'custom', message: `"${s}" is not in scopes`, path: ['default_scopes', i] })
  })

/** One user of the built-in user store. */
export const userSchema = z
  .object({
    username: z.string().min(1).max(100).regex(/^[A-Za-z0-9._@-]+$/, 'letters, digits and . _ @ - only'),
    /** Shown on the pages. Default: the username. */
    display_name: z.string().min(1).max(200).optional(),
    /** argon2id PHC hash (`devicegate hash-secret` prints one). */
    password_hash: z.string().startsWith('$argon2').optional(),
    /** Name of an environment variable holding the password; hashed at start-up. */
    password_env: z.string().optional(),
    disabled: z.boolean().default(false),
    /** E-mail address: the OpenID Connect `email` claim and Shared Signals `email` subjects. Default: none. */
    email: z.string().email().max(254).optional(),
    /** Groups, for policy conditions and the device-flow block. Default: none. */
    groups: z.array(z.string().min(1).max(100)).default([]),
    /** Risk attribute for policy conditions, 0 (none) to 100. Default: 0. */
    risk: z.number().int().min(0).max(100).default(0),
    /** Username of this person's manager (as the identity provider or SCIM `manager` gives it): reviews their grants in `reviewers: manager` campaigns. */
    manager: z.string().min(1).max(100).optional(),
    /** Second factor (RFC 6238 TOTP). Enrolments made with `devicegate users enroll-totp` are kept in the database and take precedence. */
    mfa: z
      .object({
        /** Name of an environment variable holding the base32 TOTP secret. */
        totp_secret_env: z.string().min(1),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((u) => u.password_hash || u.password_env, { message: 'needs password_hash or password_env', path: ['password_hash'] })

const ipOrCidr = z.string().refine((v) => /^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(v), 'expected an IP address or CIDR, e.g. 10.0.0.0/8')

/** The whole configuration file. */
export const configSchema = z
  .object({
    /** Issuer identifier (RFC 8414 §2): https URL without query or fragment. Default: http://HOST:PORT. */
    issuer: z
      .string()
      .url()
      .refine((v) => !v.includes('?') && !v.includes('#'), 'an issuer has no query or fragment (RFC 8414 §2)')
      .optional(),
    listen: z
      .object({
        /** Interface to bind. Default: 127.0.0.1. */
        host: z.string().default('127.0.0.1'),
        /** TCP port, 0–65535. Default: 8080. */
        port: z.number().int().min(0).max(65_535).default(8080),
        /**
         * Longest time to receive a whole request — headers and body — in seconds, 1–300; a slower
         * client gets 408 and its connection is closed (checked every second). Default: 30.
         */
        request_timeout_seconds: seconds(1, 300).default(30),
        /**
         * On SIGTERM/SIGINT, how long requests in flight (e.g. slow uploads) may take before their
         * connections are closed, in seconds, 1–120. New requests get 503 meanwhile. Default: 10.
         */
        shutdown_deadline_seconds: seconds(1, 120).default(10),
      })
      .strict()
      .default({ host: '127.0.0.1', port: 8080, request_timeout_seconds: 30, shutdown_deadline_seconds: 10 }),
    /** Directory for the SQLite database. Default: ./data. */
    data_dir: z.string().default('./data'),
    storage: z
      .object({
        /** `sqlite:PATH` or `postgres://…`. Default: `DATABASE_URL`, else SQLite in data_dir. */
        url: z.string().optional(),
        /** PostgreSQL: connections per instance, 1–1000. Default: 10. Keep instances × pool_size below the server's max_connections. */
        pool_size: z.number().int().min(1).max(1000).optional(),
        /** PostgreSQL: longest wait for a connection (new, or free in a busy pool) before answering 503, in seconds, 1–60. Default: 5. */
        connect_timeout_seconds: seconds(1, 60).optional(),
        /** PostgreSQL: longest a query may run (server statement_timeout; the client gives up 1 s later), in seconds, 1–300. Default: 5. */
        query_timeout_seconds: seconds(1, 300).optional(),
        /**
         * PostgreSQL: where the ephemeral state of several instances lives — RFC 8628 §3.5 poll
         * times and RFC 9449 §11.1 DPoP `jti` entries (DPoP nonces are stateless). With
         * `url: redis://…` it lives in Redis (recommended; Redis commands time out after 5 s → 503).
         * Default: UNLOGGED tables in the same database (nothing to run). README "Ephemeral state"
         * says what a crash of either loses. SQLite keeps poll times in the process and refuses
         * this section.
         */
        ephemeral: z
          .object({
            /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
            url: z.string().regex(/^rediss?:\/\//i, 'a redis:// or rediss:// URL'),
            /** Prefix of every Redis key, so deployments can share one Redis. Default: `devicegate:`. */
            key_prefix: z.string().min(1).max(100).default('devicegate:'),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({}),
    /** Proxies whose X-Forwarded-For is believed (IPs or CIDRs). Default: none. */
    trusted_proxies: z.array(ipOrCidr).default([]),
    signing: z
      .object({
        /** JWS algorithm for access tokens (RFC 9068). Default: ES256. */
        alg: z.enum(['ES256', 'EdDSA', 'RS256', 'PS256']).default('ES256'),
        /**
         * File holding the key-encryption key (KEK) that seals private signing keys at rest
         * (AES-256-GCM): 32 random bytes as 64 hex digits or base64/base64url, e.g.
         * `openssl rand -base64 32`. Must not be readable by group or others (mode 0600 or 0400),
         * or the server refuses to start. Keep it apart from the database and its backups.
         * Default: none (then `kek_env`, then a generated file, see the README).
         */
        kek_file: z.string().min(1).optional(),
        /** Environment variable holding the KEK when `kek_file` is not set. Default: DEVICEGATE_KEK. */
        kek_env: z.string().min(1).default('DEVICEGATE_KEK'),
        /**
         * Earlier KEK files, only to open keys not yet re-sealed during a KEK rotation
         * (`devicegate keys rewrap`). Same format and mode rules. Default: none.
         */
        previous_kek_files: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .default({ alg: 'ES256', kek_env: 'DEVICEGATE_KEK', previous_kek_files: [] }),
    verification: z
      .object({
        /**
         * Failed user-code entries allowed per browser session, per signed-out source address and
         * per account in ANY span of `window_seconds` (sliding window, RFC 8628 §5.1). Default: 5.
         */
        max_failed_entries: z.number().int().min(1).max(1000).default(5),
        /** Length of the sliding code-entry window in seconds. Default: 600 (a device code's usual life). */
        window_seconds: seconds(10, 86_400).default(600),
        /**
         * Failed entries of signed-in sessions per source address (all accounts together) per
         * window. Default: 10 (one account's 5 cannot lock out colleagues behind the same NAT).
         */
        signed_in_source_max_failed_entries: z.number().int().min(1).max(10_000).default(10),
        /**
         * Failed signed-out entries of the whole server per window; beyond it code entry needs
         * sign-in and the `user_code_guessing` anomaly is raised (`source: server`). Default: 500.
         */
        server_max_failed_entries: z.number().int().min(1).max(1_000_000).default(500),
        /** IPv6 sources are limited per network of this prefix length, 32–128. IPv4: per address. Default: 64. */
        ipv6_prefix_length: z.number().int().min(32).max(128).default(64),
        /**
         * Seconds a code's review is claimed by the browser session showing it (renewed by each of
         * its reviews, step-ups and decisions); meanwhile no other session can approve or deny it.
         * Bounds how long an abandoned review locks the code. 30–600. Default: 120.
         */
        review_claim_seconds: seconds(30, 600).default(120),
        /**
         * IANA time zone of the clock times on the verification pages (e.g. when a code expires);
         * the offset is always shown. The pages have no JavaScript, so the browser's zone is
         * unknown; set the organisation's zone. Default: UTC.
         */
        time_zone: z
          .string()
          .refine((tz) => {
            try {
              new Intl.DateTimeFormat('en-GB', { timeZone: tz })
              return true
            } catch {
              return false
            }
          }, 'unknown IANA time zone, e.g. Europe/Berlin')
          .default('UTC'),
        /** Sign-in session lifetime in seconds. Default: 3600. */
        session_ttl_seconds: seconds(60, 86_400).default(3600),
      })
      .strict()
      .prefault({}),
    /** Conditional approval (see the README, "Policies and conditional approval"). */
    policy: z
      .object({
        /** Policy YAML file; reloaded when it changes and on SIGHUP. Default: none (the built-in baseline). */
        file: z.string().min(1).optional(),
        /** Watch the file for changes. Default: true. */
        watch: z.boolean().default(true),
      })
      .strict()
      .default({ watch: true }),
    /** IP database for country and ASN conditions. Default: none (every address unknown). */
    geo: z
      .object({
        /** MaxMind DB file with countries (GeoLite2-Country, @ip-location-db/geolite2-country-mmdb). */
        country_db: z.string().min(1).optional(),
        /** MaxMind DB file with autonomous systems (GeoLite2-ASN or an ip-location-db asn file). */
        asn_db: z.string().min(1).optional(),
        /**
         * ip-location-db country CSV files (`ip_range_start,ip_range_end,country_code`), e.g.
         * `node_modules/@ip-location-db/asn-country/asn-country-ipv4.csv` and `…-ipv6.csv`. Default: none.
         */
        country_csv: z.array(z.string().min(1)).default([]),
        /**
         * ip-location-db ASN CSV files (`ip_range_start,ip_range_end,as_number,as_organization`),
         * e.g. `node_modules/@ip-location-db/asn/asn-ipv4.csv` and `…-ipv6.csv`. Default: none.
         */
        asn_csv: z.array(z.string().min(1)).default([]),
        /** Networks no public database knows (office, VPN): consulted first. */
        networks: z
          .array(
            z
              .object({
                cidr: ipOrCidr,
                country: z.string().regex(/^[A-Z]{2}$/, 'ISO 3166-1 alpha-2, upper case').optional(),
                asn: z.number().int().min(0).max(4_294_967_295).optional(),
                as_org: z.string().max(200).optional(),
              })
              .strict(),
          )
          .default([]),
      })
      .strict()
      .default({ networks: [], country_csv: [], asn_csv: [] }),
    /** Device posture assertions (`device_posture` on the device authorization request). Default: not accepted. */
    device_posture: z
      .object({
        /** JWKS (JSON) or PEM public key of the device-management system. */
        key_file: z.string().min(1),
        /** Required `iss`. */
        issuer: z.string().min(1),
        /** Required `aud`. Default: the devicegate issuer. */
        audience: z.string().min(1).optional(),
        /** Oldest acceptable assertion (`iat`), in seconds, 60–2592000. Default: 86400. */
        max_age_seconds: seconds(60, 2_592_000).default(86_400),
      })
      .strict()
      .optional(),
    /** DPoP (RFC 9449) at the token and device authorization endpoints. */
    dpop: z
      .object({
        /**
         * Every DPoP proof must carry a server nonce (RFC 9449 §8); a proof without a current one
         * gets `use_dpop_nonce` and a `DPoP-Nonce` header. Nonces live 60–120 s and are valid on every
         * instance. Default: false.
         */
        require_nonce: z.boolean().default(false),
      })
      .strict()
      .default({ require_nonce: false }),
    /** Plain-language descriptions of scopes for the review page. */
    scopes: z.record(scopeToken, z.string().max(200)).default({}),
    clients: z.array(clientSchema).default([]),
    users: z.array(userSchema).default([]),
    /** Log level. Default: info. */
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Audit log, anomaly detectors, admin API and metrics (see `config/governance.ts`). */
    governance: governanceSchema,
    /** Access-review campaigns and compliance-report limits (see `config/reviews.ts`). */
    reviews: reviewsSchema,
    /** Governance console at /console: role grants and session lifetime (see `config/console.ts`). */
    console: consoleSchema,
    /** Upstream OpenID Connect providers approvers sign in with (see `config/identity.ts`). Default: none. */
    identity_providers: z.array(identityProviderSchema).default([]),
    /** Local passwords, SCIM provisioning and the Shared Signals receiver (see `config/identity.ts`). */
    identity: identitySchema,
    /** Outbox, Shared Signals transmitter, global token revocation, signed webhooks (see `config/signals.ts`). */
    signals: signalsSchema,
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>()
    for (const [i, cl] of c.clients.entries()) {
      if (seen.has(cl.client_id)) ctx.addIssue({ code: 'custom', message: `duplicate client_id "${cl.client_id}"`, path: ['clients', i, 'client_id'] })
      seen.add(cl.client_id)
    }
    const users = new Set<string>()
    for (const [i, u] of c.users.entries()) {
      if (users.has(u.username)) ctx.addIssue({ code: 'custom', message: `duplicate username "${u.username}"`, path: ['users', i, 'username'] })
      users.add(u.username)
    }
    const providers = new Set<string>()
    for (const [i, p] of c.identity_providers.entries()) {
      if (providers.has(p.id)) ctx.addIssue({ code: 'custom', message: `duplicate identity provider id "${p.id}"`, path: ['identity_providers', i, 'id'] })
      providers.add(p.id)
    }
  })

/** The configuration file as written (after defaults). */
export type ConfigFile = z.infer<typeof configSchema>
