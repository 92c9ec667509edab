/**
 * `devicegate report compliance` as a person runs it (built CLI): JSON and printable HTML, on the
 * development preset, naming the real failures.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = join(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin/devicegate.js')
let dir: string

beforeAll(() => {
  const out = join(ROOT, 'dist/cli/reviews.js')
  if (!existsSync(out) || statSync(join(ROOT, 'src/cli/reviews.ts')).mtimeMs > statSync(out).mtimeMs)
    spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'ignore' })
  if (!existsSync(out)) throw new Error('dist/cli/reviews.js missing after build; run `npm run build`')
  dir = mkdtempSync(join(tmpdir(), 'devicegate-report-'))
}, 120_000)
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

function run(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, DEVICEGATE_DEV_DEMO_PASSWORD: 'dev-password-0123456789', DEVICEGATE_DEV_DEMO_CLIENT_SECRET: 'dev-client-secret-0123456789abcdef' },
    timeout: 60_000,
  })
}

describe('devicegate report compliance', () => {
  it('prints JSON naming the development preset’s failures (NHI7, NHI1, PR.AA-05)', () => {
    const res = run(['report', 'compliance', '--dev', '--data-dir', dir, '--format', 'json'])
    expect(res.status).toBe(0)
    const report = JSON.parse(res.stdout) as { controls: { id: string; verdict: string; findings: string[] }[]; chainHead: { seq: number } }
    const verdict = (id: string) => report.controls.find((c) => c.id === id)?.verdict
    expect(verdict('NHI7')).toBe('fail')
    expect(verdict('NHI1')).toBe('fail')
    expect(verdict('PR.AA-05')).toBe('fail')
    expect(verdict('PR.PS-04')).toBe('pass')
    expect(typeof report.chainHead.seq).toBe('number')
  })

  it('writes the printable HTML page to --out and summarises on stderr', () => {
    const out = join(dir, 'report.html')
    const res = run(['report', 'compliance', '--dev', '--data-dir', dir, '--out', out])
    expect(res.status).toBe(0)
    expect(res.stderr).toMatch(/report\.html: \d+ pass, \d+ warn, \d+ fail \(audit head seq \d+\)/)
    const html = readFileSync(out, 'utf8')
    expect(html).toMatch(/^<!doctype html>/)
    expect(html).toContain('<section id="NHI7">')
  })

  it('says in one line, without a stack, that --out cannot be written', () => {
    const out = join(dir, 'no-such-dir', 'report.html')
    const res = run(['report', 'compliance', '--dev', '--data-dir', dir, '--out', out])
    expect(res.status).toBe(1)
    expect(res.stderr).toBe(`devicegate: --out: cannot write ${out} (ENOENT)\n`)
  })

  it('refuses a bad --since with a message, not a stack', () => {
    const res = run(['report', 'compliance', '--dev', '--data-dir', dir, '--since', 'yesterday'])
    expect(res.status).not.toBe(0)
    expect(res.stderr).toContain('ISO 8601')
    expect(res.stderr).not.toContain('    at ')
  })
})
