/**
 * SCIM 2.0 service provider discovery (RFC 7644 §4, RFC 7643 §5–7): ServiceProviderConfig,
 * ResourceTypes and Schemas, as devicegate implements them.
 */
import { MAX_RESULTS, SCHEMA, type ScimResult } from './scim-protocol.js'

/** `GET /ServiceProviderConfig` (RFC 7643 §5): what this server supports. */
export function serviceProviderConfig(baseUrl: string): ScimResult {
  return {
    status: 200,
    body: {
      schemas: [SCHEMA.spc],
      documentationUri: 'https://www.rfc-editor.org/rfc/rfc7644',
      patch: { supported: true },
      bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
      filter: { supported: true, maxResults: MAX_RESULTS },
      changePassword: { supported: false },
      sort: { supported: false },
      etag: { supported: true },
      authenticationSchemes: [
        { type: 'oauthbearertoken', name: 'OAuth Bearer Token', description: 'An access token from this server (client_credentials) with the scim scope (RFC 6750)', specUri: 'https://www.rfc-editor.org/rfc/rfc6750', primary: true },
      ],
      meta: { resourceType: 'ServiceProviderConfig', location: `${baseUrl}/ServiceProviderConfig` },
    },
  }
}

/** `GET /ResourceTypes` (RFC 7643 §6): User (with the enterprise extension) and Group. */
export function resourceTypes(baseUrl: string): Record<string, unknown>[] {
  return [
    {
      schemas: [SCHEMA.resourceType],
      id: 'User',
      name: 'User',
      endpoint: '/Users',
      schema: SCHEMA.user,
      schemaExtensions: [{ schema: SCHEMA.enterprise, required: false }],
      meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/User` },
    },
    { schemas: [SCHEMA.resourceType], id: 'Group', name: 'Group', endpoint: '/Groups', schema: SCHEMA.group, meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/Group` } },
  ]
}

/** `GET /Schemas` (RFC 7643 §7): the attributes devicegate keeps or returns. */
export function schemas(baseUrl: string): Record<string, unknown>[] {
  const a = (name: string, extra: Record<string, unknown> = {}) => ({ name, type: 'string', multiValued: false, required: false, caseExact: false, mutability: 'readWrite', returned: 'default', uniqueness: 'none', ...extra })
  const meta = (id: string) => ({ resourceType: 'Schema', location: `${baseUrl}/Schemas/${id}` })
  const complex = (name: string, sub: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({ ...a(name), type: 'complex', multiValued: true, subAttributes: sub, ...extra })
  return [
    {
      schemas: [SCHEMA.schema],
      id: SCHEMA.user,
      name: 'User',
      description: 'A person who may approve device sign-ins',
      attributes: [
        a('userName', { required: true, uniqueness: 'server' }),
        a('displayName'),
        a('externalId', { caseExact: true }),
        { ...a('name'), type: 'complex', subAttributes: [a('formatted'), a('familyName'), a('givenName')] },
        complex('emails', [a('value'), a('type'), { ...a('primary'), type: 'boolean' }]),
        { ...a('active'), type: 'boolean' },
        { ...a('password'), mutability: 'writeOnly', returned: 'never', description: 'Not stored: devicegate does not take passwords from provisioning' },
        complex('groups', [a('value', { mutability: 'readOnly' }), a('display', { mutability: 'readOnly' })], { mutability: 'readOnly' }),
      ],
      meta: meta(SCHEMA.user),
    },
    {
      schemas: [SCHEMA.schema],
      id: SCHEMA.enterprise,
      name: 'EnterpriseUser',
      description: 'Enterprise User',
      attributes: [a('employeeNumber'), a('department'), { ...a('manager'), type: 'complex', subAttributes: [a('value'), a('displayName', { mutability: 'readOnly' })] }],
      meta: meta(SCHEMA.enterprise),
    },
    {
      schemas: [SCHEMA.schema],
      id: SCHEMA.group,
      name: 'Group',
      description: 'A group; its members\' policy groups include its displayName',
      attributes: [a('displayName', { required: true, uniqueness: 'server' }), a('externalId', { caseExact: true }), complex('members', [a('value', { caseExact: true, mutability: 'immutable' }), a('display', { mutability: 'readOnly' }), a('type')])],
      meta: meta(SCHEMA.group),
    },
  ]
}
