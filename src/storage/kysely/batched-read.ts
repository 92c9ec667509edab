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
