#!/usr/bin/env node
/**
 * Builds dist/ from src/ when it is stale (`npm start` runs this first; the CLI tests call
 * {@link buildIfNeeded} through test/support/cli.ts).
 *
 * dist/ is stale when dist/cli/main.js is missing; when the last build run here failed
 * (`dist/.build-failed`: tsc emits despite type errors, so the fresh outputs are not trusted); when
 * a file or directory under src/, or a build setting (tsconfig.json, tsconfig.build.json,
 * package.json), is newer than dist/cli/main.js — a directory counts because deleting or renaming a
 * file changes only its directory; or when dist/ holds the output of a source that is gone. tsc
 * never deletes outputs, so a deleted src/x.ts used to leave dist/x.js behind, still importable;
 * after each build such orphans are removed.
 *
 * Usage: `node scripts/build-if-needed.mjs` (from the repository root); exit status 1 when the
 * build fails.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..')

/** Build settings whose change makes dist/ stale, relative to the root. */
export const BUILD_SETTINGS = ['tsconfig.json', 'tsconfig.build.json', 'package.json']
/** The output whose mtime is the build's time (set to when a successful build here started). */
export const MARKER = 'dist/cli/main.js'
/** Written when a build run here fails; removed by the next successful one. */
export const FAILED = 'dist/.build-failed'

/** Newest mtime (ms) of `dir`, every directory under it and every file in them. */
function newest(dir) {
  let max = statSync(dir).mtimeMs
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    max = Math.max(max, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }
  return max
}

/** The source an output of tsc comes from (`x.js`, `x.js.map`, `x.d.ts` ← `x.ts`), or undefined for other files. */
function sourceOf(output) {
  const m = /^(.*)\.(?:js|js\.map|d\.ts|d\.ts\.map)$/.exec(output)
  return m ? `${m[1]}.ts` : undefined
}

/**
 * Outputs under dist/ whose source under src/ is gone (paths relative to `root`).
 * @param {string} root
 * @returns {string[]}
 */
export function findOrphans(root) {
  const dist = join(root, 'dist')
  if (!existsSync(dist)) return []
  return readdirSync(dist, { recursive: true })
    .map(String)
    .filter((rel) => {
      const source = sourceOf(rel)
      return source !== undefined && !existsSync(join(root, 'src', source))
    })
    .map((rel) => join('dist', rel))
    .sort()
}

/**
 * Whether dist/ under `root` needs a build, and why.
 * @param {string} root
 * @returns {{ stale: boolean, reason: string }}
 */
export function distState(root) {
  const marker = join(root, MARKER)
  if (!existsSync(marker)) return { stale: true, reason: 'no build yet' }
  if (existsSync(join(root, FAILED))) return { stale: true, reason: 'the last build failed' }
  const builtAt = statSync(marker).mtimeMs
  if (newest(join(root, 'src')) > builtAt) return { stale: true, reason: 'src/ changed' }
  const setting = BUILD_SETTINGS.find((f) => existsSync(join(root, f)) && statSync(join(root, f)).mtimeMs > builtAt)
  if (setting !== undefined) return { stale: true, reason: `${setting} changed` }
  const orphans = findOrphans(root)
  if (orphans.length > 0) return { stale: true, reason: `${orphans[0]} has no source` }
  return { stale: false, reason: 'up to date' }
}

/**
 * Builds dist/ under `root` with tsc (`tsconfig.build.json`, as `npm run build`) when
 * {@link distState} says it is stale, then removes orphaned outputs and records the outcome.
 * @param {{ root?: string, log?: (line: string) => void, stdio?: 'inherit' | 'ignore' }} [options]
 *   `root` default: this repository; `log` receives one line when a build starts.
 * @returns {{ built: boolean, ok: boolean, reason: string, removed: string[] }} `ok` is false when
 *   tsc failed (outputs it emitted stay, marked as failed: the next call builds again).
 */
export function buildIfNeeded({ root = ROOT, log = () => {}, stdio = 'inherit' } = {}) {
  const { stale, reason } = distState(root)
  if (!stale) return { built: false, ok: true, reason, removed: [] }
  log(`building devicegate (${reason})…`)
  // The marker gets the time the build started: a source saved during the build is newer than it.
  const startedAt = new Date()
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio })
  const removed = findOrphans(root)
  for (const rel of removed) rmSync(join(root, rel), { force: true })
  const ok = tsc.status === 0
  if (ok) {
    rmSync(join(root, FAILED), { force: true })
    utimesSync(join(root, MARKER), startedAt, startedAt)
  } else writeFileSync(join(root, FAILED), `tsc exited with ${tsc.status ?? tsc.signal} at ${new Date().toISOString()}\n`)
  return { built: true, ok, reason, removed }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = process.cwd()
  const result = buildIfNeeded({ root, log: (line) => console.error(line) })
  for (const rel of result.removed) console.error(`removed ${rel} (its source is gone)`)
  if (!result.ok) {
    console.error('build failed')
    process.exit(1)
  }
}
