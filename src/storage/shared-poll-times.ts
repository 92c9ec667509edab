/**
 * RFC 8628 §3.5 poll times of several instances: each poll is decided in the shared ephemeral
 * store (`ephemeral.ts`: one UNLOGGED upsert or one Redis script, atomic across instances), and
 * the decided `(last poll, interval)` is written back to the `device_grants` rows in one batch at
 * most {@link POLL_WRITE_BACK_MS} later (and on close), so the rows stay the record that admin
 * views read and that a lost ephemeral entry is rebuilt from.
 */
import type { PollDecision } from './ephemeral.js'
import { POLL_WRITE_BACK_MS, type PollState, type PollTimes } from './poll-times.js'

/** Decides one poll atomically across instances; undefined when there is no such grant. */
type DecidePoll = (id: string, now: number) => Promise<PollDecision | undefined>

export class SharedPollTimes implements PollTimes {
  /** Decided states not yet written back, by device grant id. */
  #pending = new Map<string, PollState>()
  readonly #decide: DecidePoll
  readonly #persist: (changes: ReadonlyArray<readonly [string, PollState]>) => Promise<void>
  readonly #onError: (error: unknown) => void
  #timer: NodeJS.Timeout | undefined
  #writing: Promise<void> = Promise.resolve()

  /**
   * @param decide Decides one poll atomically across instances; undefined when there is no such grant.
   * @param persist Writes states back, each value only moving forward (instances flush in any order).
   * @param onError Receives a failed write-back; its states are kept and tried again.
   */
  constructor(
    decide: DecidePoll,
    persist: (changes: ReadonlyArray<readonly [string, PollState]>) => Promise<void>,
    onError: (error: unknown) => void,
  ) {
    this.#decide = decide
    this.#persist = persist
    this.#onError = onError
  }

  async register(id: string, now: number): Promise<PollDecision> {
    const decision = await this.#decide(id, now)
    if (decision === undefined) throw new Error(`registerPoll: no device grant with id ${JSON.stringify(id)}`)
    this.#remember(id, { lastPolledAt: now, intervalSeconds: decision.intervalSeconds })
    this.#timer ??= setTimeout(() => void this.flush(), POLL_WRITE_BACK_MS).unref()
    return decision
  }

  current(id: string): PollState | undefined {
    return this.#pending.get(id)
  }

  flush(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#writing = this.#writing.then(() => this.#writeBack())
    return this.#writing
  }

  /** Keeps the newest of two states of one grant (polls of one grant may finish out of order). */
  #remember(id: string, state: PollState): void {
    const held = this.#pending.get(id)
    this.#pending.set(
      id,
      held === undefined
        ? state
        : {
            lastPolledAt: Math.max(held.lastPolledAt ?? 0, state.lastPolledAt ?? 0),
            intervalSeconds: Math.max(held.intervalSeconds, state.intervalSeconds),
          },
    )
  }

  async #writeBack(): Promise<void> {
    if (this.#pending.size === 0) return
    const batch = this.#pending
    this.#pending = new Map()
    try {
      await this.#persist([...batch])
    } catch (error) {
      for (const [id, state] of batch) this.#remember(id, state)
      this.#onError(error)
      this.#timer ??= setTimeout(() => void this.flush(), POLL_WRITE_BACK_MS).unref()
    }
  }
}
