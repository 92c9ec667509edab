/**
 * WAL checkpoints off the event loop.
 *
 * In WAL mode every commit appends the pages it changed to the `-wal` file; a checkpoint copies
 * them back into the database file and fsyncs it. SQLite runs that checkpoint inside whichever
 * commit crosses `wal_autocheckpoint` pages — on the request path, with its fsync, while every
 * other request waits (profiles of device authorization showed checkpoint work as about half of
 * the cost of each insert). Here the request connection does not checkpoint on its own
 * (`wal_autocheckpoint = 0`); a worker thread with its own connection runs a PASSIVE checkpoint
 * (it never blocks a writer) every {@link CHECKPOINT_INTERVAL_MS}, and a last one on close.
 *
 * The WAL only starts over from its beginning when a write finds every frame copied back. Under
 * a steady stream of commits that never happens between the worker's passes, and the file would
 * grow without bound. So once the worker has copied back a WAL of {@link WAL_RESET_FRAMES} frames
 * or more, it asks for a reset ({@link Checkpointer.resetDue}) and pauses; the request connection
 * then checkpoints once itself, right after a commit — only the frames written since the worker's
 * pass are left to copy — and its next write, with no other reader in the WAL, starts the WAL over
 * (cut back to {@link WAL_SIZE_LIMIT_BYTES}); the worker resumes at its next tick.
 *
 * Durability is unchanged: commits are still durable against a process crash the moment they
 * return (they are in the WAL), and the checkpoint still fsyncs before the WAL is reused.
 */
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

/** Time between two checkpoints, in milliseconds. */
export const CHECKPOINT_INTERVAL_MS = 100

/**
 * A WAL this long (frames, one page each: 128 MB at 4 KiB) is started over once copied back. Each
 * start-over costs the request connection one checkpoint with its fsync; measured at 4,096 frames
 * the device-authorization p99 rose from 8 to 11–16 ms, at 32,768 it stays at 8 ms.
 */
export const WAL_RESET_FRAMES = 32_768

/**
 * The `-wal` file is cut back to this size (bytes) when it starts over, so a burst of writes does
 * not leave a large file behind.
 */
export const WAL_SIZE_LIMIT_BYTES = 128 * 1024 * 1024

/** A running checkpointer. */
export interface Checkpointer {
  /**
   * True when the WAL is long and copied back up to the worker's last pass: the request
   * connection should run `wal_checkpoint(PASSIVE)` after its next commit, then call
   * {@link resetDone}.
   */
  resetDue(): boolean
  resetDone(): void
  /** Runs a last checkpoint and stops the worker. Never rejects. */
  close(): Promise<void>
}

/**
 * The worker's program (CommonJS, evaluated): opens the file, checkpoints on a timer, posts
 * `{ reset: true }` and pauses when a long WAL has been copied back (`"resume"` ends the pause),
 * and on `"close"` checkpoints once more and exits. Failures are posted to the parent. That last
 * pass is PASSIVE too: a short-lived process (a CLI command) must not hold up a server that shares
 * the file; the last connection to close (SQLite's own rule) copies the rest and removes the WAL.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.driver)
const db = new Database(workerData.file, { fileMustExist: true })
db.pragma('busy_timeout = ' + workerData.busyTimeoutMs)
let failed = false
// While a reset is asked for, this connection stays out of the WAL: a reader there would stop
// the request connection's next write from starting the WAL over.
let paused = false
const checkpoint = (mode) => {
  try {
    const [result] = db.pragma('wal_checkpoint(' + mode + ')')
    if (result && result.log >= workerData.resetFrames && result.checkpointed === result.log) {
      paused = true
      parentPort.postMessage({ reset: true })
    }
  } catch (err) {
    if (!failed) parentPort.postMessage({ error: String(err && err.message || err) })
    failed = true
  }
}
const timer = setInterval(() => paused || checkpoint('PASSIVE'), workerData.intervalMs)
parentPort.on('message', (message) => {
  if (message === 'resume') paused = false
  if (message !== 'close') return
  clearInterval(timer)
  checkpoint('PASSIVE')
  db.close()
  parentPort.close()
})
`

/**
 * Starts checkpointing `file` from a worker thread. The caller has opened `file` in WAL mode and
 * set `wal_autocheckpoint = 0` on its own connection.
 *
 * @param onError Called once if a checkpoint fails (e.g. the file became unreadable); the caller
 *   should then turn SQLite's automatic checkpoints back on.
 */
export function startCheckpointer(file: string, busyTimeoutMs: number, onError: (message: string) => void): Checkpointer {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      file,
      busyTimeoutMs,
      intervalMs: CHECKPOINT_INTERVAL_MS,
      resetFrames: WAL_RESET_FRAMES,
      driver: createRequire(import.meta.url).resolve('better-sqlite3'),
    },
  })
  let resetDue = false
  // The worker never keeps the process alive; close() ends it cleanly.
  worker.unref()
  worker.on('message', (m: { error?: string; reset?: boolean }) => {
    if (m.reset) resetDue = true
    if (m.error !== undefined) onError(m.error)
  })
  worker.on('error', (err) => onError(err.message))
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  return {
    resetDue: () => resetDue,
    resetDone: () => {
      resetDue = false
      worker.postMessage('resume')
    },
    close: async () => {
      worker.ref() // until it has exited: the last checkpoint must not be cut off by process exit
      worker.postMessage('close')
      await exited
    },
  }
}
