/** Types of scripts/build-if-needed.mjs (for test/support/cli.ts and test/build-if-needed.test.ts). */

/** Build settings whose change makes dist/ stale, relative to the root. */
export const BUILD_SETTINGS: readonly string[]
/** `dist/cli/main.js`: its mtime is the build's time. */
export const MARKER: string
/** `dist/.build-failed`: present after a failed build, until a successful one. */
export const FAILED: string

/** Outputs under dist/ whose source under src/ is gone (paths relative to `root`). */
export function findOrphans(root: string): string[]

/** Whether dist/ under `root` needs a build, and why. */
export function distState(root: string): { stale: boolean; reason: string }

/**
 * Builds dist/ under `root` (default: this repository) with tsc when stale, then removes orphaned
 * outputs and records whether tsc succeeded.
 */
export function buildIfNeeded(options?: { root?: string; log?: (line: string) => void; stdio?: 'inherit' | 'ignore' }): {
  built: boolean
  ok: boolean
  reason: string
  removed: string[]
}
