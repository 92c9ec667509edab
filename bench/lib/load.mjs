// Load generation with autocannon (as a library) and per-response classification.
import { createRequire } from 'node:module'
import { basicAuth, postForm, mapLimit, DEVICE_CODE_GRANT, form } from './http.mjs'
import { startCpuWindow, loadAverage } from './proc.mjs'

const autocannon = createRequire(import.meta.url)('autocannon')

// ---------------------------------------------------------------------------------------------
// set-up: objects each scenario needs, created over plain HTTP

/** Polls per code in (b)'s preparation: past the `slow_down_ignored` threshold (5, the default). */
const PRIMING_POLLS = 7

/** Creates n pending device authorizations; returns the Device Authorization Responses. */
export async function createDeviceCodes(t, n, scope = t.deviceScope, concurrency = 16) {
  return mapLimit(Array.from({ length: n }), concurrency, async () => {
    const r = await postForm(t.endpoints.deviceAuthorization, { client_id: t.publicClientId, scope })
    if (r.status !== 200 || !r.json?.device_code) {
      throw new Error(`${t.name}: device authorization answered ${r.status}: ${r.text.slice(0, 200)}`)
    }
    return r.json
  })
}

/** Obtains n access tokens with client_credentials (RFC 6749 §4.4). */
export async function clientCredentialsTokens(t, n) {
  const { id, secret } = t.confidentialClient
  return mapLimit(Array.from({ length: n }), 16, async () => {
    const r = await postForm(
      t.endpoints.token,
      { grant_type: 'client_credentials', scope: t.ccScope },
      { authorization: basicAuth(id, secret) },
    )
    if (r.status !== 200 || !r.json?.access_token) {
      throw new Error(`${t.name}: client_credentials answered ${r.status}: ${r.text.slice(0, 200)}`)
    }
    return r.json.access_token
  })
}

/** Runs n device flows to the end (approve in the browser pages, redeem) and returns refresh tokens. */
export async function refreshTokens(t, n) {
  if (t.name === 'limit') return Array.from({ length: n }, (_, i) => `limit-refresh-${i}`)
  const codes = await createDeviceCodes(t, n, t.refreshScope)
  await t.approve(codes.map((c) => c.user_code))
  return mapLimit(codes, 8, async (c) => {
    const r = await postForm(t.endpoints.token, { grant_type: DEVICE_CODE_GRANT, device_code: c.device_code, client_id: t.publicClientId })
    if (r.status !== 200 || !r.json?.refresh_token) {
      throw new Error(`${t.name}: device_code redemption gave no refresh token (${r.status}): ${r.text.slice(0, 200)}`)
    }
    return r.json.refresh_token
  })
}

// ---------------------------------------------------------------------------------------------
// scenarios (a)–(d): what one request is, and how a response is judged

/**
 * Builds the autocannon request and a classifier for scenario `id` on target t, given the state
 * created by `prepare`. Classes: `ok`, `authorization_pending`, `slow_down`, anything else is an
 * error and is counted under its status and OAuth error code.
 */
export const SCENARIOS = {
  a: {
    title: '(a) device authorization',
    async prepare() {
      return {}
    },
    request(t) {
      const body = form({ client_id: t.publicClientId, scope: t.deviceScope })
      return {
        method: 'POST',
        path: new URL(t.endpoints.deviceAuthorization).pathname,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
        classify: (status, text) => (status === 200 && text.includes('"device_code"') ? 'ok' : null),
      }
    },
  },
  b: {
    title: '(b) polling, 1,000 pending codes',
    async prepare(t) {
      const codes = await createDeviceCodes(t, 1000)
      const fields = codes.map((c) => ({ grant_type: DEVICE_CODE_GRANT, device_code: c.device_code, client_id: t.publicClientId }))
      // Steady state: each code polls past the slow_down_ignored detector's threshold (5) before the
      // measurement, so the one-time anomaly (insert, audit, outbox) of each code falls in no target's
      // measured window — a slower target (two instances) would otherwise meet it there.
      await mapLimit(fields.flatMap((f) => Array.from({ length: PRIMING_POLLS }, () => f)), 32, (f) => postForm(t.endpoints.token, f))
      return { bodies: fields.map(form) }
    },
    request(t, state) {
      let i = 0
      const { bodies } = state
      return {
        method: 'POST',
        path: new URL(t.endpoints.token).pathname,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        setupRequest(req) {
          req.body = bodies[i++ % bodies.length]
          return req
        },
        classify(status, text) {
          if (status !== 400) return null
          if (text.includes('"authorization_pending"')) return 'authorization_pending'
          if (text.includes('"slow_down"')) return 'slow_down'
          return null
        },
      }
    },
  },
  h: {
    title: '(h) polling, 100,000 codes at their interval',
    /**
     * RFC 8628 §3.5 as clients poll: N pending codes (`--pending-codes`, default 100,000) polled
     * round-robin, so each code is polled once every N / (req/s) seconds, at or beyond its 5-second
     * interval while the rate stays under N / 5: the answers are `authorization_pending`, the path
     * every waiting client takes, with a working set too large for any cache of recent codes.
     */
    async prepare(t, config) {
      const n = config.pendingCodes ?? 100_000
      const codes = await createDeviceCodes(t, n, t.deviceScope, 32)
      return { bodies: codes.map((c) => form({ grant_type: DEVICE_CODE_GRANT, device_code: c.device_code, client_id: t.publicClientId })) }
    },
    request(t, state) {
      // One cursor for the warm-up and the measured run: the run goes on where the warm-up left
      // off, so no code is polled again within its interval.
      const { bodies } = state
      state.next ??= 1 // bodies[0] was polled to size the limit's answers
      return {
        ...SCENARIOS.b.request(t, state),
        setupRequest(req) {
          req.body = bodies[state.next++ % bodies.length]
          return req
        },
      }
    },
  },
  c: {
    title: '(c) introspection, 1,000 tokens',
    async prepare(t) {
      if (t.name === 'limit') return { bodies: Array.from({ length: 1000 }, (_, i) => form({ token: `limit-token-${i}`, token_type_hint: 'access_token' })) }
      const tokens = await clientCredentialsTokens(t, 1000)
      return { bodies: tokens.map((token) => form({ token, token_type_hint: 'access_token' })) }
    },
    request(t, state) {
      let i = 0
      const { bodies } = state
      const { id, secret } = t.confidentialClient
      return {
        method: 'POST',
        path: new URL(t.endpoints.introspection).pathname,
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(id, secret) },
        setupRequest(req) {
          req.body = bodies[i++ % bodies.length]
          return req
        },
        classify: (status, text) => (status === 200 && text.includes('"active":true') ? 'ok' : null),
      }
    },
  },
  d: {
    title: '(d) refresh with rotation',
    async prepare(t, { connections }) {
      // A pool of live refresh tokens: each request takes one, each answer puts the rotated one
      // back, so every token is used exactly once. Spare tokens cover requests cut off at the end
      // of a run (their rotated token is never read).
      return { pool: await refreshTokens(t, connections * 3), lost: 0 }
    },
    request(t, state) {
      const { pool } = state
      return {
        method: 'POST',
        path: new URL(t.endpoints.token).pathname,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        setupRequest(req) {
          const token = pool.pop()
          if (token === undefined) state.lost++
          req.body = form({ grant_type: 'refresh_token', refresh_token: token ?? 'pool-exhausted', client_id: t.publicClientId })
          return req
        },
        classify(status, text) {
          if (status !== 200) return null
          const m = /"refresh_token"\s*:\s*"([^"]+)"/.exec(text)
          if (!m) return null
          pool.push(t.name === 'limit' ? `limit-refresh-${pool.length}` : m[1])
          return 'ok'
        },
      }
    },
  },
}

function errorKey(status, text) {
  const code = /"error"\s*:\s*"([^"]+)"/.exec(text)?.[1]
  return code ? `${status} ${code}` : String(status)
}

/**
 * One autocannon run against `origin` (a URL, or several: connection i then goes to origin[i mod n]).
 * Returns req/s, latency, and response classes.
 * @param spec from SCENARIOS[x].request()
 */
export async function runLoad({ origin, spec, connections, durationSeconds, targetPid, amount }) {
  const counts = {}
  const errors = {}
  const { classify, setupRequest, ...req } = spec
  const request = {
    ...req,
    ...(setupRequest ? { setupRequest } : {}),
    onResponse(status, body) {
      const cls = classify(status, body)
      if (cls) counts[cls] = (counts[cls] ?? 0) + 1
      else {
        const key = errorKey(status, body)
        errors[key] = (errors[key] ?? 0) + 1
      }
    },
  }
  const cpu = startCpuWindow(targetPid)
  const load1 = loadAverage()
  const result = await autocannon({
    url: origin,
    connections,
    ...(amount ? { amount } : { duration: durationSeconds }),
    requests: [request],
    timeout: 10,
  })
  const cpuUse = cpu.stop()
  if (result.errors) errors['connection errors'] = result.errors
  if (result.timeouts) errors.timeouts = result.timeouts
  const errorCount = Object.values(errors).reduce((a, b) => a + b, 0)
  return {
    rps: result.requests.average,
    total: result.requests.total,
    // autocannon's percentiles are whole milliseconds; the mean keeps its fraction, which is what
    // shows a change of a fraction of a millisecond (the growth ratios of scenario f).
    mean: result.latency.mean,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    counts,
    errors,
    errorCount,
    cpu: cpuUse,
    loadavg1: load1,
  }
}
