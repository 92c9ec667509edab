import type { Client } from '../../core/model.js'
import type { ProtocolDeps, RequestContext } from '../deps.js'
import type { Params } from '../params.js'
import type { TokenResponse } from '../tokens.js'

/** What every grant module receives after client authentication. */
export interface GrantInput {
  client: Client
  params: Params
  ctx: RequestContext
  /** Thumbprint of the key of a verified DPoP proof on this request (RFC 9449 §4), or null. */
  dpopJkt: string | null
}

/** Every grant module has this shape, so `token.ts` only dispatches. */
export interface GrantModule {
  readonly grantType: string
  readonly parameters: readonly string[]
  handle(input: GrantInput, deps: ProtocolDeps): Promise<TokenResponse>
}
