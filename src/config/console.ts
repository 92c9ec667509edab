/**
 * The `console:` section of the configuration: who may use the governance console at
 * `/console` and how long its sessions last (absolute lifetime and inactivity timeout). Its own module so the main schema only references it.
 */
import { z } from 'zod'

/** Console roles, weakest first; each includes everything the ones before it may do. */
export const CONSOLE_ROLES = ['viewer', 'operator', 'admin'] as const
export type ConsoleRole = (typeof CONSOLE_ROLES)[number]

const grantee = z
  .object({
    /** Usernames given this role. Default: none. */
    users: z.array(z.string().min(1).max(200)).default([]),
    /** Groups (`users[].groups`, or the upstream provider's groups) whose members get this role. Default: none. */
    groups: z.array(z.string().min(1).max(200)).default([]),
  })
  .strict()
  .prefault({})

export const consoleSchema = z
  .object({
    /** Serve the console under /console. Default: true. */
    enabled: z.boolean().default(true),
    /**
     * Role grants. `viewer` reads every page; `operator` also revokes grants and acknowledges or acts
     * on anomalies; `admin` also disables/enables people and clients, manages trusted devices and
     * reloads the policy. A person granted several roles has the strongest. Everyone who can sign in
     * (no role needed) has "My devices". Default: nobody has a role.
     */
    roles: z
      .object({ viewer: grantee, operator: grantee, admin: grantee })
      .strict()
      .prefault({}),
    /**
     * Absolute (overall) lifetime of a console session in seconds, 300–43200, counted from sign-in
     * whatever the activity; then sign in again. NIST SP 800-63B §4.2.2 (rev. 3, AAL2) asks for
     * reauthentication at least once per 12 hours: the ceiling here. Default: 1800.
     */
    session_ttl_seconds: z.number().int().min(300).max(43_200).default(1800),
    /**
     * Inactivity timeout of a console session in seconds, 60–43200: a session with no request for
     * this long ends (the person is sent to sign in again, and `session.expired` is audited). Each
     * request moves the deadline, never past the absolute lifetime: the AAL2 "30 minutes of
     * inactivity" of NIST SP 800-63B §4.2.3 (rev. 3). Default: 1800.
     */
    idle_timeout_seconds: z.number().int().min(60).max(43_200).default(1800),
  })
  .strict()
  .prefault({})

/** The resolved console settings. */
export interface ConsoleConfig {
  readonly enabled: boolean
  readonly roles: Readonly<Record<ConsoleRole, { readonly users: readonly string[]; readonly groups: readonly string[] }>>
  /** Absolute session lifetime from sign-in, seconds. */
  readonly sessionTtlSeconds: number
  /** Inactivity timeout, seconds. */
  readonly idleTimeoutSeconds: number
}

/** Freezes the parsed `console:` section into {@link ConsoleConfig}. */
export function resolveConsoleConfig(c: z.infer<typeof consoleSchema>): ConsoleConfig {
  const roles = Object.fromEntries(
    CONSOLE_ROLES.map((r) => [r, Object.freeze({ users: Object.freeze([...c.roles[r].users]), groups: Object.freeze([...c.roles[r].groups]) })]),
  ) as ConsoleConfig['roles']
  return Object.freeze({ enabled: c.enabled, roles: Object.freeze(roles), sessionTtlSeconds: c.session_ttl_seconds, idleTimeoutSeconds: c.idle_timeout_seconds })
}
