/**
 * People from the command line: `devicegate users list|show|disable|enable|set-password` on
 * the stored people (dist/ is rebuilt here when a source file is newer, as in cli-serve.test.ts).
 * A password change revokes every grant of the person (RFC 6819 §5.2.2.4) and is audited.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureBuilt } from './support/cli.js'
import { stringify } from 'yaml'
import { openStore } from '../src/storage/index.js'

const ROOT = resolve(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin/devicegate.js')
let dir = ''
let configPath = ''

beforeAll(async () => {
  ensureBuilt()
  dir = mkdtempSync(join(tmpdir(), 'devicegate-people-cli-'))
  configPath = join(dir, 'devicegate.yaml')
  writeFileSync(
    configPath,
    stringify({
      issuer: 'http://127.0.0.1:8080',
      storage: { url: `sqlite:${join(dir, 'db.sqlite')}` },
      data_dir: dir,
      clients: [{ client_id: 'cli', scopes: ['read'] }],
      users: [
        { username: 'alice', display_name: 'Alice', password_hash: await hash('old password 123'), groups: ['eng'], risk: 10 },
        { username: 'bob', password_hash: await hash('bob password 123') },
      ],
      log_level: 'silent',
    }),
  )
}, 120_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function cli(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--config', configPath], { input: input ?? '', encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('devicegate users (stored people)', () => {
  it('lists the configured people with status, source, groups and risk', () => {
    const r = cli(['users', 'list'])
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('alice\talice\tactive\tconfig\teng\t10')
    expect(r.stdout).toContain('bob\tbob\tactive\tconfig\t-\t0')
  })

  it('shows one person as JSON; an unknown one exits non-zero', () => {
    const r = cli(['users', 'show', 'alice'])
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ id: 'alice', display_name: 'Alice', status: 'active', source: 'config', has_password: true })
    expect(cli(['users', 'show', 'nobody']).status).not.toBe(0)
  })

  it('disables and enables a person', () => {
    expect(cli(['users', 'disable', 'bob']).stdout).toContain('user bob disabled')
    expect(cli(['users', 'list', '--status', 'disabled']).stdout).toContain('bob')
    expect(cli(['users', 'enable', 'bob']).status).toBe(0)
    expect(cli(['users', 'list', '--status', 'disabled']).stdout).not.toContain('bob')
  })

  it('changes a password read from standard input, revoking the grants and auditing it; a short one is refused', async () => {
    expect(cli(['users', 'set-password', 'alice'], 'short\n').status).not.toBe(0)
    const r = cli(['users', 'set-password', 'alice'], 'a much longer new password\n')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('password of alice changed')
    const store = await openStore(`sqlite:${join(dir, 'db.sqlite')}`)
    try {
      const alice = await store.findPerson('alice')
      expect(alice?.passwordChangedAt).toBeTypeOf('number')
      const events = await store.listAuditEvents({ limit: 1000 })
      const changed = events.filter((e) => e.type === 'person.password_changed')
      expect(changed).toHaveLength(1)
      expect(changed[0]!.actor).toMatch(/^cli/)
      expect(JSON.stringify(changed)).not.toContain('much longer')
    } finally {
      await store.close()
    }
  })
})
