// The three targets: how to start each, its endpoints and clients, and how to approve a device
// flow on it (to obtain refresh tokens for scenario d).
import { mkdtempSync, readdirSync, readFileSync, existsSync, openSync, readSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, startProcess, stopProcess } from './proc.mjs'
import { Browser, csrfToken, hiddenInputs, mapLimit } from './http.mjs'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const HOST = '127.0.0.1'

export const DEMO_PASSWORD = 'bench-demo-password-0123456789'
export const DEMO_CLIENT_SECRET = 'bench-demo-api-secret-0123456789'

function pkgVersion(dir) {
  try {
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

/** Where the harness keeps logs and data of this run. */
export function makeRunDir() {
  return mkdtempSync(join(tmpdir(), 'devicegate-bench-'))
}

export function devicegateAvailable() {
  return existsSync(join(ROOT, 'bin', 'devicegate.js')) && existsSync(join(ROOT, 'dist'))
}

// ---------------------------------------------------------------------------------------------
// devicegate

/** Path of devicegate's SQLite file inside dataDir (the first *.db / *.sqlite found). */
export function findSqliteFile(dataDir) {
  const f = readdirSync(dataDir).find((n) => /\.(db|sqlite3?)$/.test(n))
  return f ? join(dataDir, f) : null
}

/** 'wal' when the SQLite file header says WAL (bytes 18–19 = 2), else 'rollback'; null without a file. */
export function sqliteJournalMode(dataDir) {
  const file = findSqliteFile(dataDir)
  if (!file) return null
  const header = Buffer.alloc(20)
  const fd = openSync(file, 'r')
  readSync(fd, header, 0, 20, 0)
  closeSync(fd)
  return header[18] === 2 && header[19] === 2 ? 'wal' : 'rollback'
}

export const devicegate = {
  name: 'devicegate',
  describe: () =>
    `devicegate ${pkgVersion(ROOT)}: bin/devicegate.js serve --dev, SQLite (WAL, synchronous=NORMAL, as shipped), fresh data dir`,
  /** @param opts.dataDir reuse a data dir (growth scenarios); default: a fresh one in runDir. */
  async start({ runDir, tag, dataDir, env = {} }) {
    const port = await freePort(HOST)
    dataDir ??= mkdtempSync(join(runDir, `devicegate-data-${tag}-`))
    const origin = `http://${HOST}:${port}`
    const child = await startProcess({
      cmd: process.execPath,
      // BENCH_DEVICEGATE_NODE_FLAGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": profile devicegate under load.
      args: [...(process.env.BENCH_DEVICEGATE_NODE_FLAGS ?? '').split(' ').filter(Boolean), 'bin/devicegate.js', 'serve', '--dev', '--host', HOST, '--port', String(port), '--data-dir', dataDir],
      cwd: ROOT,
      env: { DEVICEGATE_DEMO_PASSWORD: DEMO_PASSWORD, DEVICEGATE_DEMO_CLIENT_SECRET: DEMO_CLIENT_SECRET, ...env },
      logFile: join(runDir, `devicegate-${tag}.log`),
      readyUrl: `${origin}/.well-known/oauth-authorization-server`,
    })
    return {
      name: 'devicegate',
      journalMode: sqliteJournalMode(dataDir),
      child,
      pid: child.pid,
      dataDir,
      ...(await devicegateEndpoints(origin)),
      stop: () => stopProcess(child),
    }
  },
}

/**
 * What the scenarios need of a running devicegate (`--dev` clients) at `origin`: its endpoints from
 * the metadata (RFC 8414), the demo clients and scopes, and a way to approve user codes.
 */
export async function devicegateEndpoints(origin) {
  const meta = await (await fetch(`${origin}/.well-known/oauth-authorization-server`)).json()
  return {
    origin,
    endpoints: {
      deviceAuthorization: meta.device_authorization_endpoint,
      token: meta.token_endpoint,
      introspection: meta.introspection_endpoint,
      revocation: meta.revocation_endpoint,
    },
    publicClientId: 'demo-cli',
    confidentialClient: { id: 'demo-api', secret: DEMO_CLIENT_SECRET },
    deviceScope: 'read',
    refreshScope: 'read offline_access',
    ccScope: 'read',
    approve: (userCodes) => approveOnDevicegate(origin, userCodes),
  }
}

/**
 * Approves device flows through devicegate's verification pages, as a person would: one sign-in
 * (the session is rotated on sign-in), then one approval form per user code. Signs in as the
 * `--dev` user `demo` unless `as` names someone else.
 */
export async function approveOnDevicegate(origin, userCodes, as = { username: 'demo', password: DEMO_PASSWORD }) {
  const browsers = []
  const signIn = async (userCode) => {
    const b = new Browser(origin)
    let page = await b.request(`/device?user_code=${encodeURIComponent(userCode)}`)
    let csrf = csrfToken(page.text)
    if (!csrf) throw new Error(`devicegate /device: no csrf_token in page (status ${page.status})`)
    const signedIn = await b.request('/device/sign-in', {
      method: 'POST',
      fields: { username: as.username, password: as.password, csrf_token: csrf, user_code: userCode },
      follow: false,
    })
    if (signedIn.status !== 303) throw new Error(`devicegate sign-in answered ${signedIn.status}: ${signedIn.text.slice(0, 300)}`)
    return b
  }
  const approveOne = async (b, userCode) => {
    const page = await b.request(`/device?user_code=${encodeURIComponent(userCode)}`)
    const csrf = csrfToken(page.text)
    if (!csrf) throw new Error(`devicegate /device after sign-in: no csrf_token (status ${page.status})`)
    const res = await b.request('/device', {
      method: 'POST',
      fields: { user_code: userCode, csrf_token: csrf, decision: 'approve' },
    })
    if (res.status >= 400) throw new Error(`devicegate approve answered ${res.status}: ${res.text.slice(0, 300)}`)
  }
  // A few parallel browser sessions; each signs in once (argon2 is deliberately slow).
  const lanes = 4
  for (let i = 0; i < Math.min(lanes, userCodes.length); i++) browsers.push(await signIn(userCodes[i]))
  await mapLimit(userCodes, browsers.length, async (code, _i, lane) => approveOne(browsers[lane], code))
}

// ---------------------------------------------------------------------------------------------
// node-oidc-provider

export const oidcProvider = {
  name: 'oidc-provider',
  adapter: 'map',
  describe() {
    const storage =
      this.adapter === 'map'
        ? "IN-MEMORY, no persistence: its shipped MemoryAdapter over an unbounded Map (the shipped default caps it with a 1,000-entry LRU that evicts live codes/tokens here; --oidc-adapter default)"
        : 'IN-MEMORY, no persistence: its default adapter exactly as shipped (1,000-entry LRU: evicts live codes and tokens at these volumes)'
    return `node-oidc-provider ${pkgVersion(join(ROOT, 'node_modules', 'oidc-provider'))}: ${storage}; devInteractions; opaque tokens`
  },
  async start({ runDir, tag }) {
    const port = await freePort(HOST)
    const origin = `http://${HOST}:${port}`
    const child = await startProcess({
      cmd: process.execPath,
      args: ['bench/targets/oidc-provider.mjs', '--host', HOST, '--port', String(port), '--adapter', this.adapter],
      cwd: ROOT,
      logFile: join(runDir, `oidc-provider-${tag}.log`),
      readyUrl: `${origin}/.well-known/openid-configuration`,
    })
    const meta = await (await fetch(`${origin}/.well-known/openid-configuration`)).json()
    return {
      name: 'oidc-provider',
      child,
      pid: child.pid,
      origin,
      endpoints: {
        deviceAuthorization: meta.device_authorization_endpoint,
        token: meta.token_endpoint,
        introspection: meta.introspection_endpoint,
        revocation: meta.revocation_endpoint,
      },
      publicClientId: 'demo-cli',
      confidentialClient: { id: 'demo-api', secret: 'bench-demo-api-secret' },
      deviceScope: 'read',
      refreshScope: 'read offline_access',
      ccScope: 'read',
      approve: (userCodes) => approveOnOidcProvider(origin, userCodes),
      stop: () => stopProcess(child),
    }
  },
}

/** Walks oidc-provider's device pages and dev interactions (code entry, confirm, login, consent). */
async function approveOnOidcProvider(origin, userCodes) {
  const approveOne = async (b, userCode) => {
    let page = (await b.request('/device')).text
    let first = true
    for (let step = 0; step < 12; step++) {
      if (/Sign-in Success/.test(page)) return
      const action = /<form[^>]*action="([^"]+)"/.exec(page)?.[1]
      if (!action) break
      const fields = hiddenInputs(page)
      if (first) {
        fields.user_code = userCode
        first = false
      }
      if (fields.prompt === 'login') Object.assign(fields, { login: 'demo', password: 'demo' })
      page = (await b.request(action, { method: 'POST', fields })).text
    }
    throw new Error(`oidc-provider: device approval did not finish for ${userCode}: ${page.replace(/<style>[\s\S]*?<\/style>/, '').slice(0, 400)}`)
  }
  const lanes = 4
  const browsers = Array.from({ length: lanes }, () => new Browser(origin))
  await mapLimit(userCodes, lanes, (code, _i, lane) => approveOne(browsers[lane], code))
}

// ---------------------------------------------------------------------------------------------
// the limit

export const limit = {
  name: 'limit',
  describe: () => 'the limit: bare node:http, URLSearchParams body parse, same-size JSON answer, no store',
  async start({ runDir, tag, sizes }) {
    const port = await freePort(HOST)
    const origin = `http://${HOST}:${port}`
    const child = await startProcess({
      cmd: process.execPath,
      args: ['bench/targets/bare.mjs', '--host', HOST, '--port', String(port)],
      cwd: ROOT,
      logFile: join(runDir, `limit-${tag}.log`),
      readyUrl: `${origin}/`,
    })
    if (sizes && Object.keys(sizes).length) {
      await fetch(`${origin}/__bench/sizes`, { method: 'POST', body: JSON.stringify(sizes) })
    }
    return {
      name: 'limit',
      child,
      pid: child.pid,
      origin,
      endpoints: {
        deviceAuthorization: `${origin}/device_authorization`,
        token: `${origin}/token`,
        introspection: `${origin}/introspect`,
        revocation: `${origin}/revoke`,
      },
      publicClientId: 'demo-cli',
      confidentialClient: { id: 'demo-api', secret: 'limit' },
      deviceScope: 'read',
      refreshScope: 'read offline_access',
      ccScope: 'read',
      approve: async () => {},
      stop: () => stopProcess(child),
    }
  },
}

export const TARGETS = { devicegate, 'oidc-provider': oidcProvider, limit }
