/**
 * Commands that verify no secret (`policy explain`, `keys`, governance commands,
 * `check-config`) resolve the configuration without hashing every `*_env` secret with argon2id
 * (1.4 s a call before), yet still fail on a variable that is not set; `serve` hashes them.
 */
import { argon2Verify } from './support/argon2.js'
import { describe, expect, it } from 'vitest'
import { ConfigError, parseConfig, resolveConfig, UNHASHED_SECRET } from '../src/config/load.js'

const file = parseConfig({
  clients: [{ client_id: 'api', type: 'confidential', client_secret_env: 'API_SECRET', grant_types: ['client_credentials'] }],
  users: [{ username: 'alice', password_env: 'ALICE_PASSWORD' }],
})
const env = { API_SECRET: 'api-secret-0123456789', ALICE_PASSWORD: 'alice password' }

describe('resolving secrets only where they are verified', () => {
  it('checks but does not hash with secrets: check, and the stand-in never verifies', async () => {
    const config = await resolveConfig(file, {}, env, { secrets: 'check' })
    expect(config.clients[0]!.secretHash).toBe(UNHASHED_SECRET)
    expect(config.users[0]!.passwordHash).toBe(UNHASHED_SECRET)
    expect(await argon2Verify(UNHASHED_SECRET, env.ALICE_PASSWORD)).toBe(false)
    await expect(resolveConfig(file, {}, { API_SECRET: 'x' }, { secrets: 'check' })).rejects.toThrow(ConfigError)
    await expect(resolveConfig(file, {}, { API_SECRET: 'x' }, { secrets: 'check' })).rejects.toThrow('users[0].password_env: environment variable ALICE_PASSWORD is not set')
  })

  it('hashes with argon2id by default (serve)', async () => {
    const config = await resolveConfig(file, {}, env)
    expect(config.users[0]!.passwordHash).toMatch(/^\$argon2id\$/)
    expect(await argon2Verify(config.users[0]!.passwordHash, env.ALICE_PASSWORD)).toBe(true)
  })
})
