/**
 * The `governance:` section of the configuration: audit log, anomaly detectors, admin
 * API and metrics. Its own module so the main schema only references it.
 */
import { resolve } from 'node:path'
import { z } from 'zod'

/** What a detector does when it fires. */
export const ANOMALY_ACTIONS = ['alert', 'revoke_grant', 'revoke_user'] as const
export type AnomalyAction = (typeof ANOMALY_ACTIONS)[number]

const action = (fallback: AnomalyAction) => z.enum(ANOMALY_ACTIONS).default(fallback)
const positive = (min: number, max: number) => z.number().int().min(min).max(max)

/** Network prefix lengths used where devicegate has no geo or ASN database. */
const prefixes = {
  /** IPv4 prefix length compared, 8–32. Default: 24. */
  ipv4_prefix: positive(8, 32).default(24),
  /** IPv6 prefix length compared, 16–128. Default: 48. */
  ipv6_prefix: positive(16, 128).default(48),
}

const detector = <T extends z.ZodRawShape>(fallback: AnomalyAction, extra: T) =>
  z
    .object({
      /** Default: true. */
      enabled: z.boolean().default(true),
      /** `alert` (record only), `revoke_grant` or `revoke_user`. */
      action: action(fallback),
      ...extra,
    })
    .strict()
    .prefault({} as never)

export const governanceSchema = z
  .object({
    audit: z
      .object({
        /** Write the audit log. Default: true. */
        enabled: z.boolean().default(true),
        /** Environment variable holding the checkpoint HMAC key (≥ 32 characters); share it between instances. */
        checkpoint_key_env: z.string().min(1).optional(),
        /** Key file used when no variable is named; created on first start. Default: DATA_DIR/audit-checkpoint.key. */
        checkpoint_key_file: z.string().optional(),
        /** Checkpoints are also appended here (JSON Lines), apart from the database. Default: DATA_DIR/audit-checkpoints.jsonl. */
        checkpoint_file: z.string().optional(),
        /** Seconds between checkpoints of the chain head, 5–86400. Default: 60. */
        checkpoint_every_seconds: positive(5, 86_400).default(60),
      })
      .strict()
      .prefault({}),
    anomalies: z
      .object({
        /** A rotated refresh token presented again (RFC 9700 §4.14.2); the family is revoked anyway. */
        refresh_token_reuse: detector('alert', {}),
        /** A family used (refresh, or introspection with `client_ip`) from another network than its device authorization. */
        token_used_from_new_ip_range: detector('alert', prefixes),
        /** A DPoP-bound token presented with a proof by another key (RFC 9449). */
        dpop_key_mismatch: detector('alert', {}),
        /** A device code polled this many times too fast (RFC 8628 §3.5 slow_down ignored). */
        slow_down_ignored: detector('alert', { threshold: positive(1, 1000).default(5) }),
        /** Wrong user codes from one IP or session in one window (RFC 8628 §5.1). */
        user_code_guessing: detector('alert', { threshold: positive(1, 10_000).default(5), window_seconds: positive(10, 86_400).default(600) }),
        /** Device authorizations per client or per IP in one window (counted per instance). */
        device_authorization_burst: detector('alert', {
          per_ip: positive(1, 1_000_000).default(60),
          per_client: positive(1, 10_000_000).default(1000),
          window_seconds: positive(1, 3600).default(60),
        }),
        /** The approver's network differs from the device authorization request's network. */
        approval_network_mismatch: detector('alert', prefixes),
        /** Families of disabled or deleted users and clients: revoked when the change is made. */
        orphaned_token: detector('revoke_grant', {}),
        /**
         * Repeated same-device approvals for one client (same-device use, RFC 10027): the approving
         * browser ran on the requesting machine (same IP and platform) `threshold` times within
         * `window_seconds`, a sign the tool should use a browser-based flow instead.
         */
        device_flow_same_device: detector('alert', {
          /** Same-device approvals per client and window that raise the anomaly, 2–1000. Default: 3. */
          threshold: positive(2, 1000).default(3),
          /** Window length in seconds, 3600–31536000. Default: 2592000 (30 days). */
          window_seconds: positive(3600, 31_536_000).default(2_592_000),
        }),
        /** Families unused for `after_seconds`, found by a periodic sweep. */
        dormant_grant: detector('revoke_grant', {
          /** Seconds without use, 3600–31536000. Default: 7776000 (90 days). */
          after_seconds: positive(3600, 31_536_000).default(7_776_000),
          /** Seconds between sweeps, 60–86400. Default: 3600. */
          sweep_every_seconds: positive(60, 86_400).default(3600),
        }),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({
        /** Serve the admin API under /admin/api. Default: true. */
        enabled: z.boolean().default(true),
        /** Scope an access token needs for the admin API. Default: admin. */
        scope: z.string().min(1).default('admin'),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        /** Serve Prometheus metrics at /metrics. Default: true. */
        enabled: z.boolean().default(true),
        /**
         * Serve /metrics on its own listener (e.g. an internal interface) instead of the main
         * one, where it then answers 404. Default: none (served on the main listener).
         */
        listen: z
          .object({
            /** Interface, e.g. 127.0.0.1 or an internal address. Default: 127.0.0.1. */
            host: z.string().min(1).default('127.0.0.1'),
            /** TCP port, 0–65535 (0: any free port). */
            port: z.number().int().min(0).max(65_535),
          })
          .strict()
          .optional(),
        /**
         * Environment variable holding a bearer token scrapers must send
         * (`Authorization: Bearer …`, RFC 6750 §2.1), at least 32 characters. Default: none.
         */
        bearer_token_env: z.string().min(1).optional(),
        /** File holding that token (alternative to bearer_token_env; trailing newline ignored). */
        bearer_token_file: z.string().min(1).optional(),
      })
      .refine((m) => m.bearer_token_env === undefined || m.bearer_token_file === undefined, 'give bearer_token_env or bearer_token_file, not both')
      .strict()
      .prefault({}),
    /** A family's last use is written at most once per this many seconds, 1–3600. Default: 60. */
    last_use_every_seconds: positive(1, 3600).default(60),
  })
  .strict()
  .prefault({})

export type GovernanceFile = z.infer<typeof governanceSchema>

interface Detector {
  readonly enabled: boolean
  readonly action: AnomalyAction
}

/** Resolved governance settings (camelCase, absolute paths, frozen). */
export interface GovernanceConfig {
  readonly audit: {
    readonly enabled: boolean
    readonly checkpointKeyEnv: string | undefined
    readonly checkpointKeyFile: string
    readonly checkpointFile: string
    readonly checkpointEverySeconds: number
  }
  readonly anomalies: {
    readonly refreshTokenReuse: Detector
    readonly tokenUsedFromNewIpRange: Detector & { readonly ipv4Prefix: number; readonly ipv6Prefix: number }
    readonly dpopKeyMismatch: Detector
    readonly slowDownIgnored: Detector & { readonly threshold: number }
    readonly userCodeGuessing: Detector & { readonly threshold: number; readonly windowSeconds: number }
    readonly deviceAuthorizationBurst: Detector & { readonly perIp: number; readonly perClient: number; readonly windowSeconds: number }
    readonly approvalNetworkMismatch: Detector & { readonly ipv4Prefix: number; readonly ipv6Prefix: number }
    readonly orphanedToken: Detector
    readonly deviceFlowSameDevice: Detector & { readonly threshold: number; readonly windowSeconds: number }
    readonly dormantGrant: Detector & { readonly afterSeconds: number; readonly sweepEverySeconds: number }
  }
  readonly admin: { readonly enabled: boolean; readonly scope: string }
  readonly metrics: {
    readonly enabled: boolean
    /** Own listener for /metrics; absent: served on the main listener. */
    readonly listen?: { readonly host: string; readonly port: number }
    readonly bearerTokenEnv?: string
    /** Absolute path. */
    readonly bearerTokenFile?: string
  }
  readonly lastUseEverySeconds: number
}

/** Resolves the validated section; relative paths are taken from the data directory. */
export function resolveGovernanceConfig(file: GovernanceFile | undefined, dataDir: string): GovernanceConfig {
  const g = file ?? governanceSchema.parse(undefined)
  const a = g.anomalies
  const path = (p: string | undefined, fallback: string) => resolve(dataDir, p ?? fallback)
  return deepFreeze({
    audit: {
      enabled: g.audit.enabled,
      checkpointKeyEnv: g.audit.checkpoint_key_env,
      checkpointKeyFile: path(g.audit.checkpoint_key_file, 'audit-checkpoint.key'),
      checkpointFile: path(g.audit.checkpoint_file, 'audit-checkpoints.jsonl'),
      checkpointEverySeconds: g.audit.checkpoint_every_seconds,
    },
    anomalies: {
      refreshTokenReuse: { ...a.refresh_token_reuse },
      tokenUsedFromNewIpRange: {
        enabled: a.token_used_from_new_ip_range.enabled,
        action: a.token_used_from_new_ip_range.action,
        ipv4Prefix: a.token_used_from_new_ip_range.ipv4_prefix,
        ipv6Prefix: a.token_used_from_new_ip_range.ipv6_prefix,
      },
      dpopKeyMismatch: { ...a.dpop_key_mismatch },
      slowDownIgnored: { ...a.slow_down_ignored },
      userCodeGuessing: {
        enabled: a.user_code_guessing.enabled,
        action: a.user_code_guessing.action,
        threshold: a.user_code_guessing.threshold,
        windowSeconds: a.user_code_guessing.window_seconds,
      },
      deviceAuthorizationBurst: {
        enabled: a.device_authorization_burst.enabled,
        action: a.device_authorization_burst.action,
        perIp: a.device_authorization_burst.per_ip,
        perClient: a.device_authorization_burst.per_client,
        windowSeconds: a.device_authorization_burst.window_seconds,
      },
      approvalNetworkMismatch: {
        enabled: a.approval_network_mismatch.enabled,
        action: a.approval_network_mismatch.action,
        ipv4Prefix: a.approval_network_mismatch.ipv4_prefix,
        ipv6Prefix: a.approval_network_mismatch.ipv6_prefix,
      },
      orphanedToken: { ...a.orphaned_token },
      deviceFlowSameDevice: {
        enabled: a.device_flow_same_device.enabled,
        action: a.device_flow_same_device.action,
        threshold: a.device_flow_same_device.threshold,
        windowSeconds: a.device_flow_same_device.window_seconds,
      },
      dormantGrant: {
        enabled: a.dormant_grant.enabled,
        action: a.dormant_grant.action,
        afterSeconds: a.dormant_grant.after_seconds,
        sweepEverySeconds: a.dormant_grant.sweep_every_seconds,
      },
    },
    admin: { ...g.admin },
    metrics: {
      enabled: g.metrics.enabled,
      ...(g.metrics.listen ? { listen: { ...g.metrics.listen } } : {}),
      ...(g.metrics.bearer_token_env !== undefined ? { bearerTokenEnv: g.metrics.bearer_token_env } : {}),
      ...(g.metrics.bearer_token_file !== undefined ? { bearerTokenFile: resolve(g.metrics.bearer_token_file) } : {}),
    },
    lastUseEverySeconds: g.last_use_every_seconds,
  })
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
