/**
 * The policy in force, reloaded without dropping requests.
 *
 * Requests read {@link PolicyHolder.current} once and keep that immutable object for the whole
 * decision; a reload compiles the new file completely and then swaps one reference, so a request
 * never sees half a policy. An invalid new file keeps the old policy and logs the error.
 * Reload triggers: the file changing (fs.watch on its directory, so editors that replace the file
 * by rename are seen; debounced), SIGHUP, or {@link PolicyHolder.reload}.
 */
import { watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import { BUILT_IN_POLICY, compilePolicyText, PolicyError, type CompiledPolicy } from './compile.js'

/** The subset of a pino logger used here. */
export interface PolicyLogger {
  info(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** Read access to the policy in force. */
export interface PolicySource {
  /** The current compiled policy; read once per decision. */
  current(): CompiledPolicy
}

/** Options of {@link PolicyHolder.open}. */
export interface PolicyHolderOptions {
  /** Watch the file and reload on change. Default: true. */
  watch?: boolean
  /** Reload on SIGHUP. Default: true. */
  reloadOnSighup?: boolean
  /** Quiet period before a reload after the last change event, in milliseconds. Default: 200. */
  debounceMs?: number
  logger?: PolicyLogger
}

/** Reads and compiles a policy file. @throws {PolicyError} */
export async function loadPolicyFile(path: string): Promise<CompiledPolicy> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new PolicyError(`cannot read policy file ${path}: ${(err as Error).message}`)
  }
  return compilePolicyText(text, path)
}

/** The state of a {@link PolicyHolder} for operators (console "Policy" page). Times: epoch seconds. */
export interface PolicyStatus {
  /** Absolute path of the policy file, or undefined for the built-in baseline. */
  path: string | undefined
  /** Identity of the policy in force (`sha256:…` of its source, or `built-in`). */
  policyId: string
  /** When the policy in force was loaded. */
  loadedAt: number
  /** The last reload attempt (file change, SIGHUP or a request), or null when none was made. */
  lastReloadAt: number | null
  /** Why the last reload failed, or null when it succeeded (or none was made). */
  lastError: string | null
}

export class PolicyHolder implements PolicySource {
  #current: CompiledPolicy
  #loadedAt = Math.floor(Date.now() / 1000)
  #lastReloadAt: number | null = null
  #lastError: string | null = null
  readonly #path: string | undefined
  readonly #logger: PolicyLogger | undefined
  #watcher: FSWatcher | undefined
  #timer: NodeJS.Timeout | undefined
  #onSighup: (() => void) | undefined
  /** Serialises reloads so an older read can never overwrite a newer one. */
  #reloading: Promise<boolean> = Promise.resolve(true)

  private constructor(initial: CompiledPolicy, path: string | undefined, logger: PolicyLogger | undefined) {
    this.#current = initial
    this.#path = path
    this.#logger = logger
  }

  /** A holder of a fixed policy (tests, `policy explain` with a file). */
  static fixed(policy: CompiledPolicy = BUILT_IN_POLICY): PolicyHolder {
    return new PolicyHolder(policy, undefined, undefined)
  }

  /**
   * Loads the policy file (or the built-in baseline when `path` is undefined) and starts watching.
   * @throws {PolicyError} when the file is missing or invalid at start-up (fail fast).
   */
  static async open(path: string | undefined, options: PolicyHolderOptions = {}): Promise<PolicyHolder> {
    if (path === undefined) return new PolicyHolder(BUILT_IN_POLICY, undefined, options.logger)
    const abs = resolve(path)
    const holder = new PolicyHolder(await loadPolicyFile(abs), abs, options.logger)
    holder.#logger?.info({ event: 'policy.loaded', source: abs, policyId: holder.#current.id }, 'policy loaded')
    const debounceMs = options.debounceMs ?? 200
    if (options.watch ?? true) {
      const name = basename(abs)
      holder.#watcher = watch(dirname(abs), { persistent: false }, (_event, file) => {
        if (file !== null && file.toString() !== name) return
        clearTimeout(holder.#timer)
        holder.#timer = setTimeout(() => void holder.reload(), debounceMs)
        holder.#timer.unref()
      })
      holder.#watcher.on('error', (err) => holder.#logger?.error({ err, event: 'policy.watch_failed' }, 'policy file watch failed'))
    }
    if (options.reloadOnSighup ?? true) {
      holder.#onSighup = () => void holder.reload()
      process.on('SIGHUP', holder.#onSighup)
    }
    return holder
  }

  current(): CompiledPolicy {
    return this.#current
  }

  /** What is in force, since when, and how the last reload went. */
  status(): PolicyStatus {
    return { path: this.#path, policyId: this.#current.id, loadedAt: this.#loadedAt, lastReloadAt: this.#lastReloadAt, lastError: this.#lastError }
  }

  /** Path of the policy file, or undefined for the built-in baseline. */
  get path(): string | undefined {
    return this.#path
  }

  /**
   * Re-reads the file and swaps the policy when it is valid.
   * @returns true when a new policy is in force; false when the file was invalid (old policy kept).
   */
  reload(): Promise<boolean> {
    const path = this.#path
    if (path === undefined) return Promise.resolve(true)
    this.#reloading = this.#reloading.then(async () => {
      try {
        this.#lastReloadAt = Math.floor(Date.now() / 1000)
        const next = await loadPolicyFile(path)
        const previous = this.#current.id
        this.#current = next
        this.#loadedAt = this.#lastReloadAt
        this.#lastError = null
        if (next.id !== previous) this.#logger?.info({ event: 'policy.reloaded', source: path, policyId: next.id, previous }, 'policy reloaded')
        return true
      } catch (err) {
        this.#lastError = (err as Error).message
        this.#logger?.error(
          { event: 'policy.reload_failed', source: path, error: (err as Error).message, policyId: this.#current.id },
          'policy reload failed; keeping the previous policy',
        )
        return false
      }
    })
    return this.#reloading
  }

  /** Stops watching and removes the SIGHUP handler. */
  close(): void {
    this.#watcher?.close()
    clearTimeout(this.#timer)
    if (this.#onSighup) process.off('SIGHUP', this.#onSighup)
  }
}
