/**
 * The SDK's cross-process refresh lock (issue 16 item 10): one holder at a time, an abandoned lock
 * is taken over, a hung holder ends the wait with ERR_LOCKED.
 */
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { withFileLock } from '../src/client/refresh-lock.js'

const dir = mkdtempSync(join(tmpdir(), 'devicegate-lock-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('withFileLock', () => {
  it('runs one holder at a time and removes the lock afterwards; the file is private (0600)', async () => {
    const path = join(dir, 'a', 'one.lock')
    let inside = 0
    let maxInside = 0
    const work = () =>
      withFileLock(path, async () => {
        expect(statSync(path).mode & 0o777).toBe(0o600)
        inside++
        maxInside = Math.max(maxInside, inside)
        await new Promise((r) => setTimeout(r, 20))
        inside--
      })
    await Promise.all(Array.from({ length: 5 }, work))
    expect(maxInside).toBe(1)
    expect(existsSync(path)).toBe(false)
  })

  it('takes over a lock whose owner process is gone', async () => {
    const path = join(dir, 'dead.lock')
    writeFileSync(path, '999999999 0\n') // no such pid
    await expect(withFileLock(path, async () => 'ran', { timeoutMs: 500 })).resolves.toBe('ran')
  })

  it('takes over a lock older than staleMs even when its owner lives', async () => {
    const path = join(dir, 'old.lock')
    writeFileSync(path, `${process.pid} 0\n`)
    const old = new Date(Date.now() - 120_000)
    utimesSync(path, old, old)
    await expect(withFileLock(path, async () => 'ran', { timeoutMs: 500 })).resolves.toBe('ran')
  })

  it('gives up with ERR_LOCKED when a live holder keeps the lock past the timeout', async () => {
    const path = join(dir, 'held.lock')
    writeFileSync(path, `${process.pid} 0\n`)
    await expect(withFileLock(path, async () => 'ran', { timeoutMs: 200 })).rejects.toMatchObject({ code: 'ERR_LOCKED' })
  })
})
