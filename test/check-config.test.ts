/**
 * `devicegate check-config FILE` fails exactly where `devicegate serve --config FILE`
 * would — a missing environment variable, an unreadable or too open key file, an unreadable
 * policy file — with the same one-line message, and writes nothing.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureBuilt, runCli } from './support/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'devicegate-check-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
beforeAll(() => ensureBuilt(), 120_000)

function configFile(name: string, yaml: string): string {
  const file = join(dir, `${name}.yaml`)
  writeFileSync(file, `data_dir: ${JSON.stringify(join(dir, name))}\nlog_level: silent\n${yaml}`)
  return file
}

const kekFile = join(dir, 'open.kek')
writeFileSync(kekFile, randomBytes(32).toString('base64url'))
chmodSync(kekFile, 0o644)

const CASES: Array<[string, string, string]> = [
  [
    'a client secret variable that is not set',
    `clients:\n  - client_id: api\n    type: confidential\n    client_secret_env: CHECK_CONFIG_UNSET_SECRET\n    grant_types: [client_credentials]\n`,
    'devicegate: clients[0].client_secret_env: environment variable CHECK_CONFIG_UNSET_SECRET is not set\n',
  ],
  [
    'an audit checkpoint key variable that is not set',
    `governance:\n  audit:\n    checkpoint_key_env: CHECK_CONFIG_UNSET_AUDIT\n`,
    'devicegate: governance.audit.checkpoint_key_env: environment variable CHECK_CONFIG_UNSET_AUDIT must hold at least 32 characters\n',
  ],
  [
    'a key-encryption key file readable by others',
    `signing:\n  kek_file: ${JSON.stringify(kekFile)}\n`,
    `devicegate: signing.kek_file: refusing to start: key-encryption key file ${kekFile} is accessible by group or others (mode 0644); run chmod 600 ${kekFile}\n`,
  ],
  [
    'a missing key-encryption key file',
    `signing:\n  kek_file: ${JSON.stringify(join(dir, 'missing.kek'))}\n`,
    `devicegate: signing.kek_file: cannot read key-encryption key file ${join(dir, 'missing.kek')}: ENOENT\n`,
  ],
  [
    'a missing policy file',
    `policy:\n  file: ${JSON.stringify(join(dir, 'missing-policy.yaml'))}\n`,
    `devicegate: policy.file: cannot read policy file ${join(dir, 'missing-policy.yaml')}: ENOENT: no such file or directory, open '${join(dir, 'missing-policy.yaml')}'\n`,
  ],
]

describe('check-config fails where serve would', () => {
  it.each(CASES)('%s: both exit 1 with the same message', (name, yaml, message) => {
    const file = configFile(name.replace(/\W+/g, '-'), yaml)
    const check = runCli(['check-config', file])
    expect(check.status).toBe(1)
    expect(check.stderr).toBe(message)
    const serve = runCli(['serve', '--config', file, '--host', '127.0.0.1', '--port', '0'])
    expect(serve.status).toBe(1)
    expect(serve.stderr).toBe(message)
  })

  it('passes a good file, notes the KEK that would be generated, and writes nothing', () => {
    const file = configFile('good', '')
    const check = runCli(['check-config', file])
    expect(check.stderr).toBe('')
    expect(check.status).toBe(0)
    expect(check.stdout).toContain('note: signing keys: sealed with a generated file')
    expect(check.stdout.endsWith(`${file}: ok\n`)).toBe(true)
    expect(existsSync(join(dir, 'good'))).toBe(false)
  })
})
