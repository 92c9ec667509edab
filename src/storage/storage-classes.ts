/**
 * Declared token storage per device authorization (storage rules): where the client says it keeps
 * the tokens (`storage_class`, a devicegate extension), kept with the grant and updated when a
 * refresh declares it again. Table `grant_storage_classes` (migration `013_storage_class`), kept
 * apart from the device-grant rows so a declaration can change without touching the grant's
 * state machine. Times are epoch seconds.
 */
import type { StorageClass } from '../core/storage-class.js'

/** One declaration. */
export interface StorageClassRecord {
  deviceGrantId: string
  clientId: string
  storageClass: StorageClass
  /** When the device authorization declared it. */
  declaredAt: number
  /** When a refresh last declared a different class, or null. */
  redeclaredAt: number | null
}

export interface StorageClassStore {
  /** Records the declaration of a new device authorization (one per device grant; a second is ignored). */
  declareStorageClass(record: Omit<StorageClassRecord, 'redeclaredAt'>): Promise<void>
  /**
   * Replaces the class when a refresh declares another one (one conditional UPDATE).
   * @returns true when the stored class changed.
   */
  redeclareStorageClass(deviceGrantId: string, storageClass: StorageClass, now: number): Promise<boolean>
  findStorageClass(deviceGrantId: string): Promise<StorageClassRecord | undefined>
  /** Declarations of these device grants, by id (ids without one are absent). Chunked by 500. */
  findStorageClasses(deviceGrantIds: readonly string[]): Promise<Map<string, StorageClassRecord>>
  /**
   * Counts device authorizations made at or after `since` (epoch seconds) by their current class,
   * optionally for one client. Every device authorization is recorded, `unknown` when it declared
   * nothing.
   */
  countStorageClasses(query: { since: number; clientId?: string }): Promise<Record<StorageClass, number>>
  /** Client ids with declarations made at or after `since`. */
  listStorageClassClients(since: number): Promise<string[]>
}
