/**
 * Coalesces concurrent reads of single rows by key into one statement per event-loop turn, for a
 * database across the network (PostgreSQL). There each statement costs a round trip — protocol
 * messages and system calls on both sides, and the backend's per-statement work — several times
 * what finding the row costs, so N concurrent lookups (introspections of N requests) answered by
 * one `… WHERE key = ANY($1)` cost little more than one. SQLite reads in-process and needs none.
 *
 * Each lookup waits at most until the end of the current event-loop turn (`setImmediate`), then
 * its batch is sent; batches already sent run concurrently on the pool. The statement reads
 * committed data as any single read would (READ COMMITTED: a snapshot per statement, taken after
 * every lookup of the batch was asked for), so a result is never older than it would have been.
 */

/** Most keys in one statement; a larger turn's lookups go in several. */
export const BATCHED_READ_MAX_KEYS = 64

interface Waiting<Row> {
  key: string
  resolve: (row: Row | undefined) => void
  reject: (error: unknown) => void
}

export class BatchedRead<Row> {
  readonly #read: (keys: readonly string[]) => Promise<readonly Row[]>
  readonly #keyOf: (row: Row) => string
  #waiting: Waiting<Row>[] = []

  /**
   * @param read Reads the rows of these distinct keys (at most {@link BATCHED_READ_MAX_KEYS}); a
   *   missing key has no row. Its errors reject every lookup of the batch.
   * @param keyOf The key of a returned row.
   */
  constructor(read: (keys: readonly string[]) => Promise<readonly Row[]>, keyOf: (row: Row) => string) {
    this.#read = read
    this.#keyOf = keyOf
  }

  /** The row of `key`, or undefined when there is none. */
  load(key: string): Promise<Row | undefined> {
    return new Promise((resolve, reject) => {
      if (this.#waiting.length === 0) setImmediate(() => this.#flush())
      this.#waiting.push({ key, resolve, reject })
    })
  }

  #flush(): void {
    const waiting = this.#waiting
    this.#waiting = []
    for (let i = 0; i < waiting.length; i += BATCHED_READ_MAX_KEYS) void this.#send(waiting.slice(i, i + BATCHED_READ_MAX_KEYS))
  }

  async #send(batch: readonly Waiting<Row>[]): Promise<void> {
    try {
      const rows = await this.#read([...new Set(batch.map((w) => w.key))])
      const byKey = new Map(rows.map((row) => [this.#keyOf(row), row]))
      for (const w of batch) w.resolve(byKey.get(w.key))
    } catch (error) {
      for (const w of batch) w.reject(error)
    }
  }
}

/**
 * The same coalescing for a statement that writes one row per key and returns a result per key
 * (a poll decision: `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE … RETURNING`). Such a
 * statement must not touch one row twice, so a turn's calls are split into statements of distinct
 * keys, all sent at once; statements on the same row are serialised by its row lock, as separate
 * calls would be.
 */
export class BatchedWrite<Arg, Result> {
  readonly #write: (calls: readonly { key: string; arg: Arg }[]) => Promise<ReadonlyMap<string, Result>>
  #waiting: (Waiting<Result> & { arg: Arg })[] = []

  /**
   * @param write Runs the calls (distinct keys, at most {@link BATCHED_READ_MAX_KEYS}) in one
   *   statement; a key missing from the result gets undefined. Its errors reject every call of it.
   */
  constructor(write: (calls: readonly { key: string; arg: Arg }[]) => Promise<ReadonlyMap<string, Result>>) {
    this.#write = write
  }

  /** The result for `key`, or undefined when the statement returned none for it. */
  call(key: string, arg: Arg): Promise<Result | undefined> {
    return new Promise((resolve, reject) => {
      if (this.#waiting.length === 0) setImmediate(() => this.#flush())
      this.#waiting.push({ key, arg, resolve, reject })
    })
  }

  #flush(): void {
    let rest = this.#waiting
    this.#waiting = []
    while (rest.length > 0) {
      const batch: typeof rest = []
      const later: typeof rest = []
      const keys = new Set<string>()
      for (const w of rest) {
        if (keys.has(w.key) || batch.length >= BATCHED_READ_MAX_KEYS) later.push(w)
        else {
          keys.add(w.key)
          batch.push(w)
        }
      }
      void this.#send(batch)
      rest = later
    }
  }

  async #send(batch: readonly (Waiting<Result> & { arg: Arg })[]): Promise<void> {
    try {
      const results = await this.#write(batch.map((w) => ({ key: w.key, arg: w.arg })))
      for (const w of batch) w.resolve(results.get(w.key))
    } catch (error) {
      for (const w of batch) w.reject(error)
    }
  }
}
