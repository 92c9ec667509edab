/**
 * The admin API's input contract: one zod schema per route for its path parameters, query and
 * body. The routes in `admin-api.ts` parse with these schemas and the OpenAPI 3.1
 * document at `/admin/api/openapi.json` is generated from them with `z.toJSONSchema`, so the
 * validation and the description cannot drift apart.
 *
 * Rules every field follows (a violation answers 400 `invalid_request` naming the field):
 * - a query parameter may appear once (`?limit=1&limit=2` is refused, not read as either);
 * - strings are non-empty, bounded in length and carry no NUL or other C0 control character;
 * - integers are decimal digits within the range the field documents, never beyond 2^53 − 1
 *   (so nothing reaches the database beyond 64 bits);
 * - times are RFC 3339 date-times with an explicit offset (`2026-12-06T22:00:00Z`) or epoch
 *   seconds (0 … 253402300799, year 9999); loose forms `Date.parse` would guess at are refused;
 * - cursors are exactly what the server handed out (`next_cursor`);
 * - JSON bodies are objects with known members only.
 * @see https://spec.openapis.org/oas/v3.1.0
 */
import { z } from 'zod'
import { FLOW_STATUSES, isInventoryCursor } from './inventory.js'

/** Latest accepted time, epoch seconds (9999-12-31T23:59:59Z). */
export const MAX_EPOCH_SECONDS = 253_402_300_799

const CONTROL = /[\u0000-\u001f\u007f]/

/** A string given once (not a repeated query parameter) with a clear message otherwise. */
function once(description: string) {
  return z.string({
    error: (iss) => (Array.isArray(iss.input) ? 'must be given once' : iss.input === undefined ? 'is required' : 'must be a string'),
  }).describe(description)
}

/** One of `values`, given once. */
function choice<const T extends readonly [string, ...string[]]>(values: T, description: string) {
  const message = `must be ${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`
  return z.enum(values, { error: (iss) => (Array.isArray(iss.input) ? 'must be given once' : message) }).describe(description)
}

/** A non-empty string of at most `max` characters without control characters. */
export function text(description: string, max = 200) {
  return once(description)
    .min(1, { error: 'must not be empty' })
    .max(max, { error: `must be at most ${max} characters` })
    .refine((s) => !CONTROL.test(s), { error: 'must not contain NUL or control characters' })
}

/** A decimal integer in [min, max] given as a query or path string. */
function integerString(description: string, min: number, max: number) {
  return once(description)
    .regex(/^\d{1,16}$/, { error: `must be an integer between ${min} and ${max}` })
    .transform((s) => Number(s))
    .refine((n) => Number.isSafeInteger(n) && n >= min && n <= max, { error: `must be an integer between ${min} and ${max}` })
    .meta({ type: 'integer', minimum: min, maximum: max })
}

/** What an admin API says of a time it refuses (after the parameter's name). */
export const TIME_MESSAGE = 'must be an RFC 3339 date-time with offset (2026-01-31T12:00:00Z) or epoch seconds'
const EPOCH = /^\d{1,12}$/

/**
 * Converts a time as the admin APIs accept it — epoch seconds (0 … year 9999), or an RFC 3339
 * date-time with offset whose calendar date exists — to epoch seconds; undefined when it is not one
 * (loose forms `Date.parse` would guess at, such as "1,2" or "March 1", are not).
 */
export function toEpochSeconds(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 && value <= MAX_EPOCH_SECONDS ? value : undefined
  if (EPOCH.test(value)) return toEpochSeconds(Number(value))
  if (!z.iso.datetime({ offset: true }).safeParse(value).success) return undefined
  const ms = Date.parse(value)
  if (!Number.isFinite(ms)) return undefined
  // Reject calendar dates Date.parse rolls over (2026-02-30 → March 2).
  const [y, m, d] = value.slice(0, 10).split('-').map(Number) as [number, number, number]
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate()
  if (d > days) return undefined
  return toEpochSeconds(Math.floor(ms / 1000))
}

/** A time as a query string: RFC 3339 or epoch seconds → epoch seconds. */
function timeString(description: string) {
  return once(description)
    .max(64, { error: TIME_MESSAGE })
    .transform((s, ctx) => {
      const t = toEpochSeconds(s)
      if (t === undefined) {
        ctx.addIssue({ code: 'custom', message: TIME_MESSAGE })
        return z.NEVER
      }
      return t
    })
}

/** A time in a JSON body: the string forms above or an integer of epoch seconds. */
function timeValue(description: string) {
  return z
    .union([z.string().max(64), z.number()], { error: TIME_MESSAGE })
    .transform((v, ctx) => {
      const t = toEpochSeconds(v)
      if (t === undefined) {
        ctx.addIssue({ code: 'custom', message: TIME_MESSAGE })
        return z.NEVER
      }
      return t
    })
    .describe(description)
}

const jkt = once('RFC 7638 SHA-256 thumbprint of a DPoP key: 43 base64url characters').regex(/^[A-Za-z0-9_-]{43}$/, {
  error: 'must be 43 base64url characters (RFC 7638 SHA-256 thumbprint)',
})

const inventoryQuery = {
  client_id: text('only this client').optional(),
  status: choice(['active', 'revoked'], 'active or revoked').optional(),
  jkt: jkt.optional(),
  request_ip: text('only families whose device authorization came from this address', 64).optional(),
  created_from: timeString('created at or after (RFC 3339 or epoch seconds)').optional(),
  created_before: timeString('created before (RFC 3339 or epoch seconds)').optional(),
  limit: integerString('page size (default 100)', 1, 1000).optional(),
  cursor: once('next_cursor of the previous page')
    .max(512, { error: 'is invalid' })
    .refine(isInventoryCursor, { error: 'is invalid' })
    .optional(),
}

/** Body of `POST /revocations` (one variant per kind). */
const revocationCommon = {
  dry_run: z.boolean({ error: 'must be a boolean' }).default(false).describe('count and list only'),
  reason: text('why (kept in the audit log)', 500).optional(),
}
export const RevocationBody = z
  .discriminatedUnion(
    'kind',
    [
      z.strictObject({ kind: z.literal('token'), token: text('an access or refresh token; its family is revoked', 4096), ...revocationCommon }),
      z.strictObject({ kind: z.literal('grant'), grant_id: text('grant (family) id'), ...revocationCommon }),
      z.strictObject({ kind: z.literal('user'), username: text('approving user'), ...revocationCommon }),
      z.strictObject({ kind: z.literal('client'), client_id: text('client id'), ...revocationCommon }),
      z.strictObject({ kind: z.literal('jkt'), jkt, ...revocationCommon }),
      z.strictObject({ kind: z.literal('before'), time: timeValue('the kill switch time: every family issued before it'), ...revocationCommon }),
      z.strictObject({
        kind: z.literal('pattern'),
        request_ip: text('address or CIDR of the device authorization request', 64).optional(),
        client_id: text('client id').optional(),
        approved_by: text('approving user').optional(),
        from: timeValue('requested at or after').optional(),
        to: timeValue('requested before').optional(),
        ...revocationCommon,
      }),
    ],
    { error: 'must be one of token, grant, user, client, jkt, before, pattern' },
  )

/** One admin route: method, path (fastify syntax), summary and the schemas of its input. */
export interface AdminRouteSpec {
  method: 'GET' | 'POST'
  path: string
  summary: string
  /** Whether it needs the admin bearer token (everything but the OpenAPI document). */
  secured: boolean
  params?: z.ZodObject
  query?: z.ZodObject
  body?: z.ZodType
  /** Status of a success (default 200). */
  status?: number
}

const grantId = text('grant (family) id')
const username = text('configured user name')
const clientId = text('configured client id')

/** Every admin route, in the order of the OpenAPI document. */
export const ADMIN_ROUTES = {
  openapi: { method: 'GET', path: '/openapi.json', summary: 'this document', secured: false, query: z.strictObject({}) },
  grants: { method: 'GET', path: '/grants', summary: 'token inventory, newest first', secured: true, query: z.strictObject({ subject: text('only this user').optional(), ...inventoryQuery }) },
  grant: { method: 'GET', path: '/grants/:id', summary: 'one family with its lineage', secured: true, params: z.strictObject({ id: grantId }), query: z.strictObject({}) },
  userGrants: {
    method: 'GET',
    path: '/users/:username/grants',
    summary: "a user's families",
    secured: true,
    params: z.strictObject({ username }),
    query: z.strictObject(inventoryQuery),
  },
  flows: {
    method: 'GET',
    path: '/flows',
    summary: 'device authorizations of every outcome (issued, denied, refused by policy, expired, pending) with request and approval address and location',
    secured: true,
    query: z.strictObject({
      status: choice(FLOW_STATUSES, 'pending, approved, redeemed, denied (by the person), refused (by policy) or expired').optional(),
      client_id: inventoryQuery.client_id,
      subject: text('only flows decided by this user').optional(),
      created_from: inventoryQuery.created_from,
      created_before: inventoryQuery.created_before,
      limit: inventoryQuery.limit,
      cursor: inventoryQuery.cursor,
    }),
  },
  revocations: { method: 'POST', path: '/revocations', summary: 'central revocation (or dry run)', secured: true, query: z.strictObject({}), body: RevocationBody },
  anomalies: {
    method: 'GET',
    path: '/anomalies',
    summary: 'anomalies since a time',
    secured: true,
    query: z.strictObject({
      since: timeString('RFC 3339 or epoch seconds (default: all)').optional(),
      kind: text('detector name', 100).optional(),
      limit: integerString('page size (default 1000)', 1, 10_000).optional(),
    }),
  },
  auditEvents: {
    method: 'GET',
    path: '/audit/events',
    summary: 'audit events since a time or after a seq',
    secured: true,
    query: z.strictObject({
      since: timeString('RFC 3339 or epoch seconds').optional(),
      after_seq: integerString('only seq greater than this', 0, Number.MAX_SAFE_INTEGER).optional(),
      limit: integerString('page size (default 1000)', 1, 10_000).optional(),
    }),
  },
  devices: {
    method: 'GET',
    path: '/devices',
    summary: 'trusted devices',
    secured: true,
    query: z.strictObject({ include_retired: choice(['true', 'false'], 'true to list retired ones too').optional() }),
  },
  registerDevice: {
    method: 'POST',
    path: '/devices',
    summary: 'register a device by its key thumbprint or public JWK',
    secured: true,
    status: 201,
    query: z.strictObject({}),
    body: z
      .strictObject({
        jkt: jkt.optional(),
        jwk: z.record(z.string(), z.unknown(), { error: 'must be a JSON object (a public JWK)' }).describe('public JWK (RFC 7517)').optional(),
        label: text('label shown to administrators'),
      })
      .refine((b) => b.jkt !== undefined || b.jwk !== undefined, { error: 'must carry "jkt" or "jwk"' }),
  },
  device: { method: 'GET', path: '/devices/:jkt', summary: 'one device with its token families', secured: true, params: z.strictObject({ jkt }), query: z.strictObject({}) },
  labelDevice: {
    method: 'POST',
    path: '/devices/:jkt/label',
    summary: 'relabel a device',
    secured: true,
    params: z.strictObject({ jkt }),
    query: z.strictObject({}),
    body: z.strictObject({ label: text('label shown to administrators') }),
  },
  retireDevice: {
    method: 'POST',
    path: '/devices/:jkt/retire',
    summary: "retire a device and revoke its key's tokens",
    secured: true,
    params: z.strictObject({ jkt }),
    query: z.strictObject({}),
    body: z.strictObject({}).optional(),
  },
  ...Object.fromEntries(
    (['disable', 'delete', 'enable'] as const).flatMap((verb) => [
      [
        `user_${verb}`,
        {
          method: 'POST',
          path: `/users/:username/${verb}`,
          summary: `${verb} a configured user (disable/delete revoke their families at once)`,
          secured: true,
          params: z.strictObject({ username }),
          query: z.strictObject({}),
          body: z.strictObject({}).optional(),
        },
      ],
      [
        `client_${verb}`,
        {
          method: 'POST',
          path: `/clients/:client_id/${verb}`,
          summary: `${verb} a configured client (disable/delete revoke its families at once)`,
          secured: true,
          params: z.strictObject({ client_id: clientId }),
          query: z.strictObject({}),
          body: z.strictObject({}).optional(),
        },
      ],
    ]),
  ),
} as const satisfies Record<string, AdminRouteSpec>

/** Formats the first zod issue as the public `error_description`: `"limit" must be …`. */
export function describeIssue(error: z.ZodError, where: 'query' | 'path' | 'body'): string {
  const issue = error.issues[0]
  if (issue === undefined) return `the ${where} is invalid`
  if (issue.code === 'unrecognized_keys') return `unknown ${where} parameter ${issue.keys.map((k) => `"${k}"`).join(', ')}`
  const name = issue.path.map(String).join('.')
  const message = issue.message.replace(/^Invalid input: /, '')
  return name === '' ? `the ${where} ${message}` : `"${name}" ${message}`
}

function toJsonSchema(schema: z.ZodType): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }) as Record<string, unknown>
  delete json.$schema
  // Integers travel as digit strings in a URL; describe the value, not the carrier's pattern.
  if (json.type === 'integer') delete json.pattern
  return json
}

/**
 * The OpenAPI 3.1 description of the admin API, generated from {@link ADMIN_ROUTES}.
 * @param scope The scope an admin access token must carry.
 * @param prefix Path prefix the routes are served under (`/admin/api`).
 */
export function buildOpenApiDocument(scope: string, prefix: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const spec of Object.values(ADMIN_ROUTES) as AdminRouteSpec[]) {
    const path = spec.path.replace(/:([A-Za-z_]+)/g, '{$1}')
    const parameters: unknown[] = []
    for (const [where, schema] of [
      ['path', spec.params],
      ['query', spec.query],
    ] as const) {
      if (schema === undefined) continue
      for (const [name, field] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
        const fieldSchema = toJsonSchema(field)
        parameters.push({
          name,
          in: where,
          required: where === 'path' || !field.safeParse(undefined).success,
          ...(typeof fieldSchema.description === 'string' ? { description: fieldSchema.description } : {}),
          schema: fieldSchema,
        })
      }
    }
    const ok = String(spec.status ?? 200)
    const operation: Record<string, unknown> = {
      summary: spec.summary,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(spec.body !== undefined
        ? { requestBody: { required: !spec.body.safeParse(undefined).success, content: { 'application/json': { schema: toJsonSchema(spec.body) } } } }
        : {}),
      responses: spec.secured
        ? { [ok]: { description: 'OK', content: { 'application/json': {} } }, '400': { $ref: '#/components/responses/Error' }, '401': { $ref: '#/components/responses/Error' }, '403': { $ref: '#/components/responses/Error' } }
        : { '200': { description: 'OK' } },
      ...(spec.secured ? { security: [{ bearer: [scope] }] } : {}),
    }
    ;(paths[path] ??= {})[spec.method.toLowerCase()] = operation
  }
  return {
    openapi: '3.1.0',
    info: { title: 'devicegate admin API', version: '1', description: `Bearer access tokens issued by devicegate with the "${scope}" scope (RFC 6750).` },
    servers: [{ url: prefix }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: `client_credentials access token with scope "${scope}"` } },
      responses: {
        Error: {
          description: 'RFC 6749 §5.2 / RFC 6750 §3.1 error',
          content: { 'application/json': { schema: { type: 'object', required: ['error'], properties: { error: { type: 'string' }, error_description: { type: 'string' } } } } },
        },
      },
    },
    paths,
  }
}
