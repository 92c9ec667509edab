import type { AccessTokenRecord, RefreshTokenRecord, Store, WithGrantState } from '../storage/store.js'
import { sha256Hex } from '../system.js'

/** A token found by its string, of either kind. */
export type FoundToken =
  | { kind: 'access_token'; record: WithGrantState<AccessTokenRecord> }
  | { kind: 'refresh_token'; record: WithGrantState<RefreshTokenRecord> }

/**
 * Finds an access or refresh token by its string. `hint` (RFC 7009 §2.1, RFC 7662 §2.1) only
 * chooses which table is searched first; unknown hints are ignored.
 */
export async function findToken(store: Store, token: string, hint: string | undefined): Promise<FoundToken | undefined> {
  const hash = sha256Hex(token)
  if (hint === 'refresh_token') return (await findRefreshToken(store, hash)) ?? (await findAccessToken(store, hash))
  return (await findAccessToken(store, hash)) ?? (await findRefreshToken(store, hash))
}

async function findAccessToken(store: Store, hash: string): Promise<FoundToken | undefined> {
  const record = await store.findAccessTokenByHash(hash)
  return record && { kind: 'access_token', record }
}

async function findRefreshToken(store: Store, hash: string): Promise<FoundToken | undefined> {
  const record = await store.findRefreshTokenByHash(hash)
  return record && { kind: 'refresh_token', record }
}

/** Whether a found token is live at `now`: not revoked, family not revoked, not expired, not rotated. */
export function isTokenActive(found: FoundToken, now: number): boolean {
  const r = found.record
  if (r.revokedAt !== null || r.grantRevokedAt !== null) return false
  if (r.expiresAt !== null && now >= r.expiresAt) return false
  return found.kind === 'access_token' || found.record.rotatedAt === null
}
