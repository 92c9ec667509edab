/**
 * Console roles and what each may do. Pure: no I/O. Every console action names the
 * permission it needs, and the server checks it on every request — a hidden button is never the
 * control.
 */
import { CONSOLE_ROLES, type ConsoleConfig, type ConsoleRole } from '../config/console.js'

export { CONSOLE_ROLES, type ConsoleRole }

/**
 * What a console request may do:
 * - `read`: every governance page (viewer and up).
 * - `act`: revoke grants, acknowledge and act on anomalies, bulk revocation (operator and up).
 * - `administer`: disable/enable people and clients, trusted devices, policy reload (admin).
 * - `self`: "My devices" — anyone who can sign in, with or without a role.
 */
export type ConsolePermission = 'self' | 'read' | 'act' | 'administer'

const NEEDS: Record<ConsolePermission, ConsoleRole | null> = { self: null, read: 'viewer', act: 'operator', administer: 'admin' }

/**
 * The strongest role granted to a person by username or by any of their groups, or null.
 * Usernames and group names are matched exactly (case-sensitive), as policy conditions are.
 */
export function roleOf(config: Pick<ConsoleConfig, 'roles'>, username: string, groups: readonly string[]): ConsoleRole | null {
  for (const role of [...CONSOLE_ROLES].reverse()) {
    const grant = config.roles[role]
    if (grant.users.includes(username) || grant.groups.some((g) => groups.includes(g))) return role
  }
  return null
}

/** Whether `role` (null: signed in without a role) holds `permission`. */
export function isAllowed(role: ConsoleRole | null, permission: ConsolePermission): boolean {
  const needed = NEEDS[permission]
  if (needed === null) return true
  return role !== null && CONSOLE_ROLES.indexOf(role) >= CONSOLE_ROLES.indexOf(needed)
}
