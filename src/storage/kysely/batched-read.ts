/**
 * Coalesces concurrent reads of single rows by key into one statement, for a database across the
 * network (PostgreSQL). There each statement costs a round trip — protocol messages and system
 * calls on both sides, and the backend's per-statement work — several times what finding the row
 * costs, so N concurrent lookups (introspections of N requests) answered by one
 * `… WHERE key = ANY($1)` cost little more than one.
 *
 * Lookups asked for in one event-loop turn are sent together at its end (`setImmediate`), unless
 * {@link BATCHED_MAX_IN_FLIGHT} statements of this batcher are already out: then they wait for one
 * of those to return and go in the next statement, with every lookup asked for meanwhile. So the
 * batch grows with the load instead of the number of statements: an instance that serves fewer
 * concurrent requests (one of several behind a load balancer) still sends few, well-filled
 * statements, rather than one small statement per turn. A lookup waits at most for one statement
 * already out, which it would otherwise have queued behind in the pool; when none is out it is
 * sent at the end of its turn, as before. SQLite reads in-process and needs none of this.
 *
 * Each statement reads committed data as any single read would (READ COMMITTED: a snapshot per
 * statement, taken after every lookup of the batch was asked for), so a result is never older than
 * it would have been.
 */

/**
 * Fewest elements the array parameters of a coalesced statement carry: shorter ones are padded
 * with NULL ({@link padForGenericPlan}). PostgreSQL keeps a named statement's generic plan (planned
 * once per connection) only when its estimated cost is no higher than that of the plans made for
 * the values given; for an array parameter the generic plan assumes 10 elements, so a statement of
 * fewer keys (most of them under light load, or with several instances) always looked cheaper
 * planned for its values and was planned again on every call (`pg_prepared_statements`:
 * `generic_plans` 0) — about a fifth of the backend's CPU on introspection. With at least 10
 * elements no plan for the values is cheaper, and after PostgreSQL's five trial plans the
 * statement runs its cached plan.
 */
export const GENERIC_PLAN_MIN_KEYS = 10

/**
 * `values` padded with NULL to {@link GENERIC_PLAN_MIN_KEYS} elements (a copy; longer arrays are
 * returned as they are). For the array parameters of the coalesced statements, whose NULL keys
 * match no row (`key = NULL` is never true), so the result is that of `values` alone.
 */
export function padForGenericPlan<T>(values: readonly T[]): readonly (T | null)[] {
  if (values.length >= GENERIC_PLAN_MIN_KEYS) return values
  const padded: (T | null)[] = values.slice()
  while (padded.length < GENERIC_PLAN_MIN_KEYS) padded.push(null)
  return padded
}

/** Most keys in one statement; more waiting lookups go in several. */
export const BATCHED_READ_MAX_KEYS = 64

/**
 * Most statements of one batcher out at once; lookups asked for meanwhile wait for the next one.
 * Two, not one: a statement's answer is being read while the next one is already on its way.
 */
export const BATCHED_MAX_IN_FLIGHT = 2

interface Waiting<Row> {
  key: string
  resolve: (row: Row | undefined) => void
  reject: (error: unknown) => void
}

/**
 * When to send the waiting calls of one batcher: at the end of the turn in which the first of
 * them was asked for, or when a statement returns, while fewer than {@link BATCHED_MAX_IN_FLIGHT}
 * are out.
 */
class Sender {
  readonly #maxInFlight: number
  readonly #sendWaiting: () => Promise<void> | undefined
  #inFlight = 0
  #scheduled = false

  /** @param sendWaiting Sends one statement of waiting calls; undefined when none wait. Never rejects. */
  constructor(sendWaiting: () => Promise<void> | undefined, maxInFlight: number) {
    this.#sendWaiting = sendWaiting
    this.#maxInFlight = maxInFlight
  }

  /** A call is waiting: send it at the end of this turn, or once a statement returns. */
  schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      while (this.#inFlight < this.#maxInFlight) {
        const sent = this.#sendWaiting()
        if (sent === undefined) return
        this.#inFlight++
        void sent.then(() => {
          this.#inFlight--
          this.schedule()
        })
      }
    })
  }
}

export class BatchedRead<Row> {
  readonly #read: (keys: readonly string[]) => Promise<readonly Row[]>
  readonly #keyOf: (row: Row) => string
  readonly #sender: Sender
  #waiting: Waiting<Row>[] = []

  /**
   * @param read Reads the rows of these distinct keys (at most {@link BATCHED_READ_MAX_KEYS}); a
   *   missing key has no row. Its errors reject every lookup of the batch.
   * @param keyOf The key of a returned row.
   * @param opts.maxInFlight Most statements out at once (default {@link BATCHED_MAX_IN_FLIGHT}).
   */
  constructor(read: (keys: readonly string[]) => Promise<readonly Row[]>, keyOf: (row: Row) => string, opts: { maxInFlight?: number } = {}) {
    this.#read = read
    this.#keyOf = keyOf
    this.#sender = new Sender(() => this.#sendWaiting(), opts.maxInFlight ?? BATCHED_MAX_IN_FLIGHT)
  }

  /** The row of `key`, or undefined when there is none. */
  load(key: string): Promise<Row | undefined> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ key, resolve, reject })
      this.#sender.schedule()
    })
  }

  #sendWaiting(): Promise<void> | undefined {
    if (this.#waiting.length === 0) return undefined
    const batch = this.#waiting.length <= BATCHED_READ_MAX_KEYS ? this.#waiting : this.#waiting.slice(0, BATCHED_READ_MAX_KEYS)
    this.#waiting = batch === this.#waiting ? [] : this.#waiting.slice(BATCHED_READ_MAX_KEYS)
    return this.#send(batch)
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
 * statement must not touch one row twice, so a repeat of a key already in the statement being
 * built waits for a later one (in the order asked for); statements on the same row are serialised
 * by its row lock, as separate calls would be.
 */
export class BatchedWrite<Arg, Result> {
  readonly #write: (calls: readonly { key: string; arg: Arg }[]) => Promise<ReadonlyMap<string, Result>>
  readonly #sender: Sender
  #waiting: (Waiting<Result> & { arg: Arg })[] = []

  /**
   * @param write Runs the calls (distinct keys, at most {@link BATCHED_READ_MAX_KEYS}) in one
   *   statement; a key missing from the result gets undefined. Its errors reject every call of it.
   * @param opts.maxInFlight Most statements out at once (default {@link BATCHED_MAX_IN_FLIGHT}).
   */
  constructor(write: (calls: readonly { key: string; arg: Arg }[]) => Promise<ReadonlyMap<string, Result>>, opts: { maxInFlight?: number } = {}) {
    this.#write = write
    this.#sender = new Sender(() => this.#sendWaiting(), opts.maxInFlight ?? BATCHED_MAX_IN_FLIGHT)
  }

  /** The result for `key`, or undefined when the statement returned none for it. */
  call(key: string, arg: Arg): Promise<Result | undefined> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ key, arg, resolve, reject })
      this.#sender.schedule()
    })
  }

  #sendWaiting(): Promise<void> | undefined {
    if (this.#waiting.length === 0) return undefined
    const batch: (Waiting<Result> & { arg: Arg })[] = []
    const later: (Waiting<Result> & { arg: Arg })[] = []
    const keys = new Set<string>()
    for (const w of this.#waiting) {
      if (keys.has(w.key) || batch.length >= BATCHED_READ_MAX_KEYS) later.push(w)
      else {
        keys.add(w.key)
        batch.push(w)
      }
    }
    this.#waiting = later
    return this.#send(batch)
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
