/**
 * `devicegate policy check FILE`, `devicegate policy explain …` and `devicegate users enroll-totp USER`.
 */
import { readFile } from 'node:fs/promises'
import { InvalidArgumentError, Option, type Command } from 'commander'
import { DECLARABLE_STORAGE_CLASSES, type StorageClass } from '../core/storage-class.js'
import { ConfigError, type Config } from '../config/load.js'
import { createClientDirectory } from '../protocol/clients.js'
import { loadPolicyFile, PolicyHolder } from '../policy/holder.js'
import { openGeoLookup } from '../policy/geo-csv.js'
import type { PolicyDecision, PostureFacts } from '../policy/model.js'
import { loadPostureVerifier } from '../policy/posture.js'
import { PolicyService } from '../policy/service.js'
import { openStore } from '../storage/index.js'
import { systemClock } from '../system.js'
import { newTotpSecret, totpUri } from '../verification/totp.js'
import { describeLocation } from '../web/templates/review.js'
import { createUserDirectory } from '../web/user-directory.js'
import { configFromOptions, exitWithError, withConfigOptions, type ConfigOptions } from './config-options.js'

function parseIp(value: string): string {
  if (!/^[0-9a-fA-F:.]+$/.test(value)) throw new InvalidArgumentError('expected an IP address')
  return value
}

function parseTime(value: string): number {
  const ms = Date.parse(value)
  if (Number.isNaN(ms)) throw new InvalidArgumentError('expected an ISO 8601 time, e.g. 2025-06-04T10:00:00Z')
  return Math.floor(ms / 1000)
}

interface ExplainOptions extends ConfigOptions {
  client: string
  user: string
  requestIp: string
  approveIp: string
  posture?: string
  policy?: string
  mfa?: boolean
  at?: number
  json?: boolean
  storage?: StorageClass
}

/** Builds the policy service `explain` uses: the configured policy (or `--policy`), IP database and posture key. */
async function explainService(config: Config, policyFile: string | undefined): Promise<PolicyService> {
  const file = policyFile ?? config.policy?.file
  const holder = file === undefined ? PolicyHolder.fixed() : PolicyHolder.fixed(await loadPolicyFile(file))
  return new PolicyService({
    source: holder,
    geo: await openGeoLookup(config.geo),
    posture: config.devicePosture ? await loadPostureVerifier(config.devicePosture) : undefined,
    users: createUserDirectory(config.users),
    clients: createClientDirectory(config.clients),
  })
}

/** The human-readable explanation `policy explain` prints. */
export function formatExplanation(d: PolicyDecision, source: string): string {
  const f = d.facts
  const u = f.user
  const c = d.constraints
  const lines = [
    `decision:    ${d.decision}`,
    `policy:      ${source} (${d.policyId})`,
    `client:      ${f.client.id} (tier ${f.client.tier}${d.profile ? `, profile ${d.profile}` : ''})`,
    `user:        ${u === null ? '-' : `${u.username} (groups: ${u.groups.join(', ') || 'none'}; risk ${u.risk}; ${u.disabled ? 'disabled' : 'active'}; MFA ${f.mfaDone ? 'done' : 'not done'})`}`,
    `request:     ${describeLocation(f.request)}`,
    `approver:    ${f.approver === null ? '-' : describeLocation(f.approver)}`,
    `proximity:   ${d.proximityMismatch.length === 0 ? 'same network' : `differs in ${d.proximityMismatch.join(', ')}`}${d.proximity.sameCountry === null || d.proximity.sameAsn === null ? ' (geo unknown for country or ASN)' : ''}`,
    `posture:     ${f.posture.status}${f.posture.error ? ` (${f.posture.error})` : ''}${f.posture.status === 'valid' ? ` managed=${f.posture.managed ?? '?'} disk_encrypted=${f.posture.diskEncrypted ?? '?'} os_patch_age_days=${f.posture.osPatchAgeDays ?? '?'}` : ''}`,
    `storage:     ${f.storage ?? 'unknown'} (declared by the client)`,
    `time:        ${new Date(f.now * 1000).toISOString()}`,
    'reasons:',
    ...d.reasons.flatMap((r) => [`  ${r.effect.padEnd(8)} ${r.code.padEnd(34)} ${r.rule}`, ...(r.message ? [`           "${r.message}"`] : [])]),
  ]
  if (d.decision === 'allow') {
    const parts = [
      `access token ${c.accessTokenTtlSeconds === null ? "client's TTL" : `≤ ${c.accessTokenTtlSeconds} s`}`,
      c.refreshAllowed ? `refresh allowed${c.refreshMaxLifetimeSeconds === null ? '' : ` ≤ ${c.refreshMaxLifetimeSeconds} s`}` : 'no refresh token',
      ...(c.scopes === null ? [] : [`scopes ≤ ${c.scopes.join(' ') || '(none)'}`]),
      ...(c.dpopRequired ? ['DPoP required'] : []),
      ...(c.maxSessionSeconds === null ? [] : [`session ≤ ${c.maxSessionSeconds} s`]),
      ...(c.singleSession ? ['one session per user'] : []),
    ]
    lines.push(`constraints: ${parts.join('; ')}`)
  }
  return lines.join('\n') + '\n'
}

/** Registers `policy check`, `policy explain` and `users enroll-totp`. */
export function registerPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('conditional-approval policies')
  policy
    .command('check <file>')
    .description('validate a policy file (exit status 1 with every problem named by its path)')
    .action(async (file: string) => {
      try {
        const compiled = await loadPolicyFile(file)
        process.stdout.write(`${file}: ok (${compiled.rules.length} rules incl. baseline, ${compiled.id})\n`)
      } catch (err) {
        process.stderr.write(`devicegate: ${(err as Error).message}\n`)
        process.exit(1)
      }
    })
  withConfigOptions(
    policy
      .command('explain')
      .description('print the decision for a request and why, without issuing anything')
      .requiredOption('--client <id>', 'client_id of the requesting app')
      .requiredOption('--user <username>', 'the approver')
      .requiredOption('--request-ip <ip>', 'address of the requesting device', parseIp)
      .requiredOption('--approve-ip <ip>', "address of the approver's browser", parseIp)
      .option('--posture <file>', 'file holding a device posture assertion (JWT)')
      .option('--policy <file>', 'policy file to use instead of the configured one')
      .option('--mfa', 'assume the approver completed MFA in this sign-in')
      .addOption(new Option('--storage <class>', 'token storage the client declares (storage_class)').choices([...DECLARABLE_STORAGE_CLASSES]))
      .option('--at <time>', 'evaluate at this ISO 8601 time (default: now)', parseTime)
      .option('--json', 'print the full decision as JSON'),
  ).action(async (opts: ExplainOptions) => {
    try {
      const { config } = await configFromOptions(opts)
      const client = config.clients.find((c) => c.id === opts.client)
      if (!client) throw new ConfigError(`--client: no client "${opts.client}" in the configuration`)
      const service = await explainService(config, opts.policy)
      const now = opts.at ?? systemClock.nowSeconds()
      let posture: PostureFacts = { status: 'absent' }
      if (opts.posture) posture = await service.verifyPosture((await readFile(opts.posture, 'utf8')).trim(), now)
      const decision = await service.decide({
        phase: 'explain',
        now,
        client,
        username: opts.user,
        mfaDone: opts.mfa ?? false,
        requestIp: opts.requestIp,
        approverIp: opts.approveIp,
        posture,
        dpopJkt: null,
        ...(opts.storage ? { storageClass: opts.storage } : {}),
      })
      const source = opts.policy ?? config.policy?.file ?? 'built-in'
      process.stdout.write(opts.json ? `${JSON.stringify(decision, null, 2)}\n` : formatExplanation(decision, source))
    } catch (err) {
      exitWithError(err)
    }
  })

  // Shared with `users disable|delete|enable` (cli/governance.ts): whichever registers first creates it.
  const users = program.commands.find((c) => c.name() === 'users') ?? program.command('users').description('built-in user store')
  withConfigOptions(
    users
      .command('enroll-totp <username>')
      .description('create (or replace) the TOTP second factor of a user and print its otpauth URI once'),
  ).action(async (username: string, opts: ConfigOptions) => {
    try {
      const { config } = await configFromOptions(opts)
      if (!config.users.some((u) => u.username === username)) throw new ConfigError(`no user "${username}" in the configuration`)
      const store = await openStore(config.storageUrl)
      try {
        const secret = newTotpSecret()
        await store.saveTotpSecret(username, secret, systemClock.nowSeconds())
        process.stdout.write(
          `${totpUri(new URL(config.issuer).host, username, secret)}\n` +
            `Give this URI (or the secret ${secret}) to ${username} once, for an authenticator app; it is not shown again.\n`,
        )
      } finally {
        await store.close()
      }
    } catch (err) {
      exitWithError(err)
    }
  })
}
