/**
 * Shared Signals transmitter (OpenID SSF 1.0, CAEP 1.0, RFC 8417, RFC 8935, RFC 8936): transmitter
 * metadata, stream management with its errors, session-revoked for grant revocations, credential-
 * change for retired devices, verification events, subjects, push delivery with retries and
 * order, poll with acknowledgement. Every SET is verified with jose by receivers built here.
 */
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EVENT_TYPES } from '../src/signals/ssf/events.js'
import { postForm, startTestServer, type TestServer } from './support/server.js'
import { clientToken, deviceLogin, json, signalsConfig, startPushReceiver, type PushReceiver } from './support/signals.js'

const PUSH = 'urn:ietf:rfc:8935'
const POLL = 'urn:ietf:rfc:8936'
let t: TestServer
let token: string
let receiver: PushReceiver

beforeAll(async () => {
  t = await startTestServer({ config: await signalsConfig() })
  token = await clientToken(t.url, 'receiver')
  receiver = await startPushReceiver({ transmitter: t.url, issuer: t.issuer, audience: 'receiver' })
})
afterAll(async () => {
  await receiver?.close()
  await t?.close()
})

const streamUrl = () => `${t.url}/ssf/stream`

async function createPushStream(extra: Record<string, unknown> = {}, as = token) {
  const res = await json(streamUrl(), 'POST', as, { delivery: { method: PUSH, endpoint_url: receiver.url, authorization_header: 'Bearer receiver-inbound-secret' }, description: 'test', ...extra })
  expect(res.status).toBe(201)
  return res.body as Record<string, any>
}

async function deleteAllStreams(as = token) {
  const list = await json(streamUrl(), 'GET', as)
  for (const s of list.body as { stream_id: string }[]) await json(`${streamUrl()}?stream_id=${s.stream_id}`, 'DELETE', as)
}

describe('SSF 1.0 §7 transmitter configuration metadata', () => {
  it('serves /.well-known/ssf-configuration with both delivery methods and every endpoint', async () => {
    const res = await json(`${t.url}/.well-known/ssf-configuration`, 'GET', undefined)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      spec_version: '1_0',
      issuer: t.issuer,
      jwks_uri: `${t.issuer}/jwks`,
      delivery_methods_supported: [PUSH, POLL],
      configuration_endpoint: `${t.issuer}/ssf/stream`,
      status_endpoint: `${t.issuer}/ssf/status`,
      add_subject_endpoint: `${t.issuer}/ssf/subjects/add`,
      remove_subject_endpoint: `${t.issuer}/ssf/subjects/remove`,
      verification_endpoint: `${t.issuer}/ssf/verify`,
      default_subjects: 'ALL',
    })
  })
})

describe('SSF 1.0 §8.1 stream management', () => {
  it('creates, reads, updates, replaces and deletes a stream', async () => {
    const created = await createPushStream({ events_requested: [EVENT_TYPES.sessionRevoked, 'urn:example:unknown'] })
    expect(created).toMatchObject({
      iss: t.issuer,
      aud: 'receiver',
      events_requested: [EVENT_TYPES.sessionRevoked, 'urn:example:unknown'],
      events_delivered: [EVENT_TYPES.sessionRevoked],
      delivery: { method: PUSH, endpoint_url: receiver.url },
    })
    expect(created.events_supported).toEqual(expect.arrayContaining([EVENT_TYPES.sessionRevoked, EVENT_TYPES.credentialChange, EVENT_TYPES.tokenClaimsChange]))
    expect(JSON.stringify(created)).not.toContain('receiver-inbound-secret')
    const id = created.stream_id as string
    expect((await json(`${streamUrl()}?stream_id=${id}`, 'GET', token)).body).toEqual(created)
    const patched = await json(streamUrl(), 'PATCH', token, { stream_id: id, description: 'changed' })
    expect(patched.status).toBe(200)
    expect(patched.body).toMatchObject({ description: 'changed', events_delivered: [EVENT_TYPES.sessionRevoked] })
    const replaced = await json(streamUrl(), 'PUT', token, { stream_id: id, delivery: { method: POLL } })
    expect(replaced.body).toMatchObject({ delivery: { method: POLL, endpoint_url: `${t.issuer}/ssf/poll/${id}` } })
    expect(replaced.body.description).toBeUndefined()
    expect((await json(`${streamUrl()}?stream_id=${id}`, 'DELETE', token)).status).toBe(204)
    expect((await json(`${streamUrl()}?stream_id=${id}`, 'GET', token)).status).toBe(404)
  })

  it('answers malformed requests with 400 and the spec error body, and changes nothing', async () => {
    const created = await createPushStream()
    const id = created.stream_id as string
    const cases: [string, string, unknown][] = [
      ['POST', streamUrl(), { delivery: { method: 'urn:example:carrier-pigeon' } }],
      ['POST', streamUrl(), { delivery: { method: PUSH, endpoint_url: 'not a url' } }],
      ['POST', streamUrl(), { delivery: { method: PUSH } }],
      ['POST', streamUrl(), { events_requested: 'all' }],
      ['POST', streamUrl(), '{not json'],
      ['POST', streamUrl(), [1, 2]],
      ['PATCH', streamUrl(), { stream_id: id, events_requested: [42] }],
      ['PATCH', streamUrl(), { description: 'no stream id' }],
      ['POST', `${t.url}/ssf/status`, { stream_id: id, status: 'sleeping' }],
      ['POST', `${t.url}/ssf/subjects/add`, { stream_id: id, subject: { format: 'iss_sub', iss: t.issuer } }],
      ['POST', `${t.url}/ssf/subjects/add`, { stream_id: id, subject: { format: 'phone_number' } }],
      ['POST', `${t.url}/ssf/subjects/remove`, { stream_id: id, subject: 'alice' }],
      ['POST', `${t.url}/ssf/verify`, { stream_id: id, state: 7 }],
    ]
    for (const [method, url, body] of cases) {
      const res = await json(url, method, token, body)
      expect(res.status, `${method} ${url} ${JSON.stringify(body)}`).toBe(400)
      expect(res.body).toMatchObject({ err: 'invalid_request' })
      expect(typeof res.body.description).toBe('string')
    }
    expect((await json(`${streamUrl()}?stream_id=${id}`, 'GET', token)).body).toEqual(created)
    expect((await json(streamUrl(), 'GET', token)).body).toHaveLength(1)
    await deleteAllStreams()
  })

  it('names what is wrong with stream_id (SSF 1.0 §8.1.1): given twice is not "required"', async () => {
    const created = await createPushStream()
    const id = created.stream_id as string
    const twice = await json(`${streamUrl()}?stream_id=${id}&stream_id=${id}`, 'GET', token)
    expect(twice.status).toBe(400)
    expect(twice.body).toEqual({ err: 'invalid_request', description: '"stream_id" must be given once' })
    const deleteTwice = await json(`${streamUrl()}?stream_id=${id}&stream_id=other`, 'DELETE', token)
    expect(deleteTwice.body).toEqual({ err: 'invalid_request', description: '"stream_id" must be given once' })
    expect((await json(`${t.url}/ssf/status`, 'POST', token, { stream_id: 42, status: 'enabled' })).body).toEqual({ err: 'invalid_request', description: '"stream_id" must be a string' })
    expect((await json(`${t.url}/ssf/verify`, 'POST', token, {})).body).toEqual({ err: 'invalid_request', description: '"stream_id" is required' })
    expect((await json(`${streamUrl()}?stream_id=${id}`, 'GET', token)).body).toEqual(created)
    await deleteAllStreams()
  })

  it('hides other receivers\' streams (404), needs a token (401) with the ssf scope (403), and limits streams (409)', async () => {
    const created = await createPushStream()
    const other = await clientToken(t.url, 'receiver-2')
    expect((await json(`${streamUrl()}?stream_id=${created.stream_id}`, 'GET', other)).status).toBe(404)
    expect((await json(`${streamUrl()}?stream_id=${created.stream_id}`, 'DELETE', other)).status).toBe(404)
    expect((await json(`${streamUrl()}?stream_id=unknown`, 'GET', token)).status).toBe(404)
    const none = await json(streamUrl(), 'GET', undefined)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm="devicegate-ssf"/)
    const noScope = await json(streamUrl(), 'GET', await clientToken(t.url, 'no-scope'))
    expect(noScope.status).toBe(403)
    expect(noScope.body).toMatchObject({ error: 'insufficient_scope' })
    for (let i = 1; i < 5; i++) await createPushStream()
    const sixth = await json(streamUrl(), 'POST', token, { delivery: { method: POLL } })
    expect(sixth.status).toBe(409)
    await deleteAllStreams()
  })
})

describe('CAEP events over RFC 8935 push', () => {
  it('sends session-revoked for a logout, signed (secevent+jwt) with the server key, naming user, session and client', async () => {
    await deleteAllStreams()
    const stream = await createPushStream()
    const before = receiver.sets.length
    const tokens = await deviceLogin(t.url)
    const grantId = (await t.server.store.findRefreshTokenByHash((await import('../src/system.js')).sha256Hex(tokens.refresh_token)))!.grantId
    expect((await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })).status).toBe(200)
    const [set] = (await receiver.waitFor(before + 1)).slice(before)
    expect(receiver.refused).toEqual([])
    expect(receiver.authorizations.at(-1)).toBe('Bearer receiver-inbound-secret')
    expect(set).toMatchObject({
      iss: t.issuer,
      aud: 'receiver',
      sub_id: {
        format: 'complex',
        user: { format: 'aliases', identifiers: [{ format: 'iss_sub', iss: t.issuer, sub: 'alice' }, { format: 'email', email: 'alice@example.com' }] },
        session: { format: 'opaque', id: grantId },
        application: { format: 'opaque', id: 'cli' },
      },
    })
    expect(Object.keys(set!.events as object)).toEqual([EVENT_TYPES.sessionRevoked])
    expect((set!.events as Record<string, any>)[EVENT_TYPES.sessionRevoked].event_timestamp).toBeTypeOf('number')
    expect(typeof set!.jti).toBe('string')
    await json(`${streamUrl()}?stream_id=${stream.stream_id}`, 'DELETE', token)
  })

  it('sends credential-change when a device key is retired, and the verification event with the receiver\'s state', async () => {
    await deleteAllStreams()
    const stream = await createPushStream()
    const before = receiver.sets.length
    const now = t.clock.nowSeconds()
    await t.server.store.registerDevice({ jkt: 'A'.repeat(43), label: 'build-agent-07', registeredAt: now, registeredBy: null, retiredAt: null })
    await t.server.store.retireDevice('A'.repeat(43), now)
    const verify = await json(`${t.url}/ssf/verify`, 'POST', token, { stream_id: stream.stream_id, state: 'VGhpcyBpcyBhbiBleGFtcGxl' })
    expect(verify.status).toBe(204)
    const sets = (await receiver.waitFor(before + 2)).slice(before)
    expect(sets[0]).toMatchObject({
      sub_id: { format: 'complex', device: { format: 'opaque', id: 'A'.repeat(43) } },
      events: { [EVENT_TYPES.credentialChange]: { credential_type: 'app', change_type: 'revoke', friendly_name: 'build-agent-07' } },
    })
    expect(sets[1]).toMatchObject({ sub_id: { format: 'opaque', id: stream.stream_id }, events: { [EVENT_TYPES.verification]: { state: 'VGhpcyBpcyBhbiBleGFtcGxl' } } })
    await deleteAllStreams()
  })

  it('holds events while paused and for removed subjects sends nothing; adding the subject back resumes', async () => {
    await deleteAllStreams()
    const stream = await createPushStream()
    const id = stream.stream_id as string
    expect((await json(`${t.url}/ssf/status`, 'POST', token, { stream_id: id, status: 'paused', reason: 'maintenance' })).body).toEqual({ stream_id: id, status: 'paused', reason: 'maintenance' })
    expect((await json(`${t.url}/ssf/status?stream_id=${id}`, 'GET', token)).body).toMatchObject({ status: 'paused' })
    const before = receiver.sets.length
    const tokens = await deviceLogin(t.url)
    await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })
    await new Promise((r) => setTimeout(r, 300))
    expect(receiver.sets.length).toBe(before)
    await json(`${t.url}/ssf/status`, 'POST', token, { stream_id: id, status: 'enabled' })
    await receiver.waitFor(before + 1)

    const removed = await json(`${t.url}/ssf/subjects/remove`, 'POST', token, { stream_id: id, subject: { format: 'email', email: 'ALICE@example.com' } })
    expect(removed.status).toBe(204)
    const again = await deviceLogin(t.url)
    await postForm(`${t.url}/revoke`, { client_id: 'cli', token: again.refresh_token })
    await new Promise((r) => setTimeout(r, 300))
    expect(receiver.sets.length).toBe(before + 1)
    expect((await json(`${t.url}/ssf/subjects/add`, 'POST', token, { stream_id: id, subject: { format: 'email', email: 'alice@example.com' } })).status).toBe(200)
    const third = await deviceLogin(t.url)
    await postForm(`${t.url}/revoke`, { client_id: 'cli', token: third.refresh_token })
    await receiver.waitFor(before + 2)
    await deleteAllStreams()
  })

  it('retries a receiver that is down, then delivers every SET once, in order', async () => {
    await deleteAllStreams()
    await createPushStream()
    const before = receiver.sets.length
    receiver.failNext = 6
    const grants: string[] = []
    for (let i = 0; i < 3; i++) {
      const tokens = await deviceLogin(t.url)
      const { sha256Hex } = await import('../src/system.js')
      grants.push((await t.server.store.findRefreshTokenByHash(sha256Hex(tokens.refresh_token)))!.grantId)
      await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })
    }
    const sets = (await receiver.waitFor(before + 3)).slice(before)
    expect(receiver.failNext).toBe(0)
    expect(sets.map((s) => (s.sub_id as any).session.id)).toEqual(grants)
    expect(new Set(sets.map((s) => s.jti)).size).toBe(3)
    await deleteAllStreams()
  })
})

describe('RFC 8936 poll delivery with acknowledgement', () => {
  it('returns pending SETs until acknowledged, then nothing; answers malformed polls with 400', async () => {
    await deleteAllStreams()
    const created = await json(streamUrl(), 'POST', token, { delivery: { method: POLL } })
    expect(created.status).toBe(201)
    const pollUrl = created.body.delivery.endpoint_url as string
    expect(pollUrl).toBe(`${t.issuer}/ssf/poll/${created.body.stream_id}`)
    const tokens = await deviceLogin(t.url)
    await postForm(`${t.url}/revoke`, { client_id: 'cli', token: tokens.refresh_token })
    const local = pollUrl.replace(t.issuer, t.url)
    const first = await json(local, 'POST', token, { returnImmediately: true })
    expect(first.status).toBe(200)
    const jtis = Object.keys(first.body.sets)
    expect(jtis).toHaveLength(1)
    expect(first.body.moreAvailable).toBe(false)
    const jwks = createRemoteJWKSet(new URL(`${t.url}/jwks`))
    const { payload, protectedHeader } = await jwtVerify(first.body.sets[jtis[0]!], jwks, { typ: 'secevent+jwt', issuer: t.issuer, audience: 'receiver' })
    expect(protectedHeader.typ).toBe('secevent+jwt')
    expect(payload.jti).toBe(jtis[0])
    // Not acknowledged: delivered again (at least once).
    expect(Object.keys((await json(local, 'POST', token, { returnImmediately: true })).body.sets)).toEqual(jtis)
    const acked = await json(local, 'POST', token, { ack: jtis, returnImmediately: true })
    expect(acked.body).toEqual({ sets: {}, moreAvailable: false })
    for (const bad of [{ maxEvents: -1 }, { ack: 'x' }, { returnImmediately: 'yes' }, { setErrs: { a: 'b' } }]) {
      const res = await json(local, 'POST', token, bad)
      expect(res.status).toBe(400)
      expect(res.body).toMatchObject({ err: 'invalid_request' })
    }
    const other = await clientToken(t.url, 'receiver-2')
    expect((await json(local, 'POST', other, { returnImmediately: true })).status).toBe(404)
    await deleteAllStreams()
  })
})

describe('SSF 1.0 §8.1.4.2 verification inside min_verification_interval', () => {
  let v: TestServer
  beforeAll(async () => {
    v = await startTestServer({ config: await signalsConfig({ ssf: { min_verification_interval_seconds: 30, long_poll_seconds: 1 } }) })
  })
  afterAll(async () => v?.close())

  it('answers 429 with Retry-After: the seconds left (RFC 6585 §4, RFC 9110 §10.2.3)', async () => {
    const as = await clientToken(v.url, 'receiver')
    const stream = (await json(`${v.url}/ssf/stream`, 'POST', as, { delivery: { method: POLL } })).body as { stream_id: string }
    expect((await json(`${v.url}/ssf/verify`, 'POST', as, { stream_id: stream.stream_id })).status).toBe(204)
    v.clock.advance(10)
    const again = await json(`${v.url}/ssf/verify`, 'POST', as, { stream_id: stream.stream_id })
    expect(again.status).toBe(429)
    expect(again.body).toMatchObject({ err: 'too_many_requests' })
    expect(again.headers.get('retry-after')).toBe('20')
    v.clock.advance(20)
    expect((await json(`${v.url}/ssf/verify`, 'POST', as, { stream_id: stream.stream_id })).status).toBe(204)
  })
})
