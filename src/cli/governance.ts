/**
 * Governance commands: `devicegate audit verify|export`, and the revocation, inventory
 * and user/client commands over the same functions the admin API uses.
 */
import { createWriteStream } from 'node:fs'
import { userInfo } from 'node:os'
import { InvalidArgumentError, type Command } from 'commander'
import type { Config } from '../config/load.js'
import { AuditLog, exportAuditLog, loadCheckpointKey, verifyAuditLog } from '../governance/audit.js'
import { AnomalyEngine } from '../governance/anomalies.js'
import { GovernanceEvents } from '../governance/events.js'
import { PrincipalAdmin, PrincipalOverrides } from '../governance/principals.js'
import { systemRandom } from '../system.js'
import { FLOW_STATUSES, listFlows, listInventory, type FlowItem, type FlowStatus, type InventoryItem } from '../governance/inventory.js'
import { RevocationService, type RevocationTarget } from '../governance/revocation.js'
import { systemClock } from '../system.js'
import { openStore } from '../storage/index.js'
import type { Store } from '../storage/store.js'
import { openToolIdentity } from '../identity/index.js'
import { configFromOptions, exitWithError, requireExistingDatabaseDir, withConfigOptions, type ConfigOptions, type StoreAccess } from './config-options.js'

/**
 * Parses a time option: ISO 8601 (`2026-01-31T12:00:00Z`, `2026-01-31`) or epoch seconds.
 * @returns epoch seconds.
 */
export function parseTimeOption(value: string): number {
  if (/^\d+$/.test(value)) return Number(value)
  const ms = Date.parse(value)
  if (Number.isNaN(ms)) throw new InvalidArgumentError('expected an ISO 8601 time (2026-01-31T12:00:00Z) or epoch seconds')
  return Math.floor(ms / 1000)
}

/**
 * Parses `--limit` of the listing commands: an integer from 1 to 1000, as their help says (the
 * inventory clamps silently, so `--limit 0` listed one row).
 * @throws {InvalidArgumentError} with exit code 2 (a usage error), naming the range.
 */
export function parseLimitOption(value: string): number {
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || n < 1 || n > 1000) {
    const err = new InvalidArgumentError('expected an integer from 1 to 1000')
    err.exitCode = 2
    throw err
  }
  return n
}

/**
 * Opens the configured store, runs `fn`, closes it; errors exit non-zero.
 * @param access `read` for commands that only read: a missing database directory is refused
 *   (exit 1, one line) instead of created ({@link requireExistingDatabaseDir}).
 */
export async function withStore(opts: ConfigOptions, fn: (store: Store, config: Config) => Promise<void>, access: StoreAccess = 'write'): Promise<void> {
  try {
    const { config } = await configFromOptions(opts)
    if (access === 'read') requireExistingDatabaseDir(config.storageUrl)
    const store = await openStore(config.storageUrl)
    try {
      await fn(store, config)
    } finally {
      await store.close()
    }
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      process.stderr.write(`devicegate: ${err.message}\n`)
      process.exit(1)
    }
    exitWithError(err)
  }
}

/** Registers `audit verify` and `audit export`. */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('verify and export the tamper-evident audit log')
  withConfigOptions(
    audit
      .command('verify')
      .description('check the hash chain and the signed checkpoints; names the first edited, deleted, inserted or reordered record and detects a log cut short')
      .option('--checkpoints <file>', 'checkpoint file kept apart from the database (default: governance.audit.checkpoint_file)'),
  ).action((opts: ConfigOptions & { checkpoints?: string }) =>
    withStore(opts, async (store, config) => {
      const a = config.governance.audit
      const started = process.hrtime.bigint()
      const key = await loadCheckpointKey({ envName: a.checkpointKeyEnv, keyFile: a.checkpointKeyFile })
      const result = await verifyAuditLog(store, { key, checkpointFile: opts.checkpoints ?? a.checkpointFile })
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`)
      if (result.problem) {
        process.stdout.write(`FAILED at seq ${result.problem.seq} (${result.problem.kind}): ${result.problem.message}\n`)
        process.stdout.write(`${result.checked} records verified before the problem\n`)
        process.exitCode = 1
        return
      }
      process.stdout.write(
        `ok: ${result.checked} records, chain head seq ${result.lastSeq}, ${result.checkpoints} signed checkpoints, ` +
          `${result.uncheckpointed} records after the newest checkpoint (${seconds.toFixed(2)} s)\n`,
      )
    }, 'read'),
  )
  withConfigOptions(
    audit
      .command('export')
      .description('write audit records as JSON Lines (for a SIEM)')
      .option('--since <time>', 'only records at or after this time (ISO 8601 or epoch seconds)', parseTimeOption, 0)
      .option('-o, --out <file>', 'write to this file instead of standard output'),
  ).action((opts: ConfigOptions & { since: number; out?: string }) =>
    withStore(opts, async (store) => {
      const out = opts.out === undefined ? process.stdout : createWriteStream(opts.out, { flags: 'w', mode: 0o600 })
      const write = (line: string) =>
        out.write(line) ? undefined : new Promise<void>((resolve) => out.once('drain', () => resolve()))
      const n = await exportAuditLog(store, opts.since, write)
      if (out !== process.stdout) await new Promise<void>((resolve) => (out as NodeJS.WritableStream).end(resolve))
      process.stderr.write(`exported ${n} records\n`)
    }, 'read'),
  )
}

/** The actor CLI actions are audited as: `cli:<operating-system user>`. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`
  } catch {
    return 'cli'
  }
}

/** Events from CLI actions go to the same audit log (flushed and checkpointed before exit). */
export async function cliEvents(store: Store, config: Config): Promise<{ events: GovernanceEvents; close(): Promise<void> }> {
  const a = config.governance.audit
  const audit = a.enabled
    ? new AuditLog({
        store,
        clock: systemClock,
        checkpointKey: await loadCheckpointKey({ envName: a.checkpointKeyEnv, keyFile: a.checkpointKeyFile }),
        checkpointFile: a.checkpointFile,
        onError: (err) => process.stderr.write(`devicegate: audit write failed: ${(err as Error).message}\n`),
      })
    : undefined
  return {
    events: new GovernanceEvents(audit),
    async close() {
      await audit?.flush()
      await audit?.checkpoint()
    },
  }
}

const iso = (t: number | null) => (t === null ? '-' : new Date(t * 1000).toISOString().replace('.000Z', 'Z'))

/** Registers `tokens list`. */
export function registerTokensCommands(program: Command): void {
  const tokens = program.command('tokens').description('token inventory')
  withConfigOptions(
    tokens
      .command('list')
      .description('list token families (newest first) with subject, client, scopes, origin and last use')
      .option('--user <username>', 'only this subject')
      .option('--client <client_id>', 'only this client')
      .option('--status <status>', 'active or revoked')
      .option('--limit <n>', 'at most this many (1–1000)', parseLimitOption, 100)
      .option('--cursor <cursor>', 'continue after a previous page')
      .option('--json', 'JSON Lines instead of a table'),
  ).action((opts: ConfigOptions & { user?: string; client?: string; status?: string; limit: number; cursor?: string; json?: boolean }) =>
    withStore(opts, async (store) => {
      if (opts.status !== undefined && opts.status !== 'active' && opts.status !== 'revoked') throw new InvalidArgumentError('--status: active or revoked')
      const page = await listInventory(store, systemClock, {
        ...(opts.user !== undefined ? { subject: opts.user } : {}),
        ...(opts.client !== undefined ? { clientId: opts.client } : {}),
        ...(opts.status !== undefined ? { status: opts.status as 'active' | 'revoked' } : {}),
        limit: opts.limit,
        ...(opts.cursor !== undefined ? { cursor: opts.cursor } : {}),
      })
      if (opts.json) for (const i of page.items) process.stdout.write(JSON.stringify(i) + '\n')
      else process.stdout.write(formatTokenTable(page.items))
      if (page.next_cursor !== null) process.stderr.write(`more: --cursor ${page.next_cursor}\n`)
    }, 'read'),
  )
}

/** Registers `flows list`: device authorizations of every outcome, with both sides' address. */
export function registerFlowsCommands(program: Command): void {
  const flows = program.command('flows').description('device authorizations: issued, denied, refused by policy, expired, pending')
  withConfigOptions(
    flows
      .command('list')
      .description('list device authorizations (newest first) with the request and approval address, country and network, and the policy reasons')
      .option('--status <status>', `only ${FLOW_STATUSES.join(', ')}`)
      .option('--user <username>', 'only flows decided by this user')
      .option('--client <client_id>', 'only this client')
      .option('--limit <n>', 'at most this many (1–1000)', parseLimitOption, 100)
      .option('--cursor <cursor>', 'continue after a previous page')
      .option('--json', 'JSON Lines instead of a table'),
  ).action((opts: ConfigOptions & { status?: string; user?: string; client?: string; limit: number; cursor?: string; json?: boolean }) =>
    withStore(opts, async (store) => {
      if (opts.status !== undefined && !(FLOW_STATUSES as readonly string[]).includes(opts.status)) throw new InvalidArgumentError(`--status: one of ${FLOW_STATUSES.join(', ')}`)
      const page = await listFlows(store, systemClock, {
        ...(opts.status !== undefined ? { status: opts.status as FlowStatus } : {}),
        ...(opts.user !== undefined ? { subject: opts.user } : {}),
        ...(opts.client !== undefined ? { clientId: opts.client } : {}),
        limit: opts.limit,
        ...(opts.cursor !== undefined ? { cursor: opts.cursor } : {}),
      })
      if (opts.json) for (const f of page.items) process.stdout.write(JSON.stringify(f) + '\n')
      else process.stdout.write(formatFlowTable(page.items))
      if (page.next_cursor !== null) process.stderr.write(`more: --cursor ${page.next_cursor}\n`)
    }, 'read'),
  )
}

const where = (n: { ip: string | null; country: string | null; asn: number | null }) =>
  n.ip === null ? '-' : `${n.ip}${n.country || n.asn ? ` (${[n.country, n.asn === null ? null : `AS${n.asn}`].filter(Boolean).join(' ')})` : ''}`

/** The `flows list` table: header row, then one row per device authorization. */
export function formatFlowTable(items: readonly FlowItem[]): string {
  return formatTable(
    ['FLOW', 'STATUS', 'CLIENT', 'USER', 'REQUESTED', 'REQUEST FROM', 'APPROVAL FROM', 'REASONS'],
    items.map((f) => [f.id, f.status, f.client_id, f.subject ?? '-', iso(f.requested_at), where(f.request), f.approval ? where(f.approval) : '-', f.reasons.join(',') || '-']),
    '(no device authorizations)',
  )
}

function formatTable(header: string[], rows: string[][], empty: string): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)))
  const line = (cells: string[]) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ') + '\n'
  return line(header) + (rows.length === 0 ? `${empty}\n` : rows.map(line).join(''))
}

/**
 * The `tokens list` table: a header row, then one row per family, columns padded to their widest
 * cell; an empty inventory prints the header and `(no token families)`.
 */
export function formatTokenTable(items: readonly InventoryItem[]): string {
  const header = ['GRANT', 'STATUS', 'SUBJECT', 'CLIENT', 'CREATED', 'REQUEST FROM', 'APPROVAL FROM', 'LAST USE', 'LAST USE FROM', 'SCOPE']
  const rows = items.map((i) => [
    i.grant_id,
    i.status,
    i.subject ?? '-',
    i.client_id,
    iso(i.created_at),
    i.device_authorization ? where({ ip: i.device_authorization.request_ip, ...(i.device_authorization.request_location ?? { country: null, asn: null }) }) : '-',
    i.device_authorization?.approval ? where(i.device_authorization.approval) : '-',
    iso(i.last_used_at),
    i.last_used_ip ?? '-',
    i.scope,
  ])
  return formatTable(header, rows, '(no token families)')
}

/** Registers `revoke`. */
export function registerRevokeCommand(program: Command): void {
  withConfigOptions(
    program
      .command('revoke')
      .description('central revocation: families of a user, client, grant, DPoP key, everything before a time, or approvals matching a pattern')
      .option('--user <username>', 'every family of this user (and their approved, unredeemed device codes)')
      .option('--client <client_id>', 'every family of this client')
      .option('--grant <grant_id>', 'one family')
      .option('--jkt <thumbprint>', 'every family bound to this DPoP key (RFC 7638 thumbprint)')
      .option('--before <time>', 'kill switch: every family issued before this time (ISO 8601 or epoch seconds)', parseTimeOption)
      .option('--token-stdin', 'the family of the token read from standard input')
      .option('--request-ip <ip_or_cidr>', 'phishing remediation: families minted from device authorizations requested from here')
      .option('--approved-by <username>', 'phishing remediation: … approved by this user')
      .option('--pattern-client <client_id>', 'phishing remediation: … of this client')
      .option('--from <time>', 'phishing remediation: … requested at or after this time', parseTimeOption)
      .option('--to <time>', 'phishing remediation: … requested before this time', parseTimeOption)
      .option('--reason <text>', 'recorded in the audit log')
      .option('--dry-run', 'list what would be revoked; change nothing'),
  ).action(
    (
      opts: ConfigOptions & {
        user?: string
        client?: string
        grant?: string
        jkt?: string
        before?: number
        tokenStdin?: boolean
        requestIp?: string
        approvedBy?: string
        patternClient?: string
        from?: number
        to?: number
        reason?: string
        dryRun?: boolean
      },
    ) =>
      withStore(opts, async (store, config) => {
        const targets: RevocationTarget[] = []
        if (opts.user !== undefined) targets.push({ kind: 'user', subject: opts.user })
        if (opts.client !== undefined) targets.push({ kind: 'client', clientId: opts.client })
        if (opts.grant !== undefined) targets.push({ kind: 'grant', grantId: opts.grant })
        if (opts.jkt !== undefined) targets.push({ kind: 'jkt', jkt: opts.jkt })
        if (opts.before !== undefined) targets.push({ kind: 'before', time: opts.before })
        if (opts.tokenStdin) {
          const chunks: Buffer[] = []
          for await (const c of process.stdin) chunks.push(c as Buffer)
          targets.push({ kind: 'token', token: Buffer.concat(chunks).toString('utf8').trim() })
        }
        const pattern = {
          ...(opts.requestIp !== undefined ? { requestIp: opts.requestIp } : {}),
          ...(opts.approvedBy !== undefined ? { approvedBy: opts.approvedBy } : {}),
          ...(opts.patternClient !== undefined ? { clientId: opts.patternClient } : {}),
          ...(opts.from !== undefined ? { from: opts.from } : {}),
          ...(opts.to !== undefined ? { to: opts.to } : {}),
        }
        if (Object.keys(pattern).length > 0) targets.push({ kind: 'pattern', pattern })
        if (targets.length !== 1) throw new InvalidArgumentError('give exactly one of --user, --client, --grant, --jkt, --before, --token-stdin, or pattern options')
        const { events, close } = await cliEvents(store, config)
        try {
          const started = process.hrtime.bigint()
          const result = await new RevocationService(store, systemClock, events).revoke(targets[0]!, {
            actor: cliActor(),
            dryRun: opts.dryRun ?? false,
            ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
          })
          const ms = Number(process.hrtime.bigint() - started) / 1e6
          for (const g of result.listed) process.stdout.write(`${g.id}  ${g.subject ?? '-'}  ${g.clientId}  ${iso(g.createdAt)}  from ${g.requestIp ?? '-'}\n`)
          process.stdout.write(
            `${result.dryRun ? 'would revoke' : 'revoked'} ${result.grants} token families and ${result.dryRun ? 'deny' : 'denied'} ${result.deviceAuthorizations} open device authorizations (${ms.toFixed(0)} ms)\n`,
          )
        } finally {
          await close()
        }
      }),
  )
}

/**
 * Registers `users disable|delete|enable USER` and `clients disable|delete|enable CLIENT`: the
 * override is stored, the principal's live families are revoked at once (`orphaned_token`), and a
 * running server applies the override itself within a few seconds.
 */
export function registerPrincipalCommands(program: Command): void {
  for (const kind of ['user', 'client'] as const) {
    const name = `${kind}s`
    const group =
      program.commands.find((c) => c.name() === name) ??
      program.command(name).description(kind === 'user' ? 'built-in user store' : 'configured clients')
    for (const [verb, state] of [
      ['disable', 'disabled'],
      ['delete', 'deleted'],
      ['enable', 'enabled'],
    ] as const) {
      withConfigOptions(
        group
          .command(`${verb} <${kind === 'user' ? 'username' : 'client_id'}>`)
          .description(`${verb} a configured ${kind}${state === 'enabled' ? '' : '; revokes its token families at once'}`),
      ).action((id: string, opts: ConfigOptions) =>
        withStore(opts, async (store, config) => {
          const { events, close } = await cliEvents(store, config)
          try {
            const revocation = new RevocationService(store, systemClock, events)
            const anomalies = new AnomalyEngine({ store, clock: systemClock, random: systemRandom, config: config.governance.anomalies, events, revocation })
            const overrides = new PrincipalOverrides(store)
            // People are stored: a user's status is changed there, for every source.
            const identity = kind === 'user' ? await openToolIdentity(store, config, { events, revocation, anomalies }) : undefined
            const admin = new PrincipalAdmin(
              overrides,
              anomalies,
              events,
              systemClock,
              { user: () => false, client: (c) => config.clients.some((x) => x.id === c) },
              identity?.userStatus,
            )
            const revoked = await admin.change(kind, id, state, cliActor())
            identity?.close()
            if (revoked === undefined) throw new InvalidArgumentError(`no ${kind} "${id}"${kind === 'client' ? ' in the configuration' : ''}`)
            process.stdout.write(`${kind} ${id} ${state}; ${revoked} token families revoked\n`)
          } finally {
            await close()
          }
        }),
      )
    }
  }
}

/** Registers every governance command. */
export function registerGovernanceCommands(program: Command): void {
  registerAuditCommands(program)
  registerTokensCommands(program)
  registerFlowsCommands(program)
  registerRevokeCommand(program)
  registerPrincipalCommands(program)
}
