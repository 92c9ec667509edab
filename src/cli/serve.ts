/**
 * `devicegate serve`.
 */
import { createServer as createNetServer } from 'node:net'
import type { Command } from 'commander'
import { checkStartup, createServer, type Config } from '../server.js'
import { configFromOptions, exitWithError, withConfigOptions, type ConfigOptions } from './config-options.js'

/**
 * `--port 0` asks for any free port. The default issuer (`http://HOST:0`) must then name the port
 * actually used, or the metadata (RFC 8414) and every URI the server hands out point nowhere:
 * a free port is reserved first and the issuer built with it. An issuer given explicitly is kept.
 */
async function withConcretePort(config: Config): Promise<Config> {
  const issuer = new URL(config.issuer)
  if (config.port !== 0 || issuer.port !== '0') return config
  const port = await new Promise<number>((resolve, reject) => {
    const probe = createNetServer()
    probe.once('error', reject)
    probe.listen(0, config.host, () => {
      const bound = (probe.address() as { port: number }).port
      probe.close(() => resolve(bound))
    })
  })
  issuer.port = String(port)
  return Object.freeze({ ...config, port, issuer: issuer.href.replace(/\/$/, '') })
}

/** Registers `serve`. */
export function registerServeCommand(program: Command): void {
  withConfigOptions(program.command('serve').description('start the authorization server')).action(async (opts: ConfigOptions) => {
    try {
      const resolved = await configFromOptions(opts, { secrets: 'hash' })
      const config = await withConcretePort(resolved.config)
      const dev = resolved.dev
      // The same checks as check-config, so both fail alike and before the store is opened.
      await checkStartup(config)
      const server = await createServer(config)
      if (opts.dev) server.app.log.warn('--dev: demo client and user; not for production')
      await server.app.listen({ host: config.host, port: config.port })
      if (server.governance.metricsUrl) server.app.log.info({ url: `${server.governance.metricsUrl}/metrics` }, 'metrics listening on their own address')
      const address = server.app.server.address()
      const port = typeof address === 'object' && address ? address.port : config.port
      if (opts.dev) {
        // The generated demo secrets are shown once, by design, so a person can try a login.
        const lines = [
          '',
          `devicegate (dev) listening on ${config.issuer.replace(`:${config.port}`, `:${port}`)}`,
          `  issuer:         ${config.issuer}`,
          `  data:           ${config.storageUrl}`,
          '  demo user:      demo' + (dev.generatedPassword ? `  password: ${dev.generatedPassword}` : '  (password from DEVICEGATE_DEMO_PASSWORD)'),
          '  public client:  demo-cli (device flow; scopes read write offline_access)',
          '  machine client: demo-api' + (dev.generatedClientSecret ? `  secret: ${dev.generatedClientSecret}` : '  (secret from DEVICEGATE_DEMO_CLIENT_SECRET)'),
          `  console:        ${config.issuer}/console  (demo is a console admin: password + a TOTP code)`,
          '  demo TOTP:      ' +
            (dev.generatedTotpSecret
              ? `secret ${dev.generatedTotpSecret}  (add it to an authenticator app: TOTP, SHA-1, 6 digits, 30 s)`
              : '(secret from DEVICEGATE_DEMO_TOTP_SECRET)'),
          '',
          `  try: curl -s -d client_id=demo-cli -d "scope=read offline_access" ${config.issuer}/device_authorization`,
          `       then open ${config.issuer}/device in a browser, sign in as demo and approve.`,
          '',
        ]
        process.stdout.write(lines.join('\n') + '\n')
      }
      const stop = async () => {
        server.app.log.info({ deadlineSeconds: config.http.shutdownDeadlineSeconds }, 'shutting down')
        // Should closing itself hang (a store that does not answer), exit anyway a little later.
        setTimeout(() => process.exit(1), (config.http.shutdownDeadlineSeconds + 5) * 1000).unref()
        await server.close()
        process.exit(0)
      }
      process.once('SIGINT', () => void stop())
      process.once('SIGTERM', () => void stop())
    } catch (err) {
      exitWithError(err)
    }
  })
}
