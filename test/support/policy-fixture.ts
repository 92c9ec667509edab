/**
 * Test support for conditional approval: a server with risk-tiered clients, users with groups,
 * risk and TOTP, a policy file in a temporary directory, 127.0.0.1 as trusted proxy (so tests set
 * each side's address with X-Forwarded-For) and a fake IP database.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hash } from '@node-rs/argon2'
import { generate } from 'otplib'
import { parseConfig } from '../../src/config/load.js'
import { createStaticGeoLookup } from '../../src/policy/geo.js'
import { PageSession, startTestServer, type TestServer } from './server.js'

export const PASSWORD = 'correct horse battery staple'
export const TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'

/** Berlin home network, a US network, and a third DE network of another provider. */
export const NET = {
  home: '198.51.100.10',
  homePhone: '198.51.100.77',
  abroad: '203.0.113.9',
} as const

export const FAKE_GEO = createStaticGeoLookup([
  { cidr: '198.51.100.0/24', country: 'DE', asn: 3320, asOrg: 'Deutsche Telekom' },
  { cidr: '203.0.113.0/24', country: 'US', asn: 7922, asOrg: 'Comcast' },
])

export const TEST_POLICY_YAML = `
version: 1
clients:
  kiosk-cli: { profile: kiosk }
  shared-cli: { profile: shared_device }
rules:
  - name: tight-cli
    when: { clients: [cli] }
    effect: allow
    constraints: { access_token_ttl_seconds: 120, scopes: [read, offline_access], max_session_seconds: 1800 }
  - name: risky-users
    when: { user_risk: { min: 70 } }
    effect: deny
    reason: user_risk_too_high
    message: Your account is under review by the security team.
  - name: dpop-cli-bound
    when: { clients: [dpop-cli] }
    effect: allow
    constraints: { dpop: true }
`

export interface PolicyTestServer extends TestServer {
  policyPath: string
  /** Rewrites the policy file and reloads it (as the file watcher or SIGHUP would). */
  setPolicy(yaml: string): Promise<void>
  /** Current TOTP code for the fixture secret. */
  totp(): Promise<string>
}

/** Starts the server; `carol` has risk 90, `alice` has TOTP enrolled, `bob` has none. */
export async function startPolicyServer(policyYaml = TEST_POLICY_YAML): Promise<PolicyTestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-policy-'))
  const policyPath = join(dir, 'policy.yaml')
  writeFileSync(policyPath, policyYaml)
  const h = await hash(PASSWORD)
  const device = ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']
  const rsSecret = await hash('rs-secret-0123456789abcdef')
  const config = parseConfig({
    trusted_proxies: ['127.0.0.1'],
    policy: { file: policyPath, watch: false },
    scopes: { read: 'Read your data', write: 'Change your data', admin: 'Administer everything', offline_access: 'Stay signed in' },
    clients: [
      { client_id: 'cli', name: 'Test CLI', grant_types: device, scopes: ['read', 'write', 'offline_access'] },
      { client_id: 'deploy-cli', name: 'Deploy CLI', risk_tier: 'high', grant_types: device, scopes: ['deploy', 'offline_access'] },
      { client_id: 'admin-cli', name: 'Admin Console', risk_tier: 'admin', grant_types: device, scopes: ['admin'] },
      { client_id: 'kiosk-cli', name: 'Kiosk', grant_types: device, scopes: ['read', 'offline_access'] },
      { client_id: 'shared-cli', name: 'Shared TV', grant_types: device, scopes: ['read', 'offline_access'] },
      { client_id: 'dpop-cli', name: 'DPoP CLI', grant_types: device, scopes: ['read'] },
      { client_id: 'rs', name: 'Resource Server', type: 'confidential', client_secret_hash: rsSecret, grant_types: ['client_credentials'], scopes: ['read'], introspection: true },
    ],
    users: [
      { username: 'alice', display_name: 'Alice', password_hash: h, groups: ['staff'] },
      { username: 'bob', display_name: 'Bob', password_hash: h },
      { username: 'carol', display_name: 'Carol', password_hash: h, risk: 90 },
    ],
    log_level: 'silent',
  })
  const t = await startTestServer({ config, geo: FAKE_GEO })
  await t.server.store.saveTotpSecret('alice', TOTP_SECRET, t.clock.nowSeconds())
  return {
    ...t,
    policyPath,
    async setPolicy(yaml) {
      writeFileSync(policyPath, yaml)
      if (!(await t.server.policyHolder.reload())) throw new Error('policy reload failed')
    },
    totp: () => generate({ secret: TOTP_SECRET, epoch: t.clock.nowSeconds() }),
    async close() {
      await t.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A browser-like page session whose requests come from `ip` (X-Forwarded-For via the trusted proxy). */
export class Approver extends PageSession {
  constructor(
    baseUrl: string,
    readonly ip: string,
  ) {
    super(baseUrl, baseUrl, { 'x-forwarded-for': ip })
  }

  /** Signs in with the fixture password. */
  override signIn(username: string, password: string = PASSWORD): Promise<void> {
    return super.signIn(username, password)
  }

  /** Enters the code (typed) and returns the review page. */
  review(userCode: string) {
    return this.post('/device', { user_code: userCode })
  }
}

/** Starts a device authorization from `ip`. */
export async function startDeviceFlow(baseUrl: string, clientId: string, scope: string, ip: string, extra: Record<string, string> = {}) {
  const res = await fetch(`${baseUrl}/device_authorization`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip },
    body: new URLSearchParams({ client_id: clientId, scope, ...extra }).toString(),
  })
  return { status: res.status, json: (await res.json()) as Record<string, any> }
}
