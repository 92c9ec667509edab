/**
 * RFC 8628 §3.5 poll bookkeeping in memory, written back in batches: for a store that one
 * process owns (SQLite).
 *
 * Polling is the hottest path of a device-flow server, and recording each poll time is a write
 * to a random row. Those times need no durability: a crash that forgets the last second of
 * them forgoes at most one `slow_down`. So the process keeps `(last poll, interval)` per device
 * grant in a map — each poll is decided synchronously on it, hence atomically — and writes the
 * changed entries back in one transaction at most {@link POLL_WRITE_BACK_MS} later (and on
 * close), so the rows stay the record that admin views, restarts and other readers see.
 */

/** What one poll decision needs; a device grant's `lastPolledAt` and `intervalSeconds`. */
export interface PollState {
  /** Epoch seconds of the previous poll, or null before the first. */
  lastPolledAt: number | null
  /** The interval in force, in seconds. */
  intervalSeconds: number
}

/** Longest delay, in milliseconds, before a changed poll state is written back. */
export const POLL_WRITE_BACK_MS = 1_000

/** A clean entry not polled for this long (seconds) is dropped from memory (it is in its row). */
const IDLE_EVICTION_SECONDS = 15 * 60

/** RFC 8628 §3.5: the interval grows by this much (seconds) on every too-fast poll. */
export const SLOW_DOWN_INCREMENT_SECONDS = 5

/**
 * Where a store's poll decisions are made, with the newest state of the grants this process
 * polled: {@link InMemoryPollTimes} (one process owns the database) or `SharedPollTimes` (decided
 * in the shared ephemeral store of several instances, `shared-poll-times.ts`).
 */
export interface PollTimes {
  /** Records one poll (see `Store.registerPoll`). @throws {Error} when no device grant has this id. */
  register(id: string, now: number): Promise<{ tooFast: boolean; intervalSeconds: number }>
  /** The state this process holds for `id` that may be newer than the row, if any. */
  current(id: string): PollState | undefined
  /**
   * Offers the state just read from `id`'s row, so that the {@link register} that follows (the
   * token endpoint reads the row, then registers the poll) need not read it again. Ignored when
   * this process already holds a state for `id` (that one is newer) or decides polls elsewhere.
   */
  seed?(id: string, state: PollState): void
  /** Writes what is not yet in the rows back now; resolves when written (never rejects). */
  flush(): Promise<void>
}

interface Entry extends PollState {
  dirty: boolean
}

export class InMemoryPollTimes implements PollTimes {
  readonly #entries = new Map<string, Entry>()
  readonly #load: (id: string) => Promise<PollState | undefined>
  readonly #persist: (changes: ReadonlyArray<readonly [string, PollState]>) => Promise<void>
  readonly #onError: (error: unknown) => void
  #timer: NodeJS.Timeout | undefined
  #writing: Promise<void> = Promise.resolve()

  /**
   * @param load Reads a device grant's stored poll state; undefined when there is no such grant.
   * @param persist Writes changed states back (one transaction).
   * @param onError Receives a failed write-back; its entries stay dirty and are tried again.
   */
  constructor(
    load: (id: string) => Promise<PollState | undefined>,
    persist: (changes: ReadonlyArray<readonly [string, PollState]>) => Promise<void>,
    onError: (error: unknown) => void,
  ) {
    this.#load = load
    this.#persist = persist
    this.#onError = onError
  }

  /**
   * Records one poll (see `Store.registerPoll`).
   * @throws {Error} when no device grant has this id.
   */
  async register(id: string, now: number): Promise<{ tooFast: boolean; intervalSeconds: number }> {
    let entry = this.#entries.get(id)
    if (entry === undefined) {
      const stored = await this.#load(id)
      if (stored === undefined) throw new Error(`registerPoll: no device grant with id ${JSON.stringify(id)}`)
      // A concurrent poll of the same grant may have loaded it meanwhile: its decision stands.
      entry = this.#entries.get(id) ?? { ...stored, dirty: false }
      this.#entries.set(id, entry)
    }
    const tooFast = entry.lastPolledAt !== null && now < entry.lastPolledAt + entry.intervalSeconds
    if (tooFast) entry.intervalSeconds += SLOW_DOWN_INCREMENT_SECONDS
    entry.lastPolledAt = now
    entry.dirty = true
    this.#timer ??= setTimeout(() => void this.flush(), POLL_WRITE_BACK_MS).unref()
    return { tooFast, intervalSeconds: entry.intervalSeconds }
  }

  /**
   * Keeps the state read from `id`'s row, unless an entry exists (newer than the row). A clean
   * entry: nothing to write back; evicted like any idle one.
   */
  seed(id: string, state: PollState): void {
    if (!this.#entries.has(id)) this.#entries.set(id, { lastPolledAt: state.lastPolledAt, intervalSeconds: state.intervalSeconds, dirty: false })
  }

  /** The state held in memory for `id`, if any: newer than the row. */
  current(id: string): PollState | undefined {
    return this.#entries.get(id)
  }

  /** Writes every changed entry back now; resolves when written (never rejects). */
  flush(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#writing = this.#writing.then(() => this.#writeBack())
    return this.#writing
  }

  async #writeBack(): Promise<void> {
    const changes: Array<readonly [string, PollState]> = []
    let newest = 0
    for (const [id, e] of this.#entries) {
      if (e.dirty) {
        changes.push([id, { lastPolledAt: e.lastPolledAt, intervalSeconds: e.intervalSeconds }])
        e.dirty = false
      }
      newest = Math.max(newest, e.lastPolledAt ?? 0)
    }
    if (changes.length > 0) {
      try {
        await this.#persist(changes)
      } catch (error) {
        for (const [id] of changes) {
          const e = this.#entries.get(id)
          if (e) e.dirty = true
        }
        this.#onError(error)
        this.#timer ??= setTimeout(() => void this.flush(), POLL_WRITE_BACK_MS).unref()
        return
      }
    }
    // Entries idle for a while (relative to the newest poll seen) are in their rows: drop them.
    for (const [id, e] of this.#entries)
      if (!e.dirty && (e.lastPolledAt ?? 0) < newest - IDLE_EVICTION_SECONDS) this.#entries.delete(id)
  }
}
