// Benchmark target: "the limit". A bare node:http server that does the minimum every real target
// must do: read the form body, parse it with URLSearchParams, and answer a JSON body of the same
// size as the real server's answer for that endpoint (sizes set by the harness through
// POST /__bench/sizes, measured from the real target's responses).
// Usage: node bench/targets/bare.mjs --port P --host 127.0.0.1; prints `READY <json>` once listening.
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: { port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } },
})

// Response templates per route; `pad` grows to match the size the harness asks for.
const templates = {
  device_authorization: { status: 200, body: { device_code: 'x'.repeat(43), user_code: 'ABCD-EFGH', verification_uri: 'http://127.0.0.1/device', verification_uri_complete: 'http://127.0.0.1/device?user_code=ABCD-EFGH', expires_in: 600, interval: 5 } },
  pending: { status: 400, body: { error: 'authorization_pending', error_description: 'the user has not yet approved' } },
  token: { status: 200, body: { access_token: 'x'.repeat(43), token_type: 'Bearer', expires_in: 600, refresh_token: 'x'.repeat(43), scope: 'read' } },
  introspection: { status: 200, body: { active: true, client_id: 'demo-api', scope: 'read', exp: 1_800_000_000, iat: 1_700_000_000, token_type: 'Bearer' } },
  revocation: { status: 200, body: {} },
}
const sizes = {}

function bodyFor(name) {
  const t = templates[name]
  const body = { ...t.body }
  const want = sizes[name]
  if (want) {
    const base = JSON.stringify({ ...body, pad: '' }).length
    if (want > base) body.pad = 'x'.repeat(want - base)
  }
  // Serialise per request, as a real server would.
  return JSON.stringify(body)
}

function route(path, form) {
  if (path.endsWith('/device_authorization') || path.endsWith('/device/auth')) return 'device_authorization'
  if (path.includes('introspect')) return 'introspection'
  if (path.includes('revoc') || path.includes('revoke')) return 'revocation'
  if (form.get('grant_type') === 'urn:ietf:params:oauth:grant-type:device_code') return 'pending'
  return 'token'
}

const server = createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const raw = Buffer.concat(chunks).toString('utf8')
    if (req.url === '/__bench/sizes') {
      Object.assign(sizes, JSON.parse(raw))
      res.writeHead(204).end()
      return
    }
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
      return
    }
    const form = new URLSearchParams(raw)
    const name = route(req.url ?? '/', form)
    const out = bodyFor(name)
    res.writeHead(templates[name].status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(out),
    })
    res.end(out)
  })
})
server.keepAliveTimeout = 60_000
server.listen(Number(values.port), values.host, () => {
  const { port } = server.address()
  process.stdout.write(`READY ${JSON.stringify({ port, issuer: `http://${values.host}:${port}` })}\n`)
})
const stop = () => server.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
