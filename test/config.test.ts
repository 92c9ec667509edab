/**
 * Configuration is validated once at start-up, and an invalid file stops it with a message that
 * names the field and the problem (STYLE.md §7): `clients[0].access_token_ttl_seconds: …, got "1h"`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, loadConfigFile, parseConfig, resolveConfig } from '../src/config/load.js'

const dir = mkdtempSync(join(tmpdir(), 'devicegate-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function errorOf(input: unknown): string {
  try {
    parseConfig(input)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as Error).message
  }
  throw new Error('expected a ConfigError')
}

const HASH = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g'

describe('config validation names the field and the problem', () => {
  it.each([
    ['a token lifetime given as text', { clients: [{ client_id: 'app', access_token_ttl_seconds: '1h' }] }, /^clients\[0\]\.access_token_ttl_seconds: .+, got "1h"$/m],
    ['a token lifetime out of range', { clients: [{ client_id: 'app', access_token_ttl_seconds: 5 }] }, /^clients\[0\]\.access_token_ttl_seconds: .*60.*, got 5$/m],
    ['a device-code lifetime out of range', { clients: [{ client_id: 'a' }, { client_id: 'b', device_code_ttl_seconds: 7200 }] }, /^clients\[1\]\.device_code_ttl_seconds: .*1800.*, got 7200$/m],
    ['an unknown grant type', { clients: [{ client_id: 'app', grant_types: ['password'] }] }, /^clients\[0\]\.grant_types\[0\]: .*, got "password"$/m],
    ['a confidential client without a secret', { clients: [{ client_id: 'app', type: 'confidential' }] }, /^clients\[0\]\.client_secret_hash: a confidential client needs client_secret_hash or client_secret_env$/m],
    ['a public client with a secret', { clients: [{ client_id: 'app', client_secret_hash: HASH }] }, /^clients\[0\]\.client_secret_hash: a public client has no secret/m],
    ['client_credentials on a public client', { clients: [{ client_id: 'app', grant_types: ['client_credentials'] }] }, /^clients\[0\]\.grant_types: client_credentials requires a confidential client/m],
    ['a default scope the client may not request', { clients: [{ client_id: 'app', scopes: ['read'], default_scopes: ['write'] }] }, /^clients\[0\]\.default_scopes\[0\]: "write" is not in scopes/m],
    ['a scope token with a space', { clients: [{ client_id: 'app', scopes: ['read write'] }] }, /^clients\[0\]\.scopes\[0\]: a scope token is printable ASCII/m],
    ['a duplicate client_id', { clients: [{ client_id: 'app' }, { client_id: 'app' }] }, /^clients\[1\]\.client_id: duplicate client_id "app"/m],
    ['an unknown client option (typo)', { clients: [{ client_id: 'app', acces_token_ttl_seconds: 600 }] }, /^clients\[0\]: .*acces_token_ttl_seconds/m],
    ['an issuer with a query', { issuer: 'https://auth.example.com/?tenant=1' }, /^issuer: an issuer has no query or fragment \(RFC 8414 §2\)/m],
    ['a port out of range', { listen: { port: 70000 } }, /^listen\.port: .*, got 70000$/m],
    ['an ephemeral store that is not Redis', { storage: { ephemeral: { url: 'memcached://127.0.0.1' } } }, /^storage\.ephemeral\.url: a redis:\/\/ or rediss:\/\/ URL/m],
    ['a trusted proxy that is a host name', { trusted_proxies: ['proxy.internal'] }, /^trusted_proxies\[0\]: expected an IP address or CIDR/m],
    ['a user without a password', { users: [{ username: 'alice' }] }, /^users\[0\]\.password_hash: needs password_hash or password_env$/m],
    ['a bad log level', { log_level: 'loud' }, /^log_level: .*, got "loud"$/m],
  ])('%s', (_name, input, message) => {
    const text = errorOf(input)
    expect(text).toMatch(/^invalid configuration:\n/)
    expect(text).toMatch(message)
  })

  it('reports every bad field at once, one per line', () => {
    const text = errorOf({ listen: { port: -1 }, clients: [{ client_id: 'app', access_token_ttl_seconds: '1h', poll_interval_seconds: 0 }] })
    expect(text.split('\n').slice(1)).toHaveLength(3)
  })

  it('accepts a minimal file and fills the documented defaults', () => {
    const file = parseConfig({ clients: [{ client_id: 'app', scopes: ['read', 'offline_access'] }] })
    expect(file.listen).toEqual({ host: '127.0.0.1', port: 8080, request_timeout_seconds: 30, shutdown_deadline_seconds: 10 })
    expect(file.clients[0]).toMatchObject({
      type: 'public',
      access_token_format: 'jwt',
      access_token_ttl_seconds: 600,
      device_code_ttl_seconds: 600,
      poll_interval_seconds: 5,
      refresh_token_issuance: 'offline_access',
    })
  })

  it('names a missing secret environment variable at resolve time, never its value', async () => {
    const file = parseConfig({ clients: [{ client_id: 'app', type: 'confidential', client_secret_env: 'APP_SECRET' }] })
    await expect(resolveConfig(file, {}, {})).rejects.toThrow(/^clients\[0\]\.client_secret_env: environment variable APP_SECRET is not set$/)
    const resolved = await resolveConfig(file, {}, { APP_SECRET: 's3cret-value' })
    expect(resolved.clients[0]!.secretHash).toMatch(/^\$argon2id\$/)
    expect(JSON.stringify(resolved)).not.toContain('s3cret-value')
    expect(Object.isFrozen(resolved)).toBe(true)
  })

  it('puts poll times and DPoP jtis in Redis only for PostgreSQL storage (storage.ephemeral)', async () => {
    const redis = { ephemeral: { url: 'redis://127.0.0.1:6379/2' } }
    const pg = await resolveConfig(parseConfig({ storage: { url: 'postgres://db.internal/devicegate', ...redis } }), {}, {})
    expect(pg.storageEphemeral).toEqual({ kind: 'redis', url: 'redis://127.0.0.1:6379/2', keyPrefix: 'devicegate:' })
    expect((await resolveConfig(parseConfig({ storage: { url: 'postgres://db.internal/devicegate' } }), {}, {})).storageEphemeral).toBeUndefined()
    await expect(resolveConfig(parseConfig({ storage: { url: `sqlite:${join(dir, 'x.db')}`, ...redis } }), {}, {})).rejects.toThrow(
      /^storage\.ephemeral: only PostgreSQL storage/,
    )
  })

  it('refuses an invalid --issuer override by name', async () => {
    await expect(resolveConfig(parseConfig({}), { issuer: 'https://auth.example.com/#frag' })).rejects.toThrow(/^--issuer: /)
  })

  it('reads YAML files and names the file when it is not YAML or not there', async () => {
    const bad = join(dir, 'bad.yaml')
    writeFileSync(bad, 'clients: [\n')
    await expect(loadConfigFile(bad)).rejects.toThrow(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid YAML`))
    await expect(loadConfigFile(join(dir, 'missing.yaml'))).rejects.toThrow(/^cannot read configuration file .*missing\.yaml/)
    const good = join(dir, 'good.yaml')
    writeFileSync(good, 'clients:\n  - client_id: app\n    access_token_ttl_seconds: "1h"\n')
    await expect(loadConfigFile(good)).rejects.toThrow(/clients\[0\]\.access_token_ttl_seconds: .*got "1h"/)
  })
})
