// devicegate started from a generated YAML configuration (not --dev): a console admin with
// password + TOTP, a few device-flow clients, and a confidential client with the `scim` scope
// that may introspect. Used by bench/console.mjs and bench/identity.mjs.
import { createRequire } from 'node:module'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, findSqliteFile } from './targets.mjs'
import { freePort, startProcess, stopProcess } from './proc.mjs'

const requireFromRoot = createRequire(join(ROOT, 'package.json'))
const HOST = '127.0.0.1'

export const ADMIN = 'ada'
export const ADMIN_PASSWORD = 'bench-admin-password-0123456789'
export const PROVISIONER_SECRET = 'bench-provisioner-secret-0123456789'
export const DEVICE_CLIENTS = ['cli', 'deploy-cli', 'ops-cli']

/**
 * Writes config.yaml for a fresh data dir in runDir; returns { configFile, dataDir }.
 * @param extra.clients more clients; extra.users more people; extra.scopes more scopes; extra.identity / extra.signals /
 *   extra.governance: sections merged over the defaults (one level deep).
 */
export async function writeConfig(runDir, tag, { storageUrl, extra = {} } = {}) {
  const { hash } = requireFromRoot('@node-rs/argon2')
  const dataDir = mkdtempSync(join(runDir, `data-${tag}-`))
  const device = ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']
  const config = {
    data_dir: dataDir,
    ...(storageUrl ? { storage: { url: storageUrl } } : {}),
    log_level: 'warn',
    scopes: { read: 'Read your data', offline_access: 'Stay signed in', scim: 'SCIM provisioning', ...extra.scopes },
    clients: [
      ...DEVICE_CLIENTS.map((id, i) => ({ client_id: id, name: `Bench ${id}`, type: 'public', grant_types: device, scopes: ['read', 'offline_access'], ...(i === 1 ? { risk_tier: 'low' } : {}) })),
      { client_id: 'provisioner', name: 'Provisioner', type: 'confidential', client_secret_hash: await hash(PROVISIONER_SECRET), grant_types: ['client_credentials'], scopes: ['scim', 'read'], access_token_format: 'opaque', introspection: true },
      ...(extra.clients ?? []),
    ],
    users: [{ username: ADMIN, display_name: 'Ada Admin', password_hash: await hash(ADMIN_PASSWORD), groups: ['identity-admins'] }, ...(extra.users ?? [])],
    console: { roles: { admin: { groups: ['identity-admins'] } }, session_ttl_seconds: 43_200 },
    identity: { scim: { enabled: true }, ...extra.identity },
    ...(extra.signals ? { signals: extra.signals } : {}),
    ...(extra.governance ? { governance: extra.governance } : {}),
  }
  const configFile = join(runDir, `config-${tag}.json.yaml`)
  writeFileSync(configFile, JSON.stringify(config, null, 2)) // JSON is YAML
  return { configFile, dataDir }
}

/** Starts `bin/devicegate.js serve -c configFile` on a free port (with `env` added); returns { origin, pid, stop }. */
export async function startConfigured(runDir, tag, configFile, env = {}) {
  const port = await freePort(HOST)
  const origin = `http://${HOST}:${port}`
  const child = await startProcess({
    cmd: process.execPath,
    args: ['bin/devicegate.js', 'serve', '-c', configFile, '--host', HOST, '--port', String(port), '--issuer', origin],
    cwd: ROOT,
    env,
    logFile: join(runDir, `devicegate-${tag}.log`),
    readyUrl: `${origin}/.well-known/oauth-authorization-server`,
  })
  return { origin, pid: child.pid, stop: () => stopProcess(child) }
}

/** Starts and stops the server once so the schema exists; returns the SQLite file (SQLite only). */
export async function createSchema(runDir, tag, configFile, dataDir) {
  const inst = await startConfigured(runDir, `${tag}-schema`, configFile)
  await inst.stop()
  return findSqliteFile(dataDir)
}

/** `devicegate users enroll-totp ADMIN` through the CLI; returns the base32 secret. */
export function enrollAdminTotp(configFile) {
  const out = execFileSync(process.execPath, ['bin/devicegate.js', 'users', 'enroll-totp', ADMIN, '-c', configFile], { cwd: ROOT, encoding: 'utf8' })
  const m = /secret=([A-Z2-7]+)/.exec(out)
  if (!m) throw new Error(`enroll-totp printed no secret:\n${out.replace(/secret[^\s&]*/g, '…')}`)
  return m[1]
}

export function totpNow(secret) {
  const { generate } = requireFromRoot('otplib')
  return generate({ secret })
}

export function percentile(sorted, p) {
  if (!sorted.length) return null
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}
