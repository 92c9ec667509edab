/**
 * The SDK's one HTTP helper: form POSTs and JSON GETs with OAuth error parsing and readable
 * network errors. Internal; not exported from the package.
 */
import { ClientError, OAuthResponseError } from './errors.js'
import { SDK_USER_AGENT } from './version.js'

/** The SDK's User-Agent (see version.ts), sent by every request helper here. */
export { SDK_USER_AGENT }

/** The subset of `fetch` the SDK uses, so callers can inject their own (proxies, tests). */
export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>

/** A parsed response: status, headers and the JSON body (undefined for an empty body). */
export interface JsonResponse {
  status: number
  headers: Headers
  body: unknown
}

function describeNetworkError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause
  const code = cause?.code
  if (code === 'ECONNREFUSED') return 'connection refused'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found'
  if (code === 'ECONNRESET') return 'connection reset'
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'connection timed out'
  if (code) return code
  return cause?.message ?? (err as Error)?.message ?? String(err)
}

/**
 * Sends a request and parses a JSON body.
 * @throws {ClientError} `ERR_NETWORK` when the server cannot be reached; the signal's reason when aborted.
 */
export async function requestJson(fetchImpl: FetchLike, url: string, init: RequestInit): Promise<JsonResponse> {
  let res: Response
  try {
    res = await fetchImpl(url, { ...init, redirect: 'error' })
  } catch (err) {
    if (init.signal?.aborted) throw init.signal.reason
    throw new ClientError('ERR_NETWORK', `cannot reach ${new URL(url).origin} (${describeNetworkError(err)})`, { cause: err })
  }
  const text = await res.text()
  let body: unknown
  if (text.length > 0) {
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
      if (res.ok) throw new ClientError('ERR_BAD_RESPONSE', `${url} answered ${res.status} with a body that is not JSON`)
    }
  }
  return { status: res.status, headers: res.headers, body }
}

/** True when `body` looks like an RFC 6749 §5.2 error body. */
function isErrorBody(body: unknown): body is { error: string; error_description?: unknown } {
  return typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string'
}

/**
 * Turns a non-2xx response into the right error: {@link OAuthResponseError} when the body is an
 * RFC 6749 §5.2 error, {@link ClientError} `ERR_BAD_RESPONSE` otherwise.
 */
export function errorFromResponse(url: string, res: JsonResponse): Error {
  if (isErrorBody(res.body)) {
    const description = typeof res.body.error_description === 'string' ? res.body.error_description : undefined
    const { error, error_description: _d, error_uri: _u, ...members } = res.body as Record<string, unknown> & { error: string }
    return new OAuthResponseError({ error, ...(description !== undefined ? { error_description: description } : {}) }, res.status, res.headers, members)
  }
  return new ClientError('ERR_BAD_RESPONSE', `${url} answered HTTP ${res.status} without an OAuth error body`)
}

/**
 * POSTs `application/x-www-form-urlencoded` (RFC 6749 Appendix B) and returns the JSON response.
 * Errors are not thrown here: callers inspect `status` (the device flow must read 400 bodies).
 */
export async function postForm(
  fetchImpl: FetchLike,
  url: string,
  form: Record<string, string>,
  opts: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<JsonResponse> {
  return requestJson(fetchImpl, url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'user-agent': SDK_USER_AGENT, ...opts.headers },
    body: new URLSearchParams(form).toString(),
    ...(opts.signal ? { signal: opts.signal } : {}),
  })
}
