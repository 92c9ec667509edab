/**
 * What a newcomer trips on in the `devicegate` command.
 * - `--version` prints the package version;
 * - `login` takes the issuer (and client) from DEVICEGATE_ISSUER / DEVICEGATE_CLIENT_ID, and a
 *   later login reuses the last one; `whoami` lists the stored profiles;
 * - the CLI sends `User-Agent: devicegate-cli/<v> devicegate-client/<v> (<platform>; <arch>) node/<v>`, so the server
 *   records the tool rather than "node";
 * - the keyring fallback note is printed once per store, not on every login;
 * - governance commands find the configuration as the README prints them (no --config):
 *   DEVICEGATE_CONFIG, else ./devicegate.yaml; `tokens list` has a header row;
 * - a command that only reads refuses a data directory that does not exist instead of creating it
 *   with an empty database (a mistyped --data-dir made `audit verify` say `ok: 0 records`).
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatTokenTable } from '../src/cli/governance.js'
import { approveAs, startTestServer, type TestServer } from './support/server.js'
import { BIN, ensureBuilt, ROOT, runCli } from './support/cli.js'

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
const dirs: string[] = []
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'devicegate-cli-use-'))
  dirs.push(d)
  return d
}
beforeAll(() => ensureBuilt(), 120_000)
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe('devicegate --version', () => {
  it('prints the package version', () => {
    const res = runCli(['--version'])
    expect(res.status).toBe(0)
    expect(res.stdout).toBe(`${VERSION}\n`)
  })
})

describe('login defaults, profiles and User-Agent', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer()
  })
  afterAll(async () => t?.close())

  /** Runs `devicegate login …` and approves the code it shows as alice. */
  async function loginApproved(args: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
    const child = spawn(process.execPath, [BIN, 'login', '--store', 'file', '--no-qr', ...args], { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)))
    const deadline = Date.now() + 20_000
    let userCode: string | undefined
    while (userCode === undefined) {
      userCode = /enter the code:\s+(\S+)/.exec(stderr)?.[1]
      if (userCode === undefined && (child.exitCode !== null || Date.now() > deadline)) return { code: await exited, stderr }
      await new Promise((r) => setTimeout(r, 50))
    }
    await approveAs(t.url, userCode)
    return { code: await exited, stderr }
  }

  it('logs in with DEVICEGATE_ISSUER, reuses the last login, lists profiles, and names itself in User-Agent', async () => {
    const home = tempDir()
    const env = { XDG_CONFIG_HOME: home, DEVICEGATE_ISSUER: t.url, DEVICEGATE_CLIENT_ID: 'cli' }
    const first = await loginApproved([], env)
    expect(first.stderr).toContain(`Logged in to ${t.issuer} as alice.`)
    expect(first.code).toBe(0)
    const items = (await t.server.store.listGrantSummaries({ subject: 'alice' }, { limit: 10 })) as Array<{ requestUserAgent: string | null }>
    expect(items[0]!.requestUserAgent).toBe(`devicegate-cli/${VERSION} devicegate-client/${VERSION} (${process.platform}; ${process.arch}) node/${process.versions.node}`)

    // No flags and no variables: the last login's issuer and client.
    const second = await loginApproved(['--profile', 'work'], { XDG_CONFIG_HOME: home })
    expect(second.code).toBe(0)
    expect(second.stderr).toContain(`Logged in to ${t.issuer} as alice.`)

    const who = runCli(['whoami', '--store', 'file'], { env: { XDG_CONFIG_HOME: home } })
    expect(who.status).toBe(0)
    expect(who.stdout).toMatch(/^profiles: +default \(this one\), work$/m)
    const missing = runCli(['whoami', '--store', 'file', '--profile', 'nope'], { env: { XDG_CONFIG_HOME: home } })
    expect(missing.status).toBe(1)
    expect(missing.stderr).toContain('profile "nope" is not logged in; stored profiles: default, work')
  }, 90_000)

  it('refuses a first login without an issuer, naming the flag and the variable', () => {
    const res = runCli(['login', '--store', 'file', '--client-id', 'cli'], { env: { XDG_CONFIG_HOME: tempDir(), DEVICEGATE_ISSUER: undefined } })
    expect(res.status).toBe(1)
    expect(res.stderr).toBe('devicegate: no issuer: pass --issuer URL or set DEVICEGATE_ISSUER (later logins reuse the last one)\n')
  })
})

describe('governance commands find the configuration as the README prints them', () => {
  let dir: string
  beforeAll(() => {
    dir = tempDir()
    writeFileSync(join(dir, 'devicegate.yaml'), `data_dir: ${JSON.stringify(join(dir, 'data'))}\nlog_level: silent\n`)
    // As after `devicegate serve` (or `migrate`): a read-only command never creates the data directory.
    mkdirSync(join(dir, 'data'))
  })

  it('reads ./devicegate.yaml without --config, and prints a header row in tokens list', () => {
    const res = runCli(['tokens', 'list'], { cwd: dir })
    expect(res.stderr).toBe('')
    expect(res.status).toBe(0)
    expect(res.stdout).toMatch(/^GRANT +STATUS +SUBJECT +CLIENT +CREATED +REQUEST FROM +APPROVAL FROM +LAST USE +LAST USE FROM +SCOPE\n\(no token families\)\n$/)
  })

  it('reads DEVICEGATE_CONFIG from anywhere', () => {
    const res = runCli(['tokens', 'list'], { cwd: tmpdir(), env: { DEVICEGATE_CONFIG: join(dir, 'devicegate.yaml') } })
    expect(res.status).toBe(0)
    expect(res.stdout.split('\n')[0]).toMatch(/^GRANT/)
  })

  it('says where it looked when there is no configuration', () => {
    const res = runCli(['tokens', 'list'], { cwd: tempDir() })
    expect(res.status).toBe(1)
    expect(res.stderr).toBe('devicegate: give --config <file> or --dev (or set DEVICEGATE_CONFIG, or run where devicegate.yaml is)\n')
  })

  it('aligns the table columns under the header', () => {
    const table = formatTokenTable([
      { grant_id: 'g_1', status: 'active', subject: 'alice', client_id: 'cli', created_at: 0, device_authorization: null, last_used_at: null, last_used_ip: null, scope: 'read' } as never,
    ])
    const [header, row] = table.split('\n')
    expect(row!.indexOf('alice')).toBe(header!.indexOf('SUBJECT'))
    expect(row!.indexOf('read')).toBe(header!.indexOf('SCOPE'))
  })
})

describe('read-only commands refuse a data directory that does not exist', () => {
  const READ_ONLY: string[][] = [
    ['audit', 'verify'],
    ['audit', 'export'],
    ['users', 'list'],
    ['users', 'show', 'alice'],
    ['tokens', 'list'],
    ['flows', 'list'],
    ['report', 'compliance', '--format', 'json'],
    ['devices', 'list'],
    ['devices', 'grants', 'x'.repeat(43)],
    ['keys', 'list'],
  ]
  for (const command of READ_ONLY) {
    it(`${command.slice(0, 2).join(' ')}: one line on stderr, exit 1, and the directory is not created`, () => {
      const missing = join(tempDir(), 'typo', 'x')
      const res = runCli([...command, '--dev', '--data-dir', missing])
      expect(res.status).toBe(1)
      expect(res.stdout).toBe('')
      expect(res.stderr).toBe(`devicegate: data directory ${missing} does not exist; this command only reads and creates nothing (check --data-dir, data_dir or storage.url)\n`)
      expect(existsSync(join(missing, '..'))).toBe(false)
    })
  }

  it('migrate (a command that writes) still creates it', () => {
    const missing = join(tempDir(), 'new', 'x')
    const res = runCli(['migrate', '--dev', '--data-dir', missing])
    expect(res.status).toBe(0)
    expect(existsSync(join(missing, 'devicegate.db'))).toBe(true)
  })
})

describe('usage errors and empty listings', () => {
  it('tokens list and flows list refuse a --limit outside 1–1000, as their help says: exit 2 naming the range', () => {
    const dir = tempDir()
    for (const args of [['tokens', 'list', '--limit', '0'], ['tokens', 'list', '--limit', '1001'], ['tokens', 'list', '--limit', 'abc'], ['flows', 'list', '--limit', '0']]) {
      const res = runCli([...args, '--dev', '--data-dir', dir])
      expect(res.status, args.join(' ')).toBe(2)
      expect(res.stderr, args.join(' ')).toContain(`error: option '--limit <n>' argument '${args[3]}' is invalid. expected an integer from 1 to 1000`)
      expect(res.stdout).toBe('')
    }
  })

  it('geo refuses an argument that is not an IP address (exit 2) instead of printing "country unknown"', () => {
    const res = runCli(['geo', '8.8.8.8', 'notanip', '--dev', '--data-dir', tempDir()])
    expect(res.status).toBe(2)
    expect(res.stderr).toBe('devicegate: "notanip" is not an IPv4 or IPv6 address\n')
    expect(res.stdout).toBe('')
  })

  it('devices list says there are none; --json still prints []', () => {
    const dir = tempDir()
    const text = runCli(['devices', 'list', '--dev', '--data-dir', dir])
    expect(text.status).toBe(0)
    expect(text.stdout).toBe('(no trusted devices; --all includes retired ones)\n')
    const all = runCli(['devices', 'list', '--all', '--dev', '--data-dir', dir])
    expect(all.stdout).toBe('(no devices)\n')
    const json = runCli(['devices', 'list', '--json', '--dev', '--data-dir', dir])
    expect(json.status).toBe(0)
    expect(json.stdout).toBe('[]\n')
  })
})
