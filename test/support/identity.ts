/**
 * Test support for identity tests: confidential clients for SCIM provisioning and the admin API,
 * their client_credentials tokens, and a SCIM caller.
 */
import { hash } from '@node-rs/argon2'
import { basic, postForm } from './server.js'

/** A confidential client with only the client_credentials grant and one scope (opaque tokens). */
export async function confidentialClient(clientId: string, secret: string, scope: string): Promise<Record<string, unknown>> {
  return { client_id: clientId, type: 'confidential', client_secret_hash: await hash(secret), grant_types: ['client_credentials'], scopes: [scope], access_token_format: 'opaque' }
}

/** A client_credentials access token for `scope`. */
export async function clientToken(baseUrl: string, clientId: string, secret: string, scope: string): Promise<string> {
  return (await postForm(`${baseUrl}/token`, { grant_type: 'client_credentials', scope }, { authorization: basic(clientId, secret) })).json.access_token as string
}

/** Calls `<url>/scim/v2<path>` with a bearer token (both read at each call); JSON in and out (`application/scim+json`). */
export function scimCaller(target: () => { url: string; token: string }) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const { url, token } = target()
    const res = await fetch(`${url}/scim/v2${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    const text = await res.text()
    return { status: res.status, json: text ? (JSON.parse(text) as any) : undefined }
  }
}
