/**
 * the Shared Signals receiver with a transmitter built here on `jose` — RFC 8935 push
 * (202, or 400 with its `err` codes and nothing changed), once-only `jti` (a retransmission is
 * acknowledged and has one effect), RFC 8936 poll with acknowledgements and `setErrs`, and the
 * effects of CAEP and RISC events on people, grants, risk and device compliance, each audited.
 */
import { createServer, request, type Server } from 'node:http'
import { hash } from '@node-rs/argon2'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveAs, basic, FIXTURE, fixtureConfigFile, postForm, startTestServer, type TestServer } from './support/server.js'

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/'
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/'
const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code'

/** A SET transmitter: JWKS at /jwks, an RFC 8936 poll endpoint at /poll. */
interface Transmitter {
  issuer: string
  key: CryptoKey
  /** SETs waiting to be polled, by jti. */
  queue: Map<string, string>
  /** Poll request bodies received. */
  polls: { ack?: string[]; setErrs?: Record<string, { err: string }> }[]
  close(): Promise<void>
}

async function startTransmitter(): Promise<Transmitter> {
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'tx-1', alg: 'ES256', use: 'sig' }
  const tx = { issuer: '', key: privateKey, queue: new Map<string, string>(), polls: [] as Transmitter['polls'] }
  const server: Server = createServer((req, res) => {
    if (req.url === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json' })
      return void res.end(JSON.stringify({ keys: [jwk] }))
    }
    if (req.url === '/poll' && req.method === 'POST') {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        const parsed = JSON.parse(body) as { ack?: string[]; setErrs?: Record<string, { err: string }>; maxEvents?: number }
        tx.polls.push(parsed)
        for (const jti of [...(parsed.ack ?? []), ...Object.keys(parsed.setErrs ?? {})]) tx.queue.delete(jti)
        const sets = parsed.maxEvents === 0 ? {} : Object.fromEntries(tx.queue)
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ sets, moreAvailable: false }))
      })
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  tx.issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  return { ...tx, close: () => new Promise((r) => server.close(() => r())) } as Transmitter & typeof tx
}

let t: TestServer
let tx: Transmitter
let polled: Transmitter
let foreignKey: CryptoKey
let jtiCounter = 0

beforeAll(async () => {
  tx = await startTransmitter()
  polled = await startTransmitter()
  foreignKey = (await generateKeyPair('ES256')).privateKey
  process.env.DG_TEST_SSF_PUSH_AUTH = 'Bearer push-credential-0123456789'
  const file = await fixtureConfigFile()
  t = await startTestServer({
    config: await fixtureConfigFile({
      users: [...file.users, { username: 'erin', password_hash: await hash(FIXTURE.attackerPassword), risk: 0 }],
      identity: {
        shared_signals: {
          transmitters: [
            { issuer: tx.issuer, jwks_uri: `${tx.issuer}/jwks`, revoke_at_risk: 90 },
            { issuer: `${tx.issuer}/authenticated`, jwks_uri: `${tx.issuer}/jwks`, delivery: { method: 'push', authorization_env: 'DG_TEST_SSF_PUSH_AUTH' } },
            { issuer: polled.issuer, jwks_uri: `${polled.issuer}/jwks`, delivery: { method: 'poll', endpoint: `${polled.issuer}/poll`, every_seconds: 3600 } },
          ],
        },
      },
    }),
  })
})
afterAll(async () => {
  await t?.close()
  await tx?.close()
  await polled?.close()
})

interface SetOptions {
  iss?: string
  aud?: string
  jti?: string
  iat?: number
  key?: CryptoKey
  subject?: Record<string, unknown>
  event?: Record<string, unknown>
}

async function makeSet(type: string, o: SetOptions = {}): Promise<{ jwt: string; jti: string }> {
  const jti = o.jti ?? `set-${++jtiCounter}`
  const jwt = await new SignJWT({ jti, sub_id: o.subject ?? { format: 'opaque', id: 'alice' }, events: { [type]: o.event ?? {} } })
    .setProtectedHeader({ alg: 'ES256', kid: 'tx-1', typ: 'secevent+jwt' })
    .setIssuer(o.iss ?? tx.issuer)
    .setAudience(o.aud ?? t.issuer)
    .setIssuedAt(o.iat ?? Math.floor(Date.now() / 1000))
    .sign(o.key ?? tx.key)
  return { jwt, jti }
}

async function push(jwt: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${t.url}/ssf/push`, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt', ...headers }, body: jwt })
  const text = await res.text()
  return { status: res.status, json: text ? (JSON.parse(text) as { err: string; description: string }) : undefined }
}

async function tokensFor(user: string) {
  const auth = await postForm(`${t.url}/device_authorization`, { client_id: 'cli', scope: 'read offline_access' })
  await approveAs(t.url, auth.json.user_code, 'approve', user)
  return (await postForm(`${t.url}/token`, { grant_type: DEVICE, device_code: auth.json.device_code, client_id: 'cli' })).json as { access_token: string }
}
const active = async (token: string) => (await postForm(`${t.url}/introspect`, { token }, { authorization: basic('rs', FIXTURE.rsSecret) })).json.active as boolean
const received = async () =>
  (await t.server.store.listAuditEvents({ limit: 10_000 })).filter((e) => e.type === 'security_event.received').map((e) => JSON.parse(e.details) as { jti: string; effect: string; events: string[] })

describe('RFC 8935 push: refused SETs answer 400 with the right err and change nothing', () => {
  let token: string
  beforeAll(async () => {
    token = (await tokensFor('alice')).access_token
  })
  const cases: [string, () => Promise<string>, string][] = [
    ['a signature by a key outside the transmitter\'s JWKS', async () => (await makeSet(`${CAEP}session-revoked`, { key: foreignKey, jti: 'bad-sig' })).jwt, 'invalid_key'],
    ['an unknown issuer', async () => (await makeSet(`${CAEP}session-revoked`, { iss: 'https://stranger.example' })).jwt, 'invalid_issuer'],
    ['another audience', async () => (await makeSet(`${CAEP}session-revoked`, { aud: 'https://someone-else.example' })).jwt, 'invalid_audience'],
    ['an old iat', async () => (await makeSet(`${CAEP}session-revoked`, { iat: Math.floor(Date.now() / 1000) - 7 * 86_400 })).jwt, 'invalid_request'],
    ['a body that is not a JWT', async () => 'not-a-jwt', 'invalid_request'],
    [
      'an unsigned SET (alg: none)',
      async () => {
        const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
        return `${enc({ alg: 'none', typ: 'secevent+jwt' })}.${enc({ iss: tx.issuer, aud: t.issuer, iat: Math.floor(Date.now() / 1000), jti: 'none-1', events: { [`${CAEP}session-revoked`]: {} }, sub_id: { format: 'opaque', id: 'alice' } })}.`
      },
      'invalid_key',
    ],
    ['a push from a transmitter configured for poll', async () => (await makeSet(`${CAEP}session-revoked`, { iss: polled.issuer, key: polled.key })).jwt, 'access_denied'],
    ['a push without the Authorization the transmitter must send', async () => (await makeSet(`${CAEP}session-revoked`, { iss: `${tx.issuer}/authenticated` })).jwt, 'authentication_failed'],
  ]
  for (const [name, build, err] of cases) {
    it(`${name}: 400 ${err}`, async () => {
      const res = await push(await build())
      expect(res.status).toBe(400)
      expect(res.json?.err).toBe(err)
      expect(typeof res.json?.description).toBe('string')
      expect(await active(token)).toBe(true)
    })
  }

  it('a body of another media type: 400 invalid_request', async () => {
    const { jwt } = await makeSet(`${CAEP}session-revoked`)
    const res = await fetch(`${t.url}/ssf/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ set: jwt }) })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { err: string }).err).toBe('invalid_request')
    expect(await active(token)).toBe(true)
  })

  it('what the server refuses before the push route (Content-Encoding: 415, an HTTP/1.1 request without Host: 400, an unmet Expect: 417) keeps its status in the §2.3 body, not a 500, and changes nothing', async () => {
    const { jwt } = await makeSet(`${CAEP}session-revoked`)
    for (const [headers, setHost, status] of [
      [{ 'content-encoding': 'gzip' }, true, 415],
      [{}, false, 400],
      [{ expect: 'fly' }, true, 417],
    ] as const) {
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${t.url}/ssf/push`, { method: 'POST', setHost, headers: { 'content-type': 'application/secevent+jwt', ...headers } }, (r) => {
          let body = ''
          r.on('data', (d: Buffer) => (body += d.toString('utf8')))
          r.on('end', () => resolve({ status: r.statusCode!, body }))
        })
        req.on('error', reject)
        req.end(jwt)
      })
      expect(res.status, JSON.stringify(headers)).toBe(status)
      expect(JSON.parse(res.body), JSON.stringify(headers)).toMatchObject({ err: 'invalid_request', description: expect.any(String) })
    }
    expect(await active(token)).toBe(true)
  })

  it('a refused SET records nothing: the same jti, correctly signed later, is applied', async () => {
    const res = await push((await makeSet(`${CAEP}session-revoked`, { jti: 'bad-sig' })).jwt)
    expect(res.status).toBe(202)
    expect(await active(token)).toBe(false)
  })

  it('a repeated Authorization field: 400 invalid_request, even when a line is the right one (RFC 9110 §5.3)', async () => {
    const right = process.env.DG_TEST_SSF_PUSH_AUTH!
    for (const pair of [[right, 'Bearer wrong'], ['Bearer wrong', right]]) {
      const { jwt } = await makeSet(`${RISC}account-enabled`, { iss: `${tx.issuer}/authenticated` })
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${t.url}/ssf/push`, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt' } }, (r) => {
          let body = ''
          r.on('data', (d: Buffer) => (body += d.toString('utf8')))
          r.on('end', () => resolve({ status: r.statusCode!, body }))
        })
        req.on('error', reject)
        req.setHeader('Authorization', pair) // two field lines
        req.end(jwt)
      })
      expect({ pair, status: res.status, json: JSON.parse(res.body) }).toEqual({ pair, status: 400, json: { err: 'invalid_request', description: 'the Authorization header must be sent once' } })
    }
  })

  it('the right Authorization header is accepted', async () => {
    const res = await push((await makeSet(`${RISC}account-enabled`, { iss: `${tx.issuer}/authenticated` })).jwt, { authorization: process.env.DG_TEST_SSF_PUSH_AUTH! })
    expect(res.status).toBe(202)
  })
})

describe('effects, applied once and audited with jti and effect', () => {
  it('CAEP session-revoked revokes the subject\'s grants; a retransmission is acknowledged and has no second effect', async () => {
    const first = await tokensFor('alice')
    const set = await makeSet(`${CAEP}session-revoked`)
    expect((await push(set.jwt)).status).toBe(202)
    expect(await active(first.access_token)).toBe(false)
    const second = await tokensFor('alice')
    expect((await push(set.jwt)).status).toBe(202)
    expect(await active(second.access_token)).toBe(true)
    const audit = (await received()).filter((e) => e.jti === set.jti)
    expect(audit.map((e) => e.effect)).toEqual(['applied:revoked_grants=1', 'retransmission'])
  })

  it('CAEP credential-change revokes', async () => {
    const tok = await tokensFor('alice')
    expect((await push((await makeSet(`${CAEP}credential-change`, { event: { credential_type: 'password', change_type: 'update' } })).jwt)).status).toBe(202)
    expect(await active(tok.access_token)).toBe(false)
  })

  it('an event type devicegate does not handle is acknowledged, audited and changes nothing', async () => {
    const tok = await tokensFor('alice')
    const set = await makeSet('https://schemas.example.com/secevent/unknown-thing')
    expect((await push(set.jwt)).status).toBe(202)
    expect(await active(tok.access_token)).toBe(true)
    expect((await received()).find((e) => e.jti === set.jti)?.effect).toBe('ignored:unhandled_event')
  })

  it('an unknown subject is acknowledged and changes nothing', async () => {
    const set = await makeSet(`${CAEP}session-revoked`, { subject: { format: 'email', email: 'nobody@example.com' } })
    expect((await push(set.jwt)).status).toBe(202)
    expect((await received()).find((e) => e.jti === set.jti)?.effect).toBe('ignored:subject_unknown')
  })

  it('CAEP risk-level-change sets the risk policy sees; at revoke_at_risk it revokes too', async () => {
    const tok = await tokensFor('erin')
    await push((await makeSet(`${CAEP}risk-level-change`, { subject: { format: 'opaque', id: 'erin' }, event: { current_level: 'MEDIUM', principal: 'USER' } })).jwt)
    expect(t.server.identity.directory.get('erin')?.risk).toBe(50)
    expect(await active(tok.access_token)).toBe(true)
    await push((await makeSet(`${CAEP}risk-level-change`, { subject: { format: 'opaque', id: 'erin' }, event: { current_level: 'HIGH', principal: 'USER' } })).jwt)
    expect(t.server.identity.directory.get('erin')?.risk).toBe(90)
    expect(await active(tok.access_token)).toBe(false)
    await push((await makeSet(`${CAEP}assurance-level-change`, { subject: { format: 'opaque', id: 'erin' }, event: { namespace: 'NIST-AAL', current_level: 'nist-aal2', change_direction: 'increase' } })).jwt)
    expect(t.server.identity.directory.get('erin')?.risk).toBe(10)
  })

  it('RISC account-disabled disables and revokes; account-enabled re-enables', async () => {
    const tok = await tokensFor('erin')
    await push((await makeSet(`${RISC}account-disabled`, { subject: { format: 'complex', user: { format: 'opaque', id: 'erin' } }, event: { reason: 'hijacking' } })).jwt)
    expect(t.server.identity.directory.get('erin')?.disabled).toBe(true)
    expect(await active(tok.access_token)).toBe(false)
    await push((await makeSet(`${RISC}account-enabled`, { subject: { format: 'opaque', id: 'erin' } })).jwt)
    expect(t.server.identity.directory.get('erin')?.disabled).toBe(false)
  })

  it('RISC identifier-changed updates the email', async () => {
    const person = t.server.identity.directory.person('erin')!
    await t.server.identity.people.update({ ...person, email: 'erin@old.example' }, 'test', 'test')
    await push((await makeSet(`${RISC}identifier-changed`, { subject: { format: 'email', email: 'erin@old.example' }, event: { 'new-value': 'erin@new.example' } })).jwt)
    expect(t.server.identity.directory.person('erin')?.email).toBe('erin@new.example')
  })

  it('CAEP device-compliance-change marks the device not compliant for policy', async () => {
    await push((await makeSet(`${CAEP}device-compliance-change`, { subject: { format: 'complex', device: { format: 'opaque', id: 'jkt-of-laptop' } }, event: { previous_status: 'compliant', current_status: 'not-compliant' } })).jwt)
    expect((await t.server.store.findDeviceCompliance('jkt-of-laptop'))?.status).toBe('not-compliant')
  })

  it('RISC account-purged deletes the person', async () => {
    const tok = await tokensFor('mallory')
    await push((await makeSet(`${RISC}account-purged`, { subject: { format: 'opaque', id: 'mallory' } })).jwt)
    expect(t.server.identity.directory.get('mallory')).toBeUndefined()
    expect(await active(tok.access_token)).toBe(false)
  })
})

describe('RFC 8936 poll', () => {
  it('fetches SETs, applies the valid ones, acknowledges them and reports the refused ones in setErrs', async () => {
    const tok = await tokensFor('alice')
    const good = await makeSet(`${CAEP}session-revoked`, { iss: polled.issuer, key: polled.key })
    const wrongAud = await makeSet(`${CAEP}session-revoked`, { iss: polled.issuer, key: polled.key, aud: 'https://elsewhere.example' })
    polled.queue.set(good.jti, good.jwt)
    polled.queue.set(wrongAud.jti, wrongAud.jwt)
    const transmitter = t.server.config.identity.sharedSignals.transmitters.find((x) => x.issuer === polled.issuer)!
    expect(await t.server.identity.signals!.poll(transmitter)).toEqual({ accepted: 1, refused: 1 })
    expect(await active(tok.access_token)).toBe(false)
    const last = polled.polls.at(-1)!
    expect(last.ack).toEqual([good.jti])
    expect(last.setErrs).toEqual({ [wrongAud.jti]: { err: 'invalid_audience', description: expect.any(String) } })
    expect(polled.queue.size).toBe(0)
    // Polling again finds nothing and changes nothing.
    expect(await t.server.identity.signals!.poll(transmitter)).toEqual({ accepted: 0, refused: 0 })
  })
})
