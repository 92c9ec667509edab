/**
 * Test support: runs the built `devicegate` command (`node bin/devicegate.js`) as a person would,
 * rebuilding dist/ first when it is stale (scripts/build-if-needed.mjs; `npm test` builds first anyway).
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { buildIfNeeded } from '../../scripts/build-if-needed.mjs'

export const ROOT = join(import.meta.dirname, '..', '..')
export const BIN = join(ROOT, 'bin/devicegate.js')

/** Builds dist/ when stale (scripts/build-if-needed.mjs). Call from `beforeAll` with a long timeout. */
export function ensureBuilt(): void {
  buildIfNeeded({ root: ROOT, stdio: 'ignore' })
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/cli/main.js missing after build; run `npm run build`')
}

/**
 * Runs the CLI to completion. `env` entries set to undefined are removed; DATABASE_URL and
 * DEVICEGATE_KEK are removed unless given.
 */
export function runCli(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; input?: string; timeoutMs?: number } = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
  delete env.DATABASE_URL
  delete env.DEVICEGATE_KEK
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v === undefined) delete env[k]
  else env[k] = v
  const res = spawnSync(process.execPath, [BIN, ...args], { env, cwd: opts.cwd ?? ROOT, encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, ...(opts.input !== undefined ? { input: opts.input } : {}) })
  return { status: res.status, stdout: res.stdout, stderr: res.stderr }
}
