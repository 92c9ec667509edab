/**
 * scripts/build-if-needed.mjs (`npm start`, and the CLI tests through test/support/cli.ts) builds
 * dist/ when it is stale: after a source is deleted (its outputs go too: tsc never deletes them, and
 * a stale dist/x.js stayed importable), after a build setting changes, and again after a failed
 * build (tsc emits despite type errors, so the fresh outputs are not to be trusted). Run as a
 * person runs it, on a small project of its own.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from './support/cli.js'

const SCRIPT = join(ROOT, 'scripts/build-if-needed.mjs')
/** Each run starts tsc: a few seconds on a busy machine. */
const SLOW = 240_000
let dir = ''

function write(rel: string, text: string): void {
  mkdirSync(join(dir, rel, '..'), { recursive: true })
  writeFileSync(join(dir, rel), text)
}
/** Runs the script in the project; `building` is whether it said it built. */
function run(): { status: number | null; building: boolean; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT], { cwd: dir, encoding: 'utf8', timeout: 120_000 })
  if (r.error) throw r.error
  return { status: r.status, building: /building devicegate/.test(r.stderr), stderr: r.stderr }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'devicegate-build-'))
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  write('package.json', JSON.stringify({ type: 'module', scripts: { build: 'tsc -p tsconfig.build.json' } }))
  write('tsconfig.json', JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, declaration: true, sourceMap: true, outDir: 'dist', rootDir: '.' }, include: ['src'] }))
  write('tsconfig.build.json', JSON.stringify({ extends: './tsconfig.json', compilerOptions: { rootDir: 'src', outDir: 'dist' }, include: ['src'] }))
  write('src/cli/main.ts', "import { a } from '../a.js'\nexport const main = a\n")
  write('src/a.ts', '/* kept comment */\nexport const a: number = 1\n')
  write('src/b.ts', 'export const b = 2\n')
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('scripts/build-if-needed.mjs', () => {
  it('builds a missing dist/ once, then leaves an up-to-date one alone', () => {
    expect(run()).toMatchObject({ status: 0, building: true })
    expect(existsSync(join(dir, 'dist/cli/main.js'))).toBe(true)
    expect(existsSync(join(dir, 'dist/b.js'))).toBe(true)
    expect(run()).toMatchObject({ status: 0, building: false })
  }, SLOW)

  it('removes the outputs of a deleted source (dist/b.js no longer importable)', () => {
    unlinkSync(join(dir, 'src/b.ts'))
    const r = run()
    expect(r.status).toBe(0)
    for (const out of ['dist/b.js', 'dist/b.js.map', 'dist/b.d.ts']) expect(existsSync(join(dir, out)), out).toBe(false)
    expect(existsSync(join(dir, 'dist/a.js'))).toBe(true)
    expect(run()).toMatchObject({ status: 0, building: false })
  }, SLOW)

  it('rebuilds when tsconfig.json changes (its options shape dist/)', () => {
    expect(readFileSync(join(dir, 'dist/a.js'), 'utf8')).toContain('kept comment')
    const config = JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8'))
    config.compilerOptions.removeComments = true
    write('tsconfig.json', JSON.stringify(config))
    expect(run()).toMatchObject({ status: 0, building: true })
    expect(readFileSync(join(dir, 'dist/a.js'), 'utf8')).not.toContain('kept comment')
  }, SLOW)

  it('does not trust the outputs of a failed build: exit 1, and the next run builds again until it succeeds', () => {
    write('src/a.ts', 'export const a: number = "not a number"\n')
    expect(run()).toMatchObject({ status: 1, building: true })
    // Nothing changed since, but the outputs came from a failed build.
    expect(run()).toMatchObject({ status: 1, building: true })
    write('src/a.ts', 'export const a: number = 3\n')
    expect(run()).toMatchObject({ status: 0, building: true })
    expect(run()).toMatchObject({ status: 0, building: false })
  }, SLOW)
})
