/**
 * How database errors are sorted (src/storage/postgres.ts `classifyPostgresError`): an error the
 * client may retry later is `unavailable` (answered 503 `temporarily_unavailable` with
 * `Retry-After`), a unique violation is a `conflict`, anything else is left to the caller.
 */
import { describe, expect, it } from 'vitest'
import { classifyPostgresError } from '../src/storage/postgres.js'

const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code })

describe('classifyPostgresError', () => {
  it('treats a rolled-back transaction (serialization failure 40001, deadlock 40P01) as unavailable: nothing was written, a retry may succeed', () => {
    expect(classifyPostgresError(pgError('40001'))).toBe('unavailable')
    expect(classifyPostgresError(pgError('40P01'))).toBe('unavailable')
  })

  it('treats connection, shutdown, timeout and read-only errors as unavailable', () => {
    for (const code of ['08006', '28P01', '3D000', '53300', '57P01', '57014', '25006', 'ECONNREFUSED'])
      expect(classifyPostgresError(pgError(code)), code).toBe('unavailable')
  })

  it('sorts a unique violation (23505) as a conflict, and leaves data exceptions (22P05) and other codes to the caller', () => {
    expect(classifyPostgresError(pgError('23505'))).toBe('conflict')
    expect(classifyPostgresError(pgError('22P05'))).toBeUndefined()
    expect(classifyPostgresError(pgError('42601'))).toBeUndefined()
  })
})
