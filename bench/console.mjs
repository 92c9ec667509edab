// Console list pages with 10,000 grants, 100,000 audit events and 10,000 people in the people
// store (issue 14, quality bar: every list page under 200 ms server time). Seeds a fresh SQLite
// data dir while the server is stopped,
// starts `bin/devicegate.js serve -c <generated config>`, signs in to /console as an admin with
// password + TOTP, then GETs each page N times, one request at a time on 127.0.0.1.
//
//   node bench/console.mjs [--grants 10000] [--audit 100000] [--people 10000] [--n 30]
//
// "Server time" is the round trip of one sequential request over loopback to the last body byte
// (request logging is off in devicegate; loopback adds well under 1 ms). `<tr>` counts the table
// rows of the page (header rows included), to show that a filter matched something.
import { createRequire } from 'node:module'
import { randomUUID } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { join } from 'node:path'
import { loadavg } from 'node:os'
import { ROOT, makeRunDir } from './lib/targets.mjs'
import { openDb, insertInto, hexIds, deviceGrantKeys, recordIds, requireColumns } from './lib/extra.mjs'
import { ADMIN, ADMIN_PASSWORD, DEVICE_CLIENTS, createSchema, enrollAdminTotp, percentile, startConfigured, totpNow, writeConfig } from './lib/configured.mjs'

const args = process.argv.slice(2)
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : def
}
const GRANTS = opt('grants', 10_000)
const AUDIT = opt('audit', 100_000)
const N = opt('n', 30)
const TARGET_MS = 200
/** Grant subjects: user0 … user199. */
const PEOPLE = 200
/** People stored (SCIM and upstream sign-in), user0 … user<STORED_PEOPLE - 1>; the first PEOPLE are the grant subjects. */
const STORED_PEOPLE = Math.max(PEOPLE, opt('people', 10_000))
const DAY = 86_400

const log = (s) => console.error(s)

/** Grants (each with its approved device authorization and a live access token), audit events with a valid chain, anomalies. */
async function seed(file) {
  const { chainHash } = await import(pathToFileURL(join(ROOT, 'dist', 'governance', 'audit.js')).href)
  const db = openDb(file)
  const now = Math.floor(Date.now() / 1000)
  const started = Date.now()
  try {
    const subjectOf = (i) => (i % 20 === 0 ? ADMIN : `user${i % PEOPLE}`)
    // Device codes in the current format (`<id>.<secret>`, deviceGrantKeys), as the server writes them.
    const dg = { id: '', device_code_hash: null, device_secret_hash: '', user_code: '', client_id: '', scope: 'read offline_access', status: 'redeemed', created_at: 0, expires_at: 0, interval_seconds: 5, last_polled_at: null, subject: '', decided_at: 0, request_ip: '', request_user_agent: 'bench-seed/1.0', dpop_jkt: null, grant_id: '' }
    requireColumns(db, 'device_grants', ['device_secret_hash'])
    const g = { id: '', client_id: '', subject: '', scope: 'read offline_access', created_at: 0, revoked_at: null, device_grant_id: '', expires_at: null, dpop_jkt: null, last_used_at: null, last_used_ip: null }
    const at = { token_hash: '', jti: '', grant_id: '', client_id: '', subject: '', scope: 'read', issued_at: 0, expires_at: 0, revoked_at: null, format: 'opaque', dpop_jkt: null }
    const insDg = insertInto(db, 'device_grants', dg)
    const insG = insertInto(db, 'grants', g)
    const insAt = insertInto(db, 'access_tokens', at)
    const h = hexIds(GRANTS)
    const dgKeys = deviceGrantKeys(GRANTS)
    const [familyIds, jtis] = [recordIds(GRANTS), recordIds(GRANTS)]
    const grantIds = []
    db.transaction(() => {
      for (let i = 0; i < GRANTS; i++) {
        const created = now - Math.floor((i / GRANTS) * 30 * DAY) - 60
        const id = familyIds(i, created * 1000)
        const keys = dgKeys(i, (created - 30) * 1000)
        const dgId = keys.id
        const client = DEVICE_CLIENTS[i % DEVICE_CLIENTS.length]
        const subject = subjectOf(i)
        const ip = `203.0.${i % 250}.${(i * 7) % 250}`
        grantIds.push(id)
        insDg({ ...dg, ...keys, user_code: `S${String(i).padStart(7, '0')}`, client_id: client, created_at: created - 30, expires_at: created + 570, subject, decided_at: created - 5, request_ip: ip, grant_id: id })
        insG({ ...g, id, client_id: client, subject, created_at: created, revoked_at: i % 10 === 9 ? created + 3600 : null, device_grant_id: dgId, last_used_at: i % 3 === 0 ? created + 600 : null, last_used_ip: i % 3 === 0 ? ip : null })
        insAt({ ...at, token_hash: `${h(i).slice(0, 60)}seed`, jti: jtis(i, created * 1000), grant_id: id, client_id: client, subject, issued_at: created, expires_at: created + 600 })
      }
    })()
    const ev = { seq: 0, time: 0, type: '', actor: null, client_id: null, subject: null, ip: null, grant_id: null, details: '', prev_hash: '', hash: '' }
    const insEv = insertInto(db, 'audit_events', ev)
    const head = db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1').get()
    let prev = head.hash
    let seq = Number(head.seq)
    const types = ['device_authorization.created', 'device_authorization.approved', 'token.issued', 'token.refreshed', 'grant.revoked']
    db.transaction(() => {
      for (let i = 0; i < AUDIT; i++) {
        seq++
        const k = i % GRANTS
        const body = { seq, time: now - Math.floor(((AUDIT - i) / AUDIT) * 30 * DAY), type: types[i % types.length], actor: subjectOf(k), clientId: DEVICE_CLIENTS[k % DEVICE_CLIENTS.length], subject: subjectOf(k), ip: `203.0.${k % 250}.${(k * 7) % 250}`, grantId: grantIds[k], details: { seeded: true } }
        const hash = chainHash(prev, body)
        insEv({ seq, time: body.time, type: body.type, actor: body.actor, client_id: body.clientId, subject: body.subject, ip: body.ip, grant_id: body.grantId, details: JSON.stringify(body.details), prev_hash: prev, hash })
        prev = hash
      }
      db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1').run(seq, prev)
    })()
    const an = { id: '', kind: 'new_network', time: 0, dedupe_key: '', client_id: '', subject: '', grant_id: '', ip: '', action: 'flag', details: '{}' }
    const insAn = insertInto(db, 'anomalies', an)
    db.transaction(() => {
      for (let i = 0; i < GRANTS / 10; i++) {
        const k = i * 10
        insAn({ ...an, id: randomUUID(), time: now - Math.floor((i / (GRANTS / 10)) * 7 * DAY), dedupe_key: `bench-${i}`, client_id: DEVICE_CLIENTS[k % DEVICE_CLIENTS.length], subject: subjectOf(k), grant_id: grantIds[k], ip: `198.51.100.${i % 250}` })
      }
    })()
    // People as SCIM and upstream sign-in store them: half each, one in twenty disabled and one in
    // fifty deleted (none of the grant subjects, whose grants the start-up sweep would revoke),
    // groups from the provider's claim or a SCIM group (every tenth person in `oncall`).
    const person = { id: '', user_name: '', display_name: '', email: '', status: 'active', source: 'scim', groups_json: '[]', risk: 0, upstream_issuer: null, upstream_sub: null, external_id: null, manager: null, password_hash: null, password_changed_at: null, scim_json: null, version: 1, created_at: 0, updated_at: 0 }
    const insPerson = insertInto(db, 'people', person)
    const insMember = insertInto(db, 'people_group_members', { group_id: '', person_id: '' })
    db.transaction(() => {
      const oncall = { id: 'oncall', display_name: 'oncall', external_id: null, version: 1, created_at: now - 40 * DAY, updated_at: now - 40 * DAY }
      insertInto(db, 'people_groups', oncall)(oncall)
      for (let i = 0; i < STORED_PEOPLE; i++) {
        const id = `user${i}`
        const upstream = i % 2 === 1
        const created = now - 40 * DAY + i
        const status = i < PEOPLE ? 'active' : i % 50 === 0 ? 'deleted' : i % 20 === 0 ? 'disabled' : 'active'
        insPerson({ ...person, id, user_name: `${id}@example.com`, display_name: `Person ${i}`, email: `${id}@example.com`, status, source: upstream ? 'provider' : 'scim', groups_json: JSON.stringify(upstream ? [`team-${i % 40}`] : []), risk: i % 7 === 0 ? 30 : 0, upstream_issuer: upstream ? 'https://idp.bench.example' : null, upstream_sub: upstream ? `sub-${i}` : null, external_id: upstream ? null : `ext-${i}`, created_at: created, updated_at: created })
        if (i % 10 === 0 && status !== 'deleted') insMember({ group_id: 'oncall', person_id: id })
      }
    })()
    const deepPerson = db.prepare('SELECT created_at, id FROM people ORDER BY created_at, id LIMIT 1 OFFSET ?').get(Math.max(0, STORED_PEOPLE - 50))
    // A cursor deep in the grant list: the keyset position of the grant 50 rows before the end.
    const deep = db.prepare('SELECT created_at, id FROM grants ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?').get(Math.max(0, GRANTS - 50))
    const cursor = (row) => Buffer.from(JSON.stringify([Number(row.created_at), row.id])).toString('base64url')
    return { seconds: (Date.now() - started) / 1000, deepCursor: cursor(deep), deepPersonCursor: cursor(deepPerson), lastSeq: seq }
  } finally {
    db.pragma('journal_mode = WAL')
    db.close()
  }
}

class Session {
  cookie = ''
  csrf = ''
  constructor(origin) {
    this.origin = origin
  }
  absorb(res, body) {
    const set = res.headers.getSetCookie().find((c) => c.startsWith('dg_console='))
    if (set) this.cookie = set.split(';')[0]
    const m = /name="csrf_token" value="([^"]+)"/.exec(body)
    if (m) this.csrf = m[1]
  }
  async get(path) {
    const t0 = process.hrtime.bigint()
    const res = await fetch(this.origin + path, { headers: this.cookie ? { cookie: this.cookie } : {}, redirect: 'manual' })
    const body = await res.text()
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    this.absorb(res, body)
    return { status: res.status, body, ms, location: res.headers.get('location') }
  }
  async post(path, form) {
    const res = await fetch(this.origin + path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookie, origin: this.origin },
      body: new URLSearchParams({ csrf_token: this.csrf, ...form }).toString(),
      redirect: 'manual',
    })
    const body = await res.text()
    this.absorb(res, body)
    return { status: res.status, body, location: res.headers.get('location') }
  }
}

const runDir = makeRunDir()
log(`run dir ${runDir}`)
const { configFile, dataDir } = await writeConfig(runDir, 'console')
const file = await createSchema(runDir, 'console', configFile, dataDir)
const secret = enrollAdminTotp(configFile)
log(`seeding ${GRANTS.toLocaleString('en-US')} grants, ${AUDIT.toLocaleString('en-US')} audit events and ${STORED_PEOPLE.toLocaleString('en-US')} people into ${file}`)
const seeded = await seed(file)
log(`seeded in ${seeded.seconds.toFixed(1)} s`)
const inst = await startConfigured(runDir, 'console', configFile)
try {
  const s = new Session(inst.origin)
  await s.get('/console/sign-in')
  const signIn = await s.post('/console/sign-in', { username: ADMIN, password: ADMIN_PASSWORD, totp: await totpNow(secret) })
  if (signIn.status !== 303) throw new Error(`console sign-in failed: ${signIn.status}\n${signIn.body.slice(0, 500)}`)
  const pages = [
    ['overview', '/console/'],
    ['grants', '/console/grants'],
    ['grants ?person=user7', '/console/grants?person=user7'],
    ['grants ?client&status=active', '/console/grants?client=cli&status=active'],
    ['grants ?tier=low', '/console/grants?tier=low'],
    ['grants ?network=203.0.1', '/console/grants?network=203.0.1'],
    ['grants ?dormant_days=7', '/console/grants?dormant_days=7'],
    ['grants far page (after)', `/console/grants?after=${seeded.deepCursor}`],
    ['anomalies', '/console/anomalies'],
    ['anomalies ?person=user10', '/console/anomalies?person=user10'],
    ['audit', '/console/audit'],
    ['audit ?person=user7', '/console/audit?person=user7'],
    ['audit far page (before)', `/console/audit?before=${Math.max(2, seeded.lastSeq - AUDIT + 200)}`],
    ['people', '/console/people'],
    ['people ?q=user123', '/console/people?q=user123'],
    ['people ?q=oncall&status=active', '/console/people?q=oncall&status=active'],
    ['people ?source=provider', '/console/people?source=provider'],
    ['people far page (after)', `/console/people?after=${seeded.deepPersonCursor}`],
    ['devices', '/console/devices'],
    ['my devices (ada: 500 grants)', '/console/my-devices'],
  ]
  const rows = []
  for (const [name, path] of pages) {
    const first = await s.get(path) // warm-up, and a check that the page renders
    if (first.status !== 200) throw new Error(`${path}: ${first.status}\n${first.body.slice(0, 300)}`)
    const times = []
    for (let i = 0; i < N; i++) times.push((await s.get(path)).ms)
    times.sort((a, b) => a - b)
    const p50 = percentile(times, 50)
    const p95 = percentile(times, 95)
    rows.push({ name, p50, p95, kb: first.body.length / 1024, tr: (first.body.match(/<tr[\s>]/g) ?? []).length })
    log(`  ${name}: p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms`)
  }
  const load = loadavg().map((x) => x.toFixed(1)).join(' ')
  console.log(`console list pages: ${GRANTS.toLocaleString('en-US')} grants, ${AUDIT.toLocaleString('en-US')} audit events, ${GRANTS / 10} anomalies, ${STORED_PEOPLE.toLocaleString('en-US')} people, SQLite; ${N} sequential GETs per page; load average ${load}`)
  console.log(`${'page'.padEnd(32)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'KB'.padStart(6)} ${'<tr>'.padStart(5)}  < ${TARGET_MS} ms`)
  for (const r of rows) console.log(`${r.name.padEnd(32)} ${r.p50.toFixed(1).padStart(8)} ${r.p95.toFixed(1).padStart(8)} ${r.kb.toFixed(0).padStart(6)} ${String(r.tr).padStart(5)}  ${r.p95 < TARGET_MS ? 'yes' : 'NO'}`)
} finally {
  await inst.stop()
}
