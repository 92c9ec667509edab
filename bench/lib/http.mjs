// Small HTTP helpers for setting a target up (not for load): forms, a cookie jar, OAuth calls.

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

export function form(obj) {
  return new URLSearchParams(obj).toString()
}

export function basicAuth(id, secret) {
  // RFC 6749 §2.3.1: form-urlencode both parts before base64.
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+')
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`
}

export async function postForm(url, fields, headers = {}) {
  const res = await fetch(url, { method: 'POST', headers: { ...FORM, ...headers }, body: form(fields) })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, json, text, headers: res.headers }
}

/** Runs fn(item, index, lane) over items with at most `limit` in flight; lane is 0..limit-1. */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length)
  let next = 0
  const worker = async (lane) => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i, lane)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, (_, lane) => worker(lane)))
  return out
}

/** A browser-ish client: cookie jar, manual redirects. */
export class Browser {
  #jar = new Map()
  constructor(origin) {
    this.origin = origin
  }
  cookie(name) {
    return this.#jar.get(name)
  }
  async request(url, { method = 'GET', fields, follow = true } = {}) {
    let target = new URL(url, this.origin)
    let res
    let body = fields ? form(fields) : undefined
    for (let hop = 0; hop < 10; hop++) {
      const headers = { cookie: [...this.#jar].map(([k, v]) => `${k}=${v}`).join('; ') }
      if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded'
      res = await fetch(target, { method, headers, body, redirect: 'manual' })
      for (const c of res.headers.getSetCookie()) {
        const [kv, ...attrs] = c.split(';')
        const i = kv.indexOf('=')
        const name = kv.slice(0, i).trim()
        const value = kv.slice(i + 1).trim()
        const expired = attrs.some((a) => /max-age=0\b/i.test(a.trim())) || value === ''
        if (expired) this.#jar.delete(name)
        else this.#jar.set(name, value)
      }
      const location = res.headers.get('location')
      if (!follow || res.status < 300 || res.status >= 400 || !location) break
      await res.arrayBuffer()
      target = new URL(location, target)
      method = 'GET'
      body = undefined
    }
    const text = await res.text()
    return { status: res.status, text, url: target.href, location: res.headers.get('location') }
  }
}

export function hiddenInputs(html) {
  const fields = {}
  for (const m of html.matchAll(/<input\b[^>]*>/g)) {
    const tag = m[0]
    if (!/type="hidden"/.test(tag)) continue
    const name = /name="([^"]+)"/.exec(tag)?.[1]
    const value = /value="([^"]*)"/.exec(tag)?.[1] ?? ''
    if (name) fields[name] = value.replace(/&amp;/g, '&').replace(/&quot;/g, '"')
  }
  return fields
}

export function csrfToken(html) {
  return /name="csrf_token"\s+value="([^"]+)"/.exec(html)?.[1] ?? /value="([^"]+)"\s+name="csrf_token"/.exec(html)?.[1]
}
