/**
 * `devicegate login | whoami | token | logout`: the client side of the device flow, for people at
 * a terminal. Built only on the client SDK (`src/client/`), so it works against any RFC 8628 server.
 *
 * Output rules: instructions, spinner and diagnostics go to stderr; stdout carries only what a
 * script asked for (`whoami` facts, or the token from `devicegate token`). No token is printed
 * unless `token` is asked to, and no stack trace is shown (set DEVICEGATE_DEBUG=1 for one).
 */
import { join } from 'node:path'
import { InvalidArgumentError, Option, type Command } from 'commander'
import {
  ClientError,
  DeviceClient,
  OAuthResponseError,
  decodeClaimsUnverified,
  defaultConfigDir,
  formatDuration,
  formatInstructions,
  openTokenStore,
  readStoredGrant,
  renderTerminalQr,
  type SessionInfo,
  type TokenStore,
  type TokenStoreKind,
  SDK_USER_AGENT,
  SDK_VERSION,
} from '../client/index.js'

/** What the CLI sends as User-Agent (RFC 9110 §10.1.5): the tool, then the SDK. */
export const CLI_USER_AGENT = `devicegate-cli/${SDK_VERSION} ${SDK_USER_AGENT}`

/** Store record listing the profiles logged in (`whoami` shows them). */
const PROFILES_RECORD = 'cli-profiles'
/** Store record with the issuer and client of the last login (defaults for the next one). */
const LAST_LOGIN_RECORD = 'cli-last-login'
/** Store record set once the keyring fallback note has been shown. */
const NOTE_SHOWN_RECORD = 'cli-note-keyring-fallback'

async function readJson<T>(store: TokenStore, name: string): Promise<T | undefined> {
  const raw = await store.get(name).catch(() => undefined)
  if (raw === undefined) return undefined
  try {
    return JSON.parse(raw) as T
  } catch {
    return undefined
  }
}

/** Profiles with a stored login, sorted. */
async function listProfiles(store: TokenStore): Promise<string[]> {
  const names = (await readJson<string[]>(store, PROFILES_RECORD)) ?? []
  return Array.isArray(names) ? [...new Set(names.filter((n) => typeof n === 'string'))].sort() : []
}

async function setProfile(store: TokenStore, profile: string, present: boolean): Promise<void> {
  const names = new Set(await listProfiles(store))
  if (present) names.add(profile)
  else names.delete(profile)
  await store.set(PROFILES_RECORD, JSON.stringify([...names].sort()))
}

const STORE_KINDS = ['auto', 'keyring', 'file', 'memory'] as const
/** Account name the CLI uses in the store for each profile. */
const profileAccount = (profile: string) => `cli-${profile}`

interface StoreOptions {
  store: TokenStoreKind
  profile: string
}

function withStoreOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--store <kind>', 'where tokens live: keyring (OS keyring), file (encrypted, 0600), memory (this process only), auto (keyring, else file)')
        .choices(STORE_KINDS)
        .default('auto')
        .env('DEVICEGATE_STORE'),
    )
    .option('--profile <name>', 'name of this login, to keep several side by side', parseProfile, 'default')
}

function parseProfile(value: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(value)) throw new InvalidArgumentError('expected 1-64 letters, digits, dots, dashes or underscores')
  return value
}

function parseIssuer(value: string): string {
  try {
    const url = new URL(value)
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('scheme')
  } catch {
    throw new InvalidArgumentError('expected an absolute https URL, e.g. https://auth.example.com')
  }
  return value.replace(/\/$/, '')
}

function say(line = ''): void {
  process.stderr.write(`${line}\n`)
}

/** A command line that cannot run as given (a missing option); its message is the whole story. */
class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Turns any failure into one line for a person; no stack unless DEVICEGATE_DEBUG is set. */
export function describeFailure(err: unknown, ctx: { clientId?: string; issuer?: string } = {}): string {
  if (err instanceof OAuthResponseError) {
    const detail = err.error_description ? `: ${err.error_description}` : ''
    switch (err.error) {
      case 'access_denied':
        return 'the login was denied on the verification page (access_denied)'
      case 'expired_token':
        return 'the code expired before it was approved; run `devicegate login` again (expired_token)'
      case 'invalid_client':
        return `${ctx.issuer ?? 'the server'} does not accept client "${ctx.clientId ?? '?'}" (invalid_client${detail}); check --client-id`
      case 'unauthorized_client':
        return `client "${ctx.clientId ?? '?'}" may not use the device flow at ${ctx.issuer ?? 'this server'} (unauthorized_client${detail})`
      case 'invalid_scope':
        return `the server refused the requested scope (invalid_scope${detail}); check --scope`
      case 'invalid_dpop_proof':
        return `the server rejected this installation's DPoP proof${detail}; if that is about time ("iat"), check this computer's clock`
      case 'temporarily_unavailable':
      case 'server_error':
        return `the server failed (${err.error}${detail}); try again later`
      default:
        return `the server answered ${err.error}${detail} (HTTP ${err.status})`
    }
  }
  if (err instanceof ClientError) {
    if (err.code === 'ERR_NETWORK') return `${err.message}; is the issuer URL right and the server running?`
    if (err.code === 'ERR_STORAGE_NOT_ACCEPTED') return `${err.message} Here: \`--store keyring\` on a machine with an OS keyring.`
    if (err.code === 'ERR_LOGIN_REQUIRED') return `${err.message.replace(/; run the device login first$/, '')}; run \`devicegate login --issuer URL --client-id ID\``
    return err.message
  }
  if (err instanceof UsageError) return err.message
  if ((err as Error)?.name === 'AbortError') return 'cancelled'
  return `unexpected error: ${(err as Error)?.message ?? String(err)}`
}

function fail(err: unknown, ctx: { clientId?: string; issuer?: string } = {}): void {
  say(`devicegate: ${describeFailure(err, ctx)}`)
  if (process.env.DEVICEGATE_DEBUG && err instanceof Error && err.stack) say(err.stack)
  process.exitCode = (err as Error)?.name === 'AbortError' ? 130 : 1
}

/**
 * Parallel commands (`devicegate token` in several scripts at once) share one refresh through a
 * lock file in the config directory, whatever the store (RFC 9700 §4.14.2: racing with the same
 * refresh token would look like reuse).
 */
const REFRESH_SHARING = { lockDir: join(defaultConfigDir(), 'locks') }

async function openStore(opts: StoreOptions, announce: boolean): Promise<TokenStore> {
  const { store, fallbackReason } = await openTokenStore({ kind: opts.store })
  // Said once per store, not on every login: it is a fact about this machine, not this command.
  if (announce && fallbackReason && (await store.get(NOTE_SHOWN_RECORD).catch(() => undefined)) === undefined) {
    say(`note: ${fallbackReason} in ${store.location}; without a keyring its key file only adds obfuscation to the 0600 permissions`)
    await store.set(NOTE_SHOWN_RECORD, '1').catch(() => undefined)
  }
  if (announce && store.kind === 'memory') say('note: --store memory keeps the login only while this command runs')
  return store
}

function expiryText(expiresAt: number | undefined): string {
  if (expiresAt === undefined) return 'not stated by the server'
  const left = expiresAt - Date.now() / 1000
  const when = new Date(expiresAt * 1000).toISOString()
  return left > 0 ? `${when} (in ${formatDuration(left)})` : `${when} (expired)`
}

/** A one-line spinner with the time left, on stderr, only when stderr is a terminal. */
function startSpinner(expiresAt: () => number): { stop(): void } {
  if (!process.stderr.isTTY) {
    say(`Waiting for approval (the code expires in ${formatDuration(expiresAt() - Date.now() / 1000)})…`)
    return { stop() {} }
  }
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
  let i = 0
  const draw = () => process.stderr.write(`\r\x1b[2K${frames[i++ % frames.length]} Waiting for approval… ${formatDuration(expiresAt() - Date.now() / 1000)} left (Ctrl-C to cancel)`)
  draw()
  const timer = setInterval(draw, 100)
  return {
    stop() {
      clearInterval(timer)
      process.stderr.write('\r\x1b[2K')
    },
  }
}

interface LoginOptions extends StoreOptions {
  issuer?: string
  clientId?: string
  scope?: string
  dpop: boolean
  qr?: boolean
}

async function login(opts: LoginOptions): Promise<void> {
  const ctx: { clientId?: string; issuer?: string } = { ...(opts.clientId ? { clientId: opts.clientId } : {}), ...(opts.issuer ? { issuer: opts.issuer } : {}) }
  const controller = new AbortController()
  const onSigint = () => controller.abort(new DOMException('login cancelled', 'AbortError'))
  process.once('SIGINT', onSigint)
  let spinner: { stop(): void } | undefined
  try {
    const store = await openStore(opts, true)
    // --issuer / DEVICEGATE_ISSUER, else this profile's login, else the last login (same for the client).
    const previous = (await readStoredGrant(store, profileAccount(opts.profile)).catch(() => undefined)) ?? (await readJson<{ issuer?: string; clientId?: string }>(store, LAST_LOGIN_RECORD))
    const issuer = opts.issuer ?? previous?.issuer
    const clientId = opts.clientId ?? previous?.clientId
    if (issuer === undefined) throw new UsageError('no issuer: pass --issuer URL or set DEVICEGATE_ISSUER (later logins reuse the last one)')
    if (clientId === undefined) throw new UsageError('no client: pass --client-id ID or set DEVICEGATE_CLIENT_ID (later logins reuse the last one)')
    ctx.issuer = issuer
    ctx.clientId = clientId
    const client = new DeviceClient({
      issuer,
      clientId,
      userAgent: CLI_USER_AGENT,
      store,
      account: profileAccount(opts.profile),
      dpop: opts.dpop ? 'auto' : 'off',
      ...(opts.scope ? { scope: opts.scope } : {}),
    })
    let expiresAt = 0
    const info = await client.login({
      signal: controller.signal,
      onPrompt: async (authz) => {
        expiresAt = authz.expiresAt
        say()
        say(formatInstructions(authz))
        const showQr = opts.qr ?? process.stderr.isTTY === true
        if (showQr && authz.verificationUriComplete) {
          say()
          say((await renderTerminalQr(authz.verificationUriComplete)).trimEnd())
        }
        say()
        spinner = startSpinner(() => expiresAt)
      },
    })
    spinner?.stop()
    await setProfile(store, opts.profile, true)
    await store.set(LAST_LOGIN_RECORD, JSON.stringify({ issuer, clientId }))
    const grant = await client.storedGrant()
    const sub = grant && decodeClaimsUnverified(grant.accessToken)?.sub
    say(`Logged in to ${info.issuer}${sub ? ` as ${sub}` : ''}.`)
    say(`Tokens: ${info.tokenType}${info.dpopJkt ? ` (bound to this installation's key ${info.dpopJkt.slice(0, 12)}…)` : ''}, stored in ${store.kind} (${store.location}).`)
  } catch (err) {
    spinner?.stop()
    fail(err, ctx)
  } finally {
    process.off('SIGINT', onSigint)
  }
}

function printInfo(rows: [string, string | undefined][]): void {
  const width = Math.max(...rows.map(([k]) => k.length)) + 1
  for (const [k, v] of rows) if (v !== undefined) process.stdout.write(`${(k + ':').padEnd(width + 1)}${v}\n`)
}

async function whoami(opts: StoreOptions): Promise<void> {
  let info: SessionInfo | undefined
  try {
    const store = await openStore(opts, false)
    const profiles = await listProfiles(store)
    const client = await DeviceClient.fromStore(store, profileAccount(opts.profile), { ...REFRESH_SHARING, userAgent: CLI_USER_AGENT }).catch((err: unknown) => {
      if (err instanceof ClientError && err.code === 'ERR_LOGIN_REQUIRED' && profiles.length > 0)
        throw new ClientError('ERR_LOGIN_REQUIRED', `profile "${opts.profile}" is not logged in; stored profiles: ${profiles.join(', ')} (use --profile NAME)`)
      throw err
    })
    await client.getAccessToken() // refreshes when due, so what follows describes a live token
    const grant = (await client.storedGrant())!
    info = (await client.session())!
    const claims = decodeClaimsUnverified(grant.accessToken)
    let subject: string | undefined
    let source: string | undefined
    if (claims?.sub !== undefined) {
      subject = String(claims.sub)
      source = 'unverified: decoded locally from the access token'
    } else {
      const userinfo = await client.userinfo()
      if (userinfo?.sub !== undefined) {
        subject = String(userinfo.sub)
        source = 'from the server\'s userinfo endpoint'
      } else if (grant.idToken) {
        const id = decodeClaimsUnverified(grant.idToken)
        if (id?.sub !== undefined) {
          subject = String(id.sub)
          source = 'unverified: decoded locally from the ID token'
        }
      }
    }
    printInfo([
      ['issuer', info.issuer],
      ['client', info.clientId],
      ['subject', subject === undefined ? '(the access token is opaque and the server offers no userinfo)' : `${subject}  (${source})`],
      ['scope', info.scope ?? claims?.scope?.toString()],
      ['token type', info.dpopJkt ? `${info.tokenType}, bound to key ${info.dpopJkt}` : info.tokenType],
      ['expires', expiryText(info.expiresAt)],
      ['refresh', info.hasRefreshToken ? 'yes (renewed automatically)' : 'no'],
      ['store', `${store.kind} (${store.location})`],
      ['profiles', profiles.map((p) => (p === opts.profile ? `${p} (this one)` : p)).join(', ') || opts.profile],
    ])
  } catch (err) {
    fail(err, info ?? {})
  }
}

async function token(opts: StoreOptions & { print?: boolean }): Promise<void> {
  try {
    if (!opts.print && process.stdout.isTTY) {
      say('devicegate: refusing to print a token to a terminal, where it lands in scrollback and screen shares;')
      say('  pipe it (`devicegate token | tool`) or pass --print if you really mean it')
      process.exitCode = 1
      return
    }
    const store = await openStore(opts, false)
    const client = await DeviceClient.fromStore(store, profileAccount(opts.profile), { ...REFRESH_SHARING, userAgent: CLI_USER_AGENT })
    const { accessToken, tokenType, expiresAt } = await client.getAccessToken()
    say('devicegate: warning: printing an access token. Keep it out of shell history, logs and CI output;')
    say(`  it is valid until ${expiryText(expiresAt)}.${tokenType.toLowerCase() === 'dpop' ? ' It is DPoP-bound: requests also need a proof from this installation\'s key.' : ''}`)
    process.stdout.write(`${accessToken}\n`)
  } catch (err) {
    fail(err)
  }
}

async function logout(opts: StoreOptions): Promise<void> {
  try {
    const store = await openStore(opts, false)
    const grant = await readStoredGrant(store, profileAccount(opts.profile)).catch(() => undefined)
    if (!grant) {
      await store.delete(`grant-${profileAccount(opts.profile)}`)
      await setProfile(store, opts.profile, false)
      say(`Not logged in (nothing stored for profile "${opts.profile}" in ${store.kind}).`)
      return
    }
    const client = new DeviceClient({ issuer: grant.issuer, clientId: grant.clientId, store, account: profileAccount(opts.profile), userAgent: CLI_USER_AGENT })
    const result = await client.logout()
    await setProfile(store, opts.profile, false)
    if (result.revoked) {
      say(`Revoked at ${grant.issuer} and deleted from ${store.kind}.`)
      return
    }
    say(`devicegate: deleted locally, but could not revoke at ${grant.issuer}: ${describeFailure(result.revocationError, grant)}`)
    say('  the tokens may stay valid until they expire; ask an administrator to revoke them centrally')
    process.exitCode = 1
  } catch (err) {
    fail(err)
  }
}

/** Registers `login`, `whoami`, `token` and `logout`. */
export function registerLoginCommands(program: Command): void {
  withStoreOptions(
    program
      .command('login')
      .description('log in with the device flow (RFC 8628): shows a code to approve in a browser, then stores the tokens safely')
      .addOption(new Option('--issuer <url>', 'authorization server (issuer) URL (default: the last login)').argParser(parseIssuer).env('DEVICEGATE_ISSUER'))
      .addOption(new Option('--client-id <id>', 'client ID registered for this tool (default: the last login)').env('DEVICEGATE_CLIENT_ID'))
      .option('--scope <scopes>', 'space-separated scopes to request')
      .option('--no-dpop', 'do not bind tokens to a DPoP key even when the server supports it')
      .option('--qr', 'show a QR code of the verification link (default: when stderr is a terminal)')
      .option('--no-qr', 'never show the QR code'),
  ).action((opts: LoginOptions) => login(opts))
  withStoreOptions(program.command('whoami').description('show who is logged in (claims decoded locally are marked unverified) and the stored profiles')).action((opts: StoreOptions) => whoami(opts))
  withStoreOptions(
    program
      .command('token')
      .description('print the current access token (refreshed when due); only to a pipe, or with --print')
      .option('--print', 'print even when stdout is a terminal'),
  ).action((opts: StoreOptions & { print?: boolean }) => token(opts))
  withStoreOptions(program.command('logout').description('revoke the tokens at the server (RFC 7009), then delete them locally')).action((opts: StoreOptions) => logout(opts))
}
