/**
 * Storage of the trusted device registry, keyed by the RFC 7638 thumbprint of each device's DPoP
 * key (`devices`), and the token families bound to such a key. Kysely implementation:
 * `kysely/trusted-devices.ts`.
 */
import type { GrantRecord } from './token-families.js'

/** A trusted device, known by the RFC 7638 thumbprint of its DPoP key. */
export interface DeviceRecord {
  /** SHA-256 JWK thumbprint (base64url) of the device's DPoP public key (RFC 9449 §6.1 `jkt`). */
  jkt: string
  /** Name shown to administrators, e.g. `build-agent-07`. */
  label: string
  registeredAt: number
  /** Administrator who registered it, if known. */
  registeredBy: string | null
  /** When it was retired (its tokens revoked); null while trusted. */
  retiredAt: number | null
}

/** The trusted device registry. */
export interface TrustedDeviceStore {
  /** @throws {StoreConflictError} when a device with this jkt exists (retired or not). */
  registerDevice(device: DeviceRecord): Promise<void>
  findDevice(jkt: string): Promise<DeviceRecord | undefined>
  /** All devices, newest first. */
  listDevices(): Promise<DeviceRecord[]>
  /** @returns false when no device has this jkt. */
  labelDevice(jkt: string, label: string): Promise<boolean>
  /** Marks a device retired. @returns false when unknown or already retired. */
  retireDevice(jkt: string, now: number): Promise<boolean>
  /** Token families bound to a DPoP key (`grants.dpop_jkt`), newest first. */
  listGrantsByDpopJkt(jkt: string): Promise<GrantRecord[]>
  /**
   * Revokes every live family bound to the key and every live access token bound to it (an
   * access token may be bound although its family is not), in one transaction.
   * @returns the number of families revoked by this call.
   */
  revokeGrantsByDpopJkt(jkt: string, now: number): Promise<number>
}
