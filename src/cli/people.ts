/**
 * People commands: `devicegate users list|show|set-password`. (`users disable|
 * enable|delete` are in `governance.ts`, `users enroll-totp` in `policy.ts`.) They work on the
 * same stored people as the admin API, with the same audit events and revocation.
 */
import { InvalidArgumentError, type Command } from 'commander'
import { createInterface } from 'node:readline'
import { AnomalyEngine } from '../governance/anomalies.js'
import { RevocationService } from '../governance/revocation.js'
import { openToolIdentity, type Identity } from '../identity/index.js'
import { effectiveGroups, PeopleError, personView } from '../identity/people.js'
import { systemClock, systemRandom } from '../system.js'
import { withConfigOptions, type ConfigOptions, type StoreAccess } from './config-options.js'
import { cliActor, cliEvents, withStore } from './governance.js'

/** Reads one line from standard input (the new password), without echo when it is a terminal. */
async function readSecretLine(prompt: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY === true })
  if (process.stdin.isTTY) {
    process.stderr.write(prompt)
    ;(rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = () => {}
  }
  try {
    for await (const line of rl) return line
    return ''
  } finally {
    rl.close()
    if (process.stdin.isTTY) process.stderr.write('\n')
  }
}

async function withIdentity(opts: ConfigOptions, fn: (identity: Identity) => Promise<void>, access: StoreAccess = 'write'): Promise<void> {
  await withStore(opts, async (store, config) => {
    const { events, close } = await cliEvents(store, config)
    const revocation = new RevocationService(store, systemClock, events)
    const anomalies = new AnomalyEngine({ store, clock: systemClock, random: systemRandom, config: config.governance.anomalies, events, revocation })
    const identity = await openToolIdentity(store, config, { events, revocation, anomalies })
    try {
      await fn(identity)
    } finally {
      identity.close()
      await close()
    }
  }, access)
}

/** Registers `users list`, `users show` and `users set-password`. */
export function registerPeopleCommands(program: Command): void {
  const users = program.commands.find((c) => c.name() === 'users') ?? program.command('users').description('people: configured, signed in upstream, provisioned by SCIM')
  withConfigOptions(
    users
      .command('list')
      .description('list people (id, user name, status, source, groups, risk)')
      .option('--status <status>', 'only active, disabled or deleted')
      .option('--json', 'one JSON object per line'),
  ).action((opts: ConfigOptions & { status?: string; json?: boolean }) =>
    withIdentity(opts, async (identity) => {
      if (opts.status !== undefined && !['active', 'disabled', 'deleted'].includes(opts.status)) throw new InvalidArgumentError('--status: active, disabled or deleted')
      for (const p of identity.directory.all()) {
        if (opts.status !== undefined && p.status !== opts.status) continue
        process.stdout.write(
          opts.json ? `${JSON.stringify(personView(p))}\n` : `${p.id}\t${p.userName}\t${p.status}\t${p.source}\t${effectiveGroups(p).join(',') || '-'}\t${p.risk}\n`,
        )
      }
    }, 'read'),
  )
  withConfigOptions(users.command('show <id>').description('show one person as JSON')).action((id: string, opts: ConfigOptions) =>
    withIdentity(opts, async (identity) => {
      const person = identity.directory.person(id) ?? identity.directory.byUserName(id)
      if (person === undefined) throw new InvalidArgumentError(`no person "${id}"`)
      process.stdout.write(`${JSON.stringify(personView(person), null, 2)}\n`)
    }, 'read'),
  )
  withConfigOptions(
    users
      .command('set-password <id>')
      .description("change a person's local password (read from standard input); revokes every grant of theirs (RFC 6819 §5.2.2.4)"),
  ).action((id: string, opts: ConfigOptions) =>
    withIdentity(opts, async (identity) => {
      const password = await readSecretLine('New password: ')
      try {
        const revoked = await identity.people.changePassword(id, password, cliActor())
        process.stdout.write(`password of ${id} changed; ${revoked} token families revoked\n`)
      } catch (err) {
        if (err instanceof PeopleError) throw new InvalidArgumentError(err.message)
        throw err
      }
    }),
  )
}
