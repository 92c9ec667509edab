// Deprovisioning latency (issue 12, "Speed and reliability"): the time from
//   - a SCIM deactivation (PATCH /scim/v2/Users/{id} `active: false`, RFC 7644 §3.5.2, as Entra ID
//     and Okta send it), and
//   - a Security Event Token pushed to devicegate's Shared Signals receiver (RFC 8935 POST
//     /ssf/push; CAEP session-revoked by default, RISC account-disabled with --set-event),
// to token introspection (RFC 7662) answering `active: false` (target < 1 s) and to the resource
// helper (`devicegate/resource`) refusing the token (target < 2 s), in each revocation mode it
// offers: introspection (1 s cache), the revocation feed (polled every 1 s), a Shared Signals
// stream polled every 1 s (RFC 8936) and a Shared Signals push stream (RFC 8935). For a person with
// 1 and with 10,000 grants, on SQLite and (with --pg) on PostgreSQL.
//
//   npm run build && node bench/identity.mjs [--grants 1,10000] [--triggers scim,set]
//        [--modes introspection,feed,ssf-poll,ssf-push] [--set-event session-revoked|account-disabled]
//        [--pg postgres://postgres@127.0.0.1:5432/test]
//
// Per store: start `bin/devicegate.js serve -c <config>` on a fresh data dir (or a fresh PostgreSQL
// schema, dropped afterwards), create one person per (trigger, size) over SCIM, stop, give each a
// local password (`devicegate users set-password`), seed n − 1 grants with a live opaque access
// token each straight into the database, start again. The helpers run in this process (the
// `dist/resource` build), as an API would embed them. Per person: one real device flow (client
// `cli`, approved on the verification pages as that person) gives an RFC 9068 JWT access token
// (its family is the newest of the person's, so a mass revocation reaches it last); every helper
// accepts it; then the trigger is sent and, from that moment, introspection is polled back to back
// and each helper is asked every 5 ms until it refuses. Before the next person, every SET of the
// revocation has left the outbox (so one revocation's backlog does not delay the next).
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT, exportJWK, generateKeyPair } from 'jose'
import { ROOT, approveOnDevicegate, findSqliteFile, makeRunDir } from './lib/targets.mjs'
import { PROVISIONER_SECRET, startConfigured, writeConfig } from './lib/configured.mjs'
import { clientToken, createPgSchema, openInspector, rowsFor, seedPgRows, seedSqliteRows, undelivered } from './lib/seed.mjs'

const { createResourceServer } = await import('../dist/resource/index.js')
const requireFromRoot = createRequire(join(ROOT, 'package.json'))
const args = process.argv.slice(2)
const arg = (name) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
const SIZES = (arg('grants') ?? '1,10000').split(',').map(Number)
const TRIGGERS = (arg('triggers') ?? 'scim,set').split(',')
const MODES = (arg('modes') ?? 'introspection,feed,ssf-poll,ssf-push').split(',')
const SET_EVENT = arg('set-event') ?? 'session-revoked'
const PG = arg('pg')
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User'
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
const EVENT_URI = {
  'session-revoked': 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
  'credential-change': 'https://schemas.openid.net/secevent/caep/event-type/credential-change',
  'account-disabled': 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
}
if (!EVENT_URI[SET_EVENT]) throw new Error(`--set-event: one of ${Object.keys(EVENT_URI).join(', ')}`)
const TRANSMITTER = 'https://transmitter.bench.example'
const RECEIVER_SECRET = 'bench-receiver-secret-0123456789'
const PERSON_PASSWORD = 'bench-person-password-0123456789'
const basic = 'Basic ' + Buffer.from(`provisioner:${PROVISIONER_SECRET}`).toString('base64')
const log = (s) => console.error(s)
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

async function scim(origin, token, method, path, body) {
  const res = await fetch(`${origin}/scim/v2${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json' }, ...(body ? { body: JSON.stringify(body) } : {}) })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : undefined }
}

async function introspect(endpoint, token) {
  const res = await fetch(endpoint, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }).toString() })
  const j = await res.json()
  if (res.status !== 200) throw new Error(`introspection: ${res.status} ${JSON.stringify(j)}`)
  return j.active
}

/** One real device flow for client `cli`, approved as `userName`: @returns the JWT access token. */
async function deviceFlowToken(origin, meta, userName) {
  const form = (o) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(o).toString() })
  const da = await (await fetch(meta.device_authorization_endpoint, form({ client_id: 'cli', scope: 'read' }))).json()
  if (!da.device_code) throw new Error(`device authorization failed: ${JSON.stringify(da)}`)
  await approveOnDevicegate(origin, [da.user_code], { username: userName, password: PERSON_PASSWORD })
  const tok = await (await fetch(meta.token_endpoint, form({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', client_id: 'cli', device_code: da.device_code }))).json()
  if (!tok.access_token || tok.access_token.split('.').length !== 3) throw new Error(`device flow token: ${JSON.stringify(tok)}`)
  return tok.access_token
}

/** This process's HTTP side: the transmitter's JWKS and the push endpoint of the SSF push helper. */
async function startBenchHttp() {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench-1', alg: 'ES256', use: 'sig' }
  let pushHelper
  const server = createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', async () => {
      if (req.method === 'GET' && req.url === '/jwks') {
        res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: [jwk] }))
        return
      }
      if (req.method === 'POST' && req.url === '/ssf-events' && pushHelper?.receiveSsfPush) {
        const out = await pushHelper.receiveSsfPush({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers })
        res.writeHead(out.status, out.body ? { 'content-type': 'application/json' } : {}).end(out.body ? JSON.stringify(out.body) : undefined)
        return
      }
      res.writeHead(404).end()
    })
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const base = `http://127.0.0.1:${server.address().port}`
  return {
    base,
    setPushHelper: (h) => (pushHelper = h),
    /** Signs one SET about the person (RFC 9493 `opaque` subject: the person id). */
    sign: (audience, personId) =>
      new SignJWT({ jti: randomUUID(), sub_id: { format: 'opaque', id: personId }, events: { [EVENT_URI[SET_EVENT]]: { event_timestamp: Math.floor(Date.now() / 1000) } } })
        .setProtectedHeader({ alg: 'ES256', kid: 'bench-1', typ: 'secevent+jwt' })
        .setIssuer(TRANSMITTER)
        .setAudience(audience)
        .setIssuedAt()
        .sign(privateKey),
    close: () => new Promise((r) => server.close(r)),
  }
}

/** The resource helpers under test, one per mode; `accepts(token)` → true, or the refusal code. */
function startHelpers(origin, bench) {
  const helpers = {}
  const provisioner = { clientId: 'provisioner', clientSecret: PROVISIONER_SECRET }
  const receiver = { clientId: 'receiver', clientSecret: RECEIVER_SECRET }
  const make = (revocation) => createResourceServer({ issuer: origin, audience: origin, revocation })
  for (const mode of MODES) {
    if (mode === 'introspection') helpers[mode] = make({ mode: 'introspection', credentials: provisioner })
    else if (mode === 'feed') helpers[mode] = make({ mode: 'feed', credentials: provisioner })
    else if (mode === 'ssf-poll') helpers[mode] = make({ mode: 'ssf', credentials: receiver })
    else if (mode === 'ssf-push') {
      helpers[mode] = make({ mode: 'ssf', credentials: receiver, delivery: { push: { endpointUrl: `${bench.base}/ssf-events` } } })
      bench.setPushHelper(helpers[mode])
    } else throw new Error(`unknown mode ${mode}`)
  }
  return helpers
}

async function verdict(helper, token) {
  try {
    await helper.verifyRequest({ method: 'GET', url: '/thing', headers: { authorization: `Bearer ${token}`, host: 'api.example' } })
    return true
  } catch (err) {
    return err.error ?? String(err)
  }
}

async function runStore(store, runDir, bench) {
  const pg = store === 'postgres' ? await createPgSchema(PG, 'identity') : undefined
  try {
    const { hash } = requireFromRoot('@node-rs/argon2')
    const extra = {
      scopes: { ssf: 'Shared Signals receiver' },
      clients: [{ client_id: 'receiver', name: 'Bench receiver', type: 'confidential', client_secret_hash: await hash(RECEIVER_SECRET), grant_types: ['client_credentials'], scopes: ['ssf'] }],
      identity: { shared_signals: { transmitters: [{ issuer: TRANSMITTER, jwks_uri: `${bench.base}/jwks` }] } },
      signals: { allow_private_endpoints: true, ssf: { allow_http_push: true } },
    }
    const { configFile, dataDir } = await writeConfig(runDir, `identity-${store}`, { ...(pg ? { storageUrl: pg.storageUrl } : {}), extra })
    // 1. people over SCIM, one per (trigger, size)
    let inst = await startConfigured(runDir, `identity-${store}-setup`, configFile)
    const people = []
    try {
      const token = await clientToken(inst.origin, basic, 'scim')
      for (const trigger of TRIGGERS)
        for (const n of SIZES) {
          const userName = `bench-${trigger}-${n}@example.com`
          const res = await scim(inst.origin, token, 'POST', '/Users', { schemas: [USER], userName, name: { givenName: 'Bench', familyName: `${trigger} ${n}` }, active: true })
          if (res.status !== 201) throw new Error(`SCIM POST /Users: ${res.status} ${JSON.stringify(res.json)}`)
          people.push({ trigger, n, id: res.json.id, userName })
        }
    } finally {
      await inst.stop()
    }
    // 2. a local password each (to approve one real device flow), and n − 1 seeded grants
    for (const p of people)
      execFileSync(process.execPath, ['bin/devicegate.js', 'users', 'set-password', p.id, '-c', configFile], { cwd: ROOT, input: `${PERSON_PASSWORD}\n`, stdio: ['pipe', 'ignore', 'inherit'] })
    const sets = people.map((p) => rowsFor(p.id, p.n - 1))
    const seedStarted = Date.now()
    if (pg) await seedPgRows(pg.storageUrl, sets)
    else seedSqliteRows(findSqliteFile(dataDir), sets)
    log(`  ${store}: seeded ${people.map((p) => p.n - 1).join(' + ')} grants in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s`)
    // 3. per person: a real token, accepted everywhere; the trigger; watch until refused everywhere
    inst = await startConfigured(runDir, `identity-${store}`, configFile)
    const inspector = await openInspector(pg ? { storageUrl: pg.storageUrl } : { sqliteFile: findSqliteFile(dataDir) })
    const helpers = startHelpers(inst.origin, bench)
    const out = []
    try {
      const meta = await (await fetch(`${inst.origin}/.well-known/oauth-authorization-server`)).json()
      const scimToken = await clientToken(inst.origin, basic, 'scim')
      if (MODES.some((m) => m.startsWith('ssf-'))) {
        // Both helpers register their streams in the background; wait for them.
        const ssfToken = await clientToken(inst.origin, 'Basic ' + Buffer.from(`receiver:${RECEIVER_SECRET}`).toString('base64'), 'ssf')
        const want = MODES.filter((m) => m.startsWith('ssf-')).length
        for (let i = 0; ; i++) {
          const streams = await (await fetch(`${inst.origin}/ssf/stream`, { headers: { authorization: `Bearer ${ssfToken}` } })).json()
          if (Array.isArray(streams) && streams.length >= want) break
          if (i > 100) throw new Error(`SSF helpers registered ${JSON.stringify(streams)}`)
          await sleep(100)
        }
      }
      for (const p of people) {
        const token = await deviceFlowToken(inst.origin, meta, p.userName)
        if ((await introspect(meta.introspection_endpoint, token)) !== true) throw new Error(`${store}: the token of ${p.userName} is not active`)
        for (const [mode, h] of Object.entries(helpers)) {
          const v = await verdict(h, token)
          if (v !== true) throw new Error(`${store}: helper ${mode} refuses the fresh token of ${p.userName}: ${v}`)
        }
        const load = loadavg()
        const t0 = process.hrtime.bigint()
        const answer =
          p.trigger === 'scim'
            ? scim(inst.origin, scimToken, 'PATCH', `/Users/${p.id}`, { schemas: [PATCH_OP], Operations: [{ op: 'replace', value: { active: false } }] })
            : bench.sign(inst.origin, p.id).then((set) => fetch(`${inst.origin}/ssf/push`, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt' }, body: set }).then(async (r) => ({ status: r.status, json: await r.text() })))
        const answered = answer.then((r) => ({ ...r, ms: ms(t0) }))
        // When every SET (and webhook) of this revocation has left the outbox; also holds the next
        // person back until then, so one revocation's backlog does not delay the next.
        const drained = (async () => {
          await answered // the revocation has committed (its outbox rows with it)
          for (;;) {
            await sleep(50)
            if ((await undelivered(inspector)) === 0) return ms(t0)
            if (ms(t0) > 600_000) return null
          }
        })()
        const watchIntrospection = (async () => {
          let polls = 0
          for (;;) {
            polls++
            if ((await introspect(meta.introspection_endpoint, token)) === false) return { ms: ms(t0), polls }
            if (ms(t0) > 60_000) return { ms: null, polls }
          }
        })()
        const watchHelpers = Object.entries(helpers).map(async ([mode, h]) => {
          const other = new Set()
          for (;;) {
            const v = await verdict(h, token)
            if (v === 'invalid_token') return [mode, { ms: ms(t0), other: [...other] }]
            if (v !== true) other.add(v)
            if (ms(t0) > 60_000) return [mode, { ms: null, other: [...other] }]
            await sleep(5)
          }
        })
        const r = await answered
        const okStatus = p.trigger === 'scim' ? 200 : 202
        if (r.status !== okStatus) throw new Error(`${store}: ${p.trigger} answered ${r.status} ${JSON.stringify(r.json)}`)
        const intro = await watchIntrospection
        const refused = Object.fromEntries(await Promise.all(watchHelpers))
        const drainedMs = await drained
        const row = { store, trigger: p.trigger, grants: p.n, answerMs: r.ms, inactiveMs: intro.ms, polls: intro.polls, refused, drainedMs, load }
        out.push(row)
        log(`  ${store} ${p.trigger} ${p.n}: answered ${r.ms.toFixed(0)} ms, introspection inactive ${intro.ms?.toFixed(0)} ms (${intro.polls} polls), ${Object.entries(refused).map(([m, x]) => `${m} ${x.ms?.toFixed(0)} ms${x.other.length ? ` (also ${x.other.join(',')})` : ''}`).join(', ')}; outbox drained ${drainedMs?.toFixed(0)} ms; load ${load}`)
      }
    } finally {
      for (const h of Object.values(helpers)) h.close()
      await inspector.close()
      await inst.stop()
    }
    return out
  } finally {
    await pg?.drop()
  }
}

const runDir = makeRunDir()
log(`run dir ${runDir}`)
const bench = await startBenchHttp()
let rows
try {
  rows = [...(await runStore('sqlite', runDir, bench)), ...(PG ? await runStore('postgres', runDir, bench) : [])]
} finally {
  await bench.close()
}
const f = (x) => (x == null ? '-' : x.toFixed(0))
console.log(`revocation → introspection active:false (< 1 s) and resource helper refusing (< 2 s); ms from the trigger; SET = ${SET_EVENT}`)
const header = ['store'.padEnd(9), 'trigger'.padEnd(7), 'grants'.padStart(6), 'answer'.padStart(7), 'introspect'.padStart(10), ...MODES.map((m) => m.padStart(13)), 'outbox empty'.padStart(12), '  load (1/5/15 min)']
console.log(header.join(' '))
for (const r of rows) {
  const ok = r.inactiveMs != null && r.inactiveMs < 1000
  console.log(
    [
      r.store.padEnd(9),
      (r.trigger === 'set' ? 'SET' : 'SCIM').padEnd(7),
      String(r.grants).padStart(6),
      f(r.answerMs).padStart(7),
      `${f(r.inactiveMs)}${ok ? '' : '!'}`.padStart(10),
      ...MODES.map((m) => `${f(r.refused[m]?.ms)}${r.refused[m]?.ms != null && r.refused[m].ms < 2000 ? '' : '!'}`.padStart(13)),
      f(r.drainedMs).padStart(12),
      `  ${r.load}`,
    ].join(' '),
  )
}
console.log("('!' marks a figure over its target; 'outbox empty' is when every SET and webhook of the revocation had been pushed)")
