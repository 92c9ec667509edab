/**
 * Client authentication (RFC 6749 §2.3) does not reveal which clients exist by its timing:
 * an unknown `client_id` costs one argon2 verification, like a wrong secret (issue 16 item 3).
 */
import { hash } from '@node-rs/argon2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Client } from '../src/core/model.js'
import { argon2CostOf, authenticateClient, createClientDirectory, SecretVerifier } from '../src/protocol/clients.js'
import { OAuthError } from '../src/protocol/errors.js'
import { basic, postForm, startTestServer, type TestServer } from './support/server.js'

/** Counts the verifications that ran, and whether each was for a real client. */
class CountingVerifier extends SecretVerifier {
  readonly calls: Array<string | undefined> = []
  override async verify(client: Client | undefined, secret: string): Promise<boolean> {
    this.calls.push(client?.id)
    return super.verify(client, secret)
  }
}

describe('client authentication costs the same for unknown clients (issue 16 item 3)', () => {
  let conf: Client
  beforeAll(async () => {
    conf = {
      id: 'conf', name: 'Conf', isConfidential: true, secretHash: await hash('s3cret-s3cret'), authMethods: ['client_secret_basic', 'client_secret_post'],
      grantTypes: ['refresh_token'], scopes: [], defaultScopes: [], accessTokenFormat: 'jwt', accessTokenTtlSeconds: 600,
      refreshTokenTtlSeconds: 3600, deviceCodeTtlSeconds: 600, pollIntervalSeconds: 5, canIntrospect: false, disabled: false,
    }
  })

  const cases: Array<[string, (id: string) => { authorization?: string; params: Record<string, string> }]> = [
    ['client_secret_basic', (id) => ({ authorization: basic(id, 'wrong-secret'), params: {} })],
    ['client_secret_post', (id) => ({ params: { client_id: id, client_secret: 'wrong-secret' } })],
  ]
  for (const [method, request] of cases) {
    it(`runs one argon2 verification for an unknown client with ${method}, as for a wrong secret`, async () => {
      const secrets = new CountingVerifier(conf.secretHash)
      const clients = createClientDirectory([conf, { ...conf, id: 'off', disabled: true }])
      for (const id of ['conf', 'no-such-client', 'off']) {
        const err = await authenticateClient({ authorization: undefined, ...request(id) }, clients, secrets).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(OAuthError)
        expect((err as OAuthError).error).toBe('invalid_client')
      }
      // One verification each: the real hash for `conf`, the dummy for the unknown and the disabled client.
      expect(secrets.calls).toEqual(['conf', undefined, undefined])
    })
  }

  it('makes the dummy hash with the cost parameters of the configured hashes', () => {
    expect(argon2CostOf('$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA')).toEqual({ algorithm: 2, memoryCost: 65_536, timeCost: 3, parallelism: 4 })
    expect(argon2CostOf(undefined)).toEqual({ algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 })
  })
})

describe('over HTTP: an unknown client_id answers about as slowly as a wrong secret (issue 16 item 3)', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer()
  })
  afterAll(async () => t?.close())

  /** Wall time of one request in ms; it must be refused with 401. */
  async function timed(send: () => Promise<{ status: number }>): Promise<number> {
    const start = performance.now()
    expect((await send()).status).toBe(401)
    return performance.now() - start
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

  it('at the token endpoint with HTTP Basic and with client_secret_post', async () => {
    const token = `${t.url}/token`
    const form = { grant_type: 'refresh_token', refresh_token: 'x' }
    const wrong = () => postForm(token, form, { authorization: basic('conf', 'wrong-secret') })
    const unknownBasic = () => postForm(token, form, { authorization: basic('no-such-client', 'wrong-secret') })
    const unknownPost = () => postForm(token, { ...form, client_id: 'no-such-client', client_secret: 'wrong-secret' })
    await timed(wrong) // warm-up
    // Interleaved, so load on a shared machine falls on all three alike.
    const times = { wrong: [] as number[], basic: [] as number[], post: [] as number[] }
    for (let i = 0; i < 9; i++) {
      times.wrong.push(await timed(wrong))
      times.basic.push(await timed(unknownBasic))
      times.post.push(await timed(unknownPost))
    }
    // Before the fix the unknown client answered ten times faster (ratio ~0.1).
    expect(median(times.basic)).toBeGreaterThan(median(times.wrong) * 0.4)
    expect(median(times.post)).toBeGreaterThan(median(times.wrong) * 0.4)
  })
})
