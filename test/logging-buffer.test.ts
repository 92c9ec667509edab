/**
 * Log lines on stdout are buffered (issue 17: a write system call per access line): written once
 * 12 KiB are waiting or 100 ms have passed, and all of them on exit. What `kill -9` may lose is
 * bounded by those two numbers (README "Logs").
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { LOG_BUFFER_BYTES, LOG_FLUSH_MS } from '../src/server.js'
import { ensureBuilt, ROOT } from './support/cli.js'

const SERVER = pathToFileURL(join(ROOT, 'dist/server.js')).href

/** Runs `body` in a node process with `log = createLogger('info')`; returns its stdout lines and when each arrived (ms from start). */
function run(body: string): Promise<{ lines: { msg: string; atMs: number }[]; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', `const { createLogger } = await import(${JSON.stringify(SERVER)}); const log = createLogger('info'); ${body}`])
    const started = Date.now()
    const lines: { msg: string; atMs: number }[] = []
    let partial = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      const parts = (partial + d.toString('utf8')).split('\n')
      partial = parts.pop()!
      for (const p of parts) lines.push({ msg: JSON.parse(p).msg, atMs: Date.now() - started })
    })
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')))
    child.on('close', (code) => resolve({ lines, stderr, code }))
  })
}

describe('buffered stdout logs', () => {
  beforeAll(() => ensureBuilt(), 120_000)

  it('bounds the buffer at 12 KiB and 100 ms', () => {
    expect(LOG_BUFFER_BYTES).toBe(12 * 1024)
    expect(LOG_FLUSH_MS).toBe(100)
  })

  it('writes a lone line within the flush interval while the process keeps running', async () => {
    // One short line never fills the buffer: only the timed flush can write it before the exit.
    const { lines, code } = await run(`log.info('lone'); setTimeout(() => { log.info('late'); process.exit(0) }, 1500)`)
    expect(code).toBe(0)
    expect(lines.map((l) => l.msg)).toEqual(['lone', 'late'])
    expect(lines[0]!.atMs).toBeLessThan(lines[1]!.atMs - 500)
  })

  it('writes every pending line when the process exits right after logging', async () => {
    const { lines, code } = await run(`for (let i = 0; i < 300; i++) log.info('line ' + i); process.exit(0)`)
    expect(code).toBe(0)
    expect(lines.map((l) => l.msg)).toEqual(Array.from({ length: 300 }, (_, i) => `line ${i}`))
  })

  it('writes every pending line when the process dies of an uncaught exception', async () => {
    const { lines, code, stderr } = await run(`log.info('before'); setTimeout(() => { throw new Error('crash') }, 10)`)
    expect(code).not.toBe(0)
    expect(stderr).toContain('crash')
    expect(lines.map((l) => l.msg)).toEqual(['before'])
  })
})
