/**
 * `devicegate report compliance`: the compliance report with live evidence, as a
 * printable HTML page (default) or JSON, to stdout or a file.
 */
import { writeFile } from 'node:fs/promises'
import { Option, type Command } from 'commander'
import { loadPolicyFile } from '../policy/holder.js'
import { BUILT_IN_POLICY } from '../policy/compile.js'
import { createComplianceReport, renderComplianceHtml } from '../reviews/report.js'
import { ConfigError } from '../config/load.js'
import { withConfigOptions, type ConfigOptions } from './config-options.js'
import { parseTimeOption, withStore } from './governance.js'
import { createReviewService } from '../reviews/index.js'
import { createClientDirectory } from '../protocol/clients.js'
import { createUserDirectory } from '../web/user-directory.js'
import { systemClock, systemRandom } from '../system.js'

interface ReportOptions extends ConfigOptions {
  since?: number
  until?: number
  format: 'html' | 'json'
  out?: string
  policy?: string
}

/** Registers `report compliance`. */
export function registerReviewsCommands(program: Command): void {
  const report = program.commands.find((c) => c.name() === 'report') ?? program.command('report').description('reports with live evidence')
  withConfigOptions(
    report
      .command('compliance')
      .description('NIST CSF 2.0 / OWASP NHI 2025 / SP 800-63B-4 controls judged from live evidence (config, policy, audit log, inventory)')
      .option('--since <time>', 'start of the period (ISO 8601 or epoch seconds; default: 90 days ago)', parseTimeOption)
      .option('--until <time>', 'end of the period (default: now)', parseTimeOption)
      .addOption(new Option('--format <format>', 'html (printable) or json').choices(['html', 'json']).default('html'))
      .option('--out <file>', 'write to this file instead of stdout')
      .option('--policy <file>', 'policy file to judge instead of the configured one'),
  ).action((opts: ReportOptions) =>
    withStore(opts, async (store, config) => {
      const file = opts.policy ?? config.policy?.file
      const policy = file === undefined ? BUILT_IN_POLICY : await loadPolicyFile(file)
      const reviews = createReviewService({ config, store, clock: systemClock, random: systemRandom, clients: createClientDirectory(config.clients), users: createUserDirectory(config.users) })
      const r = await createComplianceReport({ config, policy, store, clock: systemClock, reviews }, { since: opts.since, until: opts.until })
      const text = opts.format === 'json' ? `${JSON.stringify(r, null, 2)}\n` : renderComplianceHtml(r)
      if (opts.out) {
        await writeFile(opts.out, text, { mode: 0o644 }).catch((err: NodeJS.ErrnoException) => {
          throw new ConfigError(`--out: cannot write ${opts.out} (${err.code ?? err.message})`)
        })
        process.stderr.write(`${opts.out}: ${r.summary.pass} pass, ${r.summary.warn} warn, ${r.summary.fail} fail (audit head seq ${r.chainHead.seq})\n`)
      } else process.stdout.write(text)
    }, 'read'),
  )
}
