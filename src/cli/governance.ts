/**
 * Governance commands (issue 5): `devicegate audit verify|export`, and the revocation, inventory
 * and user/client commands over the same functions the admin API uses.
 */
import { createWriteStream } from 'node:fs'
import { InvalidArgumentError, type Command } from 'commander'
import type { Config } from '../config/load.js'
import { exportAuditLog, loadCheckpointKey, verifyAuditLog } from '../governance/audit.js'
import { openStore } from '../storage/index.js'
import type { Store } from '../storage/store.js'
import { configFromOptions, exitWithError, withConfigOptions, type ConfigOptions } from './config-options.js'

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

/** Opens the configured store, runs `fn`, closes it; errors exit non-zero. */
export async function withStore(opts: ConfigOptions, fn: (store: Store, config: Config) => Promise<void>): Promise<void> {
  try {
    const { config } = await configFromOptions(opts)
    const store = await openStore(config.storageUrl)
    try {
      await fn(store, config)
    } finally {
      await store.close()
    }
  } catch (err) {
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
    }),
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
    }),
  )
}

/** Registers every governance command. */
export function registerGovernanceCommands(program: Command): void {
  registerAuditCommands(program)
}
