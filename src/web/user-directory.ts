/**
 * The built-in user store of the verification pages: users from configuration, passwords as
 * argon2id PHC strings (RFC 9106).
 */
import { hash, verify, type Algorithm } from '@node-rs/argon2'
import type { User } from '../core/model.js'
import type { UserDirectory } from './deps.js'

// `Algorithm` is an ambient const enum, which isolated-module transpilers cannot inline.
const ARGON2ID = 2 as Algorithm

/**
 * argon2id parameters: 19 MiB memory, 2 passes, 1 lane — the OWASP Password Storage Cheat
 * Sheet minimum for argon2id, and the library defaults (stated here so they cannot drift).
 */
const ARGON2_OPTIONS = {
  algorithm: ARGON2ID,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
} as const

/** Hashes a password with argon2id and a random salt; returns the PHC string. */
export async function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS)
}

/**
 * Builds the {@link UserDirectory} over a fixed list of users (usernames are matched exactly).
 *
 * `authenticate` always runs one argon2 verification — against a dummy hash for unknown
 * usernames — so response time does not reveal which accounts exist. Disabled accounts are
 * verified too and then refused, for the same reason.
 */
export function createUserDirectory(users: readonly User[]): UserDirectory {
  const byName = new Map<string, User>()
  for (const user of users) {
    if (byName.has(user.username)) throw new TypeError(`duplicate username "${user.username}"`)
    byName.set(user.username, user)
  }
  // Computed once, up front, so even the first unknown-user attempt costs one verification only.
  const dummyHash = hashPassword('devicegate-dummy-password')

  async function verifySafely(phc: string, password: string): Promise<boolean> {
    try {
      return await verify(phc, password)
    } catch {
      // A malformed stored hash is a configuration fault; it must never sign anyone in.
      return false
    }
  }

  return {
    get: (username) => byName.get(username),
    async authenticate(username, password) {
      const user = byName.get(username)
      if (user === undefined) {
        await verifySafely(await dummyHash, password)
        return undefined
      }
      const ok = await verifySafely(user.passwordHash, password)
      return ok && !user.disabled ? user : undefined
    },
  }
}
