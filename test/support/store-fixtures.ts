/**
 * Store records for storage tests (`store-contract`, `sqlite-store`): valid, unique on every call,
 * at the fixed time {@link NOW}; `over` replaces any field.
 */
import { randomBytes, randomInt, randomUUID } from 'node:crypto'
import type { AccessTokenRecord, DeviceGrantRecord, RefreshTokenRecord, TokenBundle } from '../../src/storage/store.js'

/** The tests' "now", epoch seconds. */
export const NOW = 1_750_000_000

export const id = (prefix: string) => `${prefix}_${randomUUID()}`
export const hash = () => randomBytes(32).toString('hex')
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ'
/**
 * A user code (8 letters of {@link USER_CODE_ALPHABET}), unique in this process: the next number of
 * a counter that starts at a random point, written in base 20. Random codes collided (the column
 * is unique): 20^8 codes, so about 2 % of the runs that insert 30,000 grants met a taken one.
 */
export const userCode = () => {
  let n = nextUserCode++ % USER_CODE_SPACE
  let code = ''
  for (let i = 0; i < 8; i++, n = Math.floor(n / USER_CODE_ALPHABET.length)) code = USER_CODE_ALPHABET[n % USER_CODE_ALPHABET.length] + code
  return code
}
const USER_CODE_SPACE = USER_CODE_ALPHABET.length ** 8
let nextUserCode = randomInt(USER_CODE_SPACE)

/**
 * A pending device grant. Its `deviceCodeHash` is `<id>.<64 hex>`, the key of a code `<id>.<secret>`
 * as devicegate issues it (found by the id); pass `deviceCodeHash: hash()` for the key of a code of
 * the format before (no `.`, found by the hash).
 */
export function deviceGrant(over: Partial<DeviceGrantRecord> = {}): DeviceGrantRecord {
  const grantId = over.id ?? id('dg')
  return {
    id: grantId,
    deviceCodeHash: `${grantId}.${hash()}`,
    userCode: userCode(),
    clientId: 'cli',
    scope: 'openid profile',
    status: 'pending',
    createdAt: NOW,
    expiresAt: NOW + 600,
    intervalSeconds: 5,
    lastPolledAt: null,
    subject: null,
    decidedAt: null,
    requestIp: '203.0.113.7',
    requestUserAgent: 'curl/8',
    dpopJkt: null,
    grantId: null,
    ...over,
  }
}

export function accessToken(grantId: string, over: Partial<AccessTokenRecord> = {}): AccessTokenRecord {
  return {
    tokenHash: hash(),
    jti: id('jti'),
    grantId,
    clientId: 'cli',
    subject: 'alice',
    scope: 'openid',
    issuedAt: NOW,
    expiresAt: NOW + 300,
    revokedAt: null,
    format: 'jwt',
    dpopJkt: null,
    ...over,
  }
}

export function refreshToken(grantId: string, over: Partial<RefreshTokenRecord> = {}): RefreshTokenRecord {
  return {
    tokenHash: hash(),
    id: id('rt'),
    grantId,
    clientId: 'cli',
    subject: 'alice',
    scope: 'openid',
    issuedAt: NOW,
    expiresAt: NOW + 86_400,
    rotatedAt: null,
    revokedAt: null,
    dpopJkt: null,
    ...over,
  }
}

export function bundle(
  over: { subject?: string | null; clientId?: string; grantExpiresAt?: number | null } = {},
): TokenBundle {
  const grantId = id('g')
  const subject = over.subject === undefined ? 'alice' : over.subject
  const clientId = over.clientId ?? 'cli'
  return {
    grant: {
      id: grantId,
      clientId,
      subject,
      scope: 'openid',
      createdAt: NOW,
      revokedAt: null,
      deviceGrantId: null,
      expiresAt: over.grantExpiresAt === undefined ? NOW + 30 * 86_400 : over.grantExpiresAt,
      dpopJkt: null,
    },
    accessToken: accessToken(grantId, { subject, clientId }),
    refreshToken: refreshToken(grantId, { subject, clientId }),
  }
}

export const nextTokens = (grantId: string) => ({
  accessToken: accessToken(grantId),
  refreshToken: refreshToken(grantId),
})
