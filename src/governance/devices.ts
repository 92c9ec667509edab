/**
 * The trusted device registry: devices known by the RFC 7638 thumbprint (`jkt`) of their DPoP key
 * (RFC 9449 §6.1), the "trusted devices" mitigation of the cross-device flows BCP
 * (draft-ietf-oauth-cross-device-security §6.1.13).
 *
 * Plain functions over the Store, with no HTTP or authentication of their own: the `devicegate
 * devices` CLI and the admin API (which authenticates administrators) call them. The policy engine
 * asks {@link isRegisteredDevice} to require a registered device.
 *
 * Retiring a device revokes every token family bound to its key and every access token bound to
 * it, so its tokens stop working at once (resource servers see them in the revocation feed).
 */
import { calculateJwkThumbprint, type JWK } from 'jose'
import type { Clock } from '../core/ports.js'
import type { DeviceRecord, GrantRecord, Store } from '../storage/store.js'
import { StoreConflictError } from '../storage/store.js'

/** An RFC 7638 SHA-256 JWK thumbprint: 43 base64url characters. */
const JKT_PATTERN = /^[A-Za-z0-9_-]{43}$/

/** Longest label, in characters. */
export const DEVICE_LABEL_MAX_LENGTH = 200

/** Stable codes for callers (CLI exit messages, admin API statuses 400 / 404 / 409). */
export type DeviceRegistryErrorCode = 'ERR_DEVICE_INVALID' | 'ERR_DEVICE_NOT_FOUND' | 'ERR_DEVICE_EXISTS'

/** A refused registry operation; `code` tells callers which. */
export class DeviceRegistryError extends Error {
  override readonly name = 'DeviceRegistryError'
  constructor(
    readonly code: DeviceRegistryErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/** What the registry needs. `events` accepts a governance `EventSink`. */
export interface DeviceRegistryDeps {
  store: Store
  clock: Clock
  events?: { record(event: { type: 'admin.action'; actor?: string | null; details?: Record<string, unknown> }): Promise<void> }
}

/** A device with its token families (newest first). */
export interface DeviceWithGrants extends DeviceRecord {
  grants: GrantRecord[]
}

function checkJkt(jkt: string): string {
  if (!JKT_PATTERN.test(jkt)) throw new DeviceRegistryError('ERR_DEVICE_INVALID', 'a device key thumbprint (jkt) is 43 base64url characters (RFC 7638 SHA-256)')
  return jkt
}

function checkLabel(label: string): string {
  const trimmed = label.trim()
  if (trimmed.length === 0 || trimmed.length > DEVICE_LABEL_MAX_LENGTH || /[\u0000-\u001f\u007f]/.test(trimmed))
    throw new DeviceRegistryError('ERR_DEVICE_INVALID', `a device label is 1–${DEVICE_LABEL_MAX_LENGTH} printable characters`)
  return trimmed
}

/**
 * Computes the `jkt` of a public JWK (RFC 7638 SHA-256), refusing private keys.
 * @throws {DeviceRegistryError} `ERR_DEVICE_INVALID`.
 */
export async function thumbprintOfPublicJwk(jwk: JWK): Promise<string> {
  if (['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'].some((m) => m in jwk))
    throw new DeviceRegistryError('ERR_DEVICE_INVALID', 'give the public key only (the JWK has private members)')
  try {
    return await calculateJwkThumbprint(jwk, 'sha256')
  } catch {
    throw new DeviceRegistryError('ERR_DEVICE_INVALID', 'not a valid public JWK')
  }
}

/**
 * Registers a device by its key thumbprint or its public JWK.
 * @throws {DeviceRegistryError} `ERR_DEVICE_INVALID` (bad jkt, JWK or label), `ERR_DEVICE_EXISTS`
 *   (a device with this key exists, retired or not: retirement is final for a key).
 */
export async function registerDevice(
  deps: DeviceRegistryDeps,
  input: { jkt?: string; jwk?: JWK; label: string; registeredBy?: string | null },
): Promise<DeviceRecord> {
  const jkt = input.jwk ? await thumbprintOfPublicJwk(input.jwk) : checkJkt(input.jkt ?? '')
  if (input.jwk && input.jkt !== undefined && input.jkt !== jkt)
    throw new DeviceRegistryError('ERR_DEVICE_INVALID', 'the jkt does not match the JWK')
  const device: DeviceRecord = {
    jkt,
    label: checkLabel(input.label),
    registeredAt: deps.clock.nowSeconds(),
    registeredBy: input.registeredBy ?? null,
    retiredAt: null,
  }
  try {
    await deps.store.registerDevice(device)
  } catch (err) {
    if (err instanceof StoreConflictError) throw new DeviceRegistryError('ERR_DEVICE_EXISTS', `a device with key ${jkt} is already registered`)
    throw err
  }
  await deps.events?.record({ type: 'admin.action', actor: input.registeredBy ?? null, details: { action: 'device.registered', jkt, label: device.label } })
  return device
}

/**
 * Changes a device's label.
 * @throws {DeviceRegistryError} `ERR_DEVICE_INVALID`, `ERR_DEVICE_NOT_FOUND`.
 */
export async function labelDevice(deps: DeviceRegistryDeps, jkt: string, label: string, actor: string | null = null): Promise<DeviceRecord> {
  const clean = checkLabel(label)
  if (!(await deps.store.labelDevice(checkJkt(jkt), clean))) throw new DeviceRegistryError('ERR_DEVICE_NOT_FOUND', `no device with key ${jkt}`)
  await deps.events?.record({ type: 'admin.action', actor, details: { action: 'device.labelled', jkt, label: clean } })
  return (await deps.store.findDevice(jkt))!
}

/** Lists devices, newest first; retired ones only when `includeRetired`. */
export async function listDevices(deps: Pick<DeviceRegistryDeps, 'store'>, options: { includeRetired?: boolean } = {}): Promise<DeviceRecord[]> {
  const all = await deps.store.listDevices()
  return options.includeRetired ? all : all.filter((d) => d.retiredAt === null)
}

/** One device with its token families, or undefined. */
export async function getDevice(deps: Pick<DeviceRegistryDeps, 'store'>, jkt: string): Promise<DeviceWithGrants | undefined> {
  const device = await deps.store.findDevice(jkt)
  return device && { ...device, grants: await deps.store.listGrantsByDpopJkt(jkt) }
}

/**
 * The token families bound to a device's key (registered or not), newest first.
 * @throws {DeviceRegistryError} `ERR_DEVICE_INVALID` for a malformed jkt.
 */
export async function listDeviceGrants(deps: Pick<DeviceRegistryDeps, 'store'>, jkt: string): Promise<GrantRecord[]> {
  return deps.store.listGrantsByDpopJkt(checkJkt(jkt))
}

/**
 * Retires a device and revokes its tokens: every live family bound to its key, and every access
 * token bound to it. Retiring an already retired device revokes again (anything issued since).
 * @returns the device and the number of families revoked now.
 * @throws {DeviceRegistryError} `ERR_DEVICE_INVALID`, `ERR_DEVICE_NOT_FOUND`.
 */
export async function retireDevice(
  deps: DeviceRegistryDeps,
  jkt: string,
  actor: string | null = null,
): Promise<{ device: DeviceRecord; grantsRevoked: number }> {
  checkJkt(jkt)
  const now = deps.clock.nowSeconds()
  if (!(await deps.store.findDevice(jkt))) throw new DeviceRegistryError('ERR_DEVICE_NOT_FOUND', `no device with key ${jkt}`)
  await deps.store.retireDevice(jkt, now)
  const grantsRevoked = await deps.store.revokeGrantsByDpopJkt(jkt, now)
  await deps.events?.record({ type: 'admin.action', actor, details: { action: 'device.retired', jkt, grantsRevoked } })
  return { device: (await deps.store.findDevice(jkt))!, grantsRevoked }
}

/**
 * Whether `jkt` belongs to a registered, not retired device — for policies that require a
 * registered device. False for null (no DPoP key) and unknown keys.
 */
export async function isRegisteredDevice(store: Store, jkt: string | null | undefined): Promise<boolean> {
  if (!jkt) return false
  const device = await store.findDevice(jkt)
  return device !== undefined && device.retiredAt === null
}

/** The registry bound to its dependencies, for mounting (admin API) or injecting (policy). */
export interface DeviceRegistry {
  register(input: { jkt?: string; jwk?: JWK; label: string; registeredBy?: string | null }): Promise<DeviceRecord>
  label(jkt: string, label: string, actor?: string | null): Promise<DeviceRecord>
  list(options?: { includeRetired?: boolean }): Promise<DeviceRecord[]>
  get(jkt: string): Promise<DeviceWithGrants | undefined>
  grants(jkt: string): Promise<GrantRecord[]>
  retire(jkt: string, actor?: string | null): Promise<{ device: DeviceRecord; grantsRevoked: number }>
  isRegisteredDevice(jkt: string | null | undefined): Promise<boolean>
}

/** Binds the registry functions to `deps`. */
export function createDeviceRegistry(deps: DeviceRegistryDeps): DeviceRegistry {
  return {
    register: (input) => registerDevice(deps, input),
    label: (jkt, label, actor) => labelDevice(deps, jkt, label, actor ?? null),
    list: (options) => listDevices(deps, options),
    get: (jkt) => getDevice(deps, jkt),
    grants: (jkt) => listDeviceGrants(deps, jkt),
    retire: (jkt, actor) => retireDevice(deps, jkt, actor ?? null),
    isRegisteredDevice: (jkt) => isRegisteredDevice(deps.store, jkt),
  }
}
