/**
 * `devicegate devices register|list|label|retire|grants`: the trusted device registry, devices
 * known by the thumbprint of their DPoP key (RFC 9449 §6.1, RFC 7638).
 */
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import type { JWK } from 'jose'
import {
  createDeviceRegistry,
  DeviceRegistryError,
  type DeviceRegistry,
} from '../governance/devices.js'
import { openStore } from '../storage/index.js'
import type { DeviceRecord, GrantRecord } from '../storage/store.js'
import { systemClock } from '../system.js'
import { configFromOptions, exitWithError, requireExistingDatabaseDir, withConfigOptions, type ConfigOptions, type StoreAccess } from './config-options.js'

async function withRegistry(opts: ConfigOptions, fn: (registry: DeviceRegistry) => Promise<void>, access: StoreAccess = 'write'): Promise<void> {
  try {
    const { config } = await configFromOptions(opts)
    if (access === 'read') requireExistingDatabaseDir(config.storageUrl)
    const store = await openStore(config.storageUrl)
    try {
      await fn(createDeviceRegistry({ store, clock: systemClock }))
    } finally {
      await store.close()
    }
  } catch (err) {
    if (err instanceof DeviceRegistryError) {
      process.stderr.write(`devicegate: ${err.message}\n`)
      process.exit(err.code === 'ERR_DEVICE_NOT_FOUND' ? 3 : 2)
    }
    exitWithError(err)
  }
}

/**
 * Reads `--jwk-file`: a JSON public JWK.
 * @throws {DeviceRegistryError} `ERR_DEVICE_INVALID` naming the file when it cannot be read or is not JSON (was a stack trace).
 */
async function readJwkFile(file: string): Promise<JWK> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new DeviceRegistryError('ERR_DEVICE_INVALID', `--jwk-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  try {
    return JSON.parse(text) as JWK
  } catch {
    throw new DeviceRegistryError('ERR_DEVICE_INVALID', `--jwk-file: ${file} is not a JSON JWK`)
  }
}

const iso = (t: number | null) => (t === null ? '-' : new Date(t * 1000).toISOString())

function printDevice(d: DeviceRecord): void {
  const state = d.retiredAt === null ? 'trusted' : `retired ${iso(d.retiredAt)}`
  process.stdout.write(`${d.jkt}  ${JSON.stringify(d.label)}  registered ${iso(d.registeredAt)}${d.registeredBy ? ` by ${d.registeredBy}` : ''}  ${state}\n`)
}

function printGrant(g: GrantRecord): void {
  const state = g.revokedAt === null ? 'live' : `revoked ${iso(g.revokedAt)}`
  process.stdout.write(`${g.id}  client ${g.clientId}  subject ${g.subject ?? '-'}  scope ${JSON.stringify(g.scope)}  created ${iso(g.createdAt)}  ${state}\n`)
}

/** Registers the `devices` command group. */
export function registerDevicesCommands(program: Command): void {
  const devices = program.command('devices').description('trusted device registry: devices known by their DPoP key thumbprint (jkt)')

  withConfigOptions(
    devices
      .command('register')
      .description('register a device by its DPoP key thumbprint, or by its public JWK (--jwk-file)')
      .argument('[jkt]', 'RFC 7638 SHA-256 thumbprint of the device DPoP public key')
      .requiredOption('-l, --label <label>', 'name shown to administrators')
      .option('--jwk-file <file>', 'JSON file with the device public JWK (the thumbprint is computed)')
      .option('--by <name>', 'administrator registering it (audit)')
      .option('--json', 'print JSON'),
  ).action((jkt: string | undefined, opts: ConfigOptions & { label: string; jwkFile?: string; by?: string; json?: boolean }) =>
    withRegistry(opts, async (registry) => {
      const jwk = opts.jwkFile ? await readJwkFile(opts.jwkFile) : undefined
      if (!jwk && !jkt) throw new DeviceRegistryError('ERR_DEVICE_INVALID', 'give a jkt or --jwk-file')
      const device = await registry.register({ ...(jkt ? { jkt } : {}), ...(jwk ? { jwk } : {}), label: opts.label, registeredBy: opts.by ?? null })
      if (opts.json) process.stdout.write(`${JSON.stringify(device)}\n`)
      else printDevice(device)
    }),
  )

  withConfigOptions(
    devices.command('list').description('list trusted devices (newest first)').option('-a, --all', 'include retired devices').option('--json', 'print JSON'),
  ).action((opts: ConfigOptions & { all?: boolean; json?: boolean }) =>
    withRegistry(opts, async (registry) => {
      const list = await registry.list({ includeRetired: Boolean(opts.all) })
      if (opts.json) process.stdout.write(`${JSON.stringify(list)}\n`)
      else if (list.length === 0) process.stdout.write(opts.all ? '(no devices)\n' : '(no trusted devices; --all includes retired ones)\n')
      else list.forEach(printDevice)
    }, 'read'),
  )

  withConfigOptions(
    devices.command('label').description("change a device's label").argument('<jkt>').argument('<label>').option('--by <name>', 'administrator (audit)'),
  ).action((jkt: string, label: string, opts: ConfigOptions & { by?: string }) =>
    withRegistry(opts, async (registry) => printDevice(await registry.label(jkt, label, opts.by ?? null))),
  )

  withConfigOptions(
    devices
      .command('retire')
      .description('retire a device and revoke every token bound to its key')
      .argument('<jkt>')
      .option('--by <name>', 'administrator (audit)'),
  ).action((jkt: string, opts: ConfigOptions & { by?: string }) =>
    withRegistry(opts, async (registry) => {
      const { device, grantsRevoked } = await registry.retire(jkt, opts.by ?? null)
      printDevice(device)
      process.stdout.write(`revoked ${grantsRevoked} token ${grantsRevoked === 1 ? 'family' : 'families'} bound to this key\n`)
    }),
  )

  withConfigOptions(
    devices.command('grants').description("list the token families bound to a device's key").argument('<jkt>').option('--json', 'print JSON'),
  ).action((jkt: string, opts: ConfigOptions & { json?: boolean }) =>
    withRegistry(opts, async (registry) => {
      const grants = await registry.grants(jkt)
      if (opts.json) process.stdout.write(`${JSON.stringify(grants)}\n`)
      else if (grants.length === 0) process.stdout.write('(no token families bound to this key)\n')
      else grants.forEach(printGrant)
    }, 'read'),
  )
}
