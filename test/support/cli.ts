/**
 * Test support: runs the built `devicegate` command (`node bin/devicegate.js`) as a person would,
 * rebuilding dist/ first when a source file is newer than it (`npm test` builds first anyway).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

export const ROOT = join(import.meta.dirname, '..', '..')
export const BIN = join(ROOT, 'bin/devicegate.js')

function newest(dir: string): number {
  let max = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) max = Math.max(max, e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)
  return max
}

/** Builds dist/ when stale. Call from `beforeAll` with a long timeout. */
export function ensureBuilt(): void {
  const out = join(ROOT, 'dist/cli/main.js')
  if (!existsSync(out) || newest(join(ROOT, 'src')) > statSync(out).mtimeMs)
    spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'ignore' })
  if (!existsSync(out)) throw new Error('dist/cli/main.js missing after build; run `npm run build`')
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
