/**
 * The governance console: server-rendered pages under `/console` for identity teams
 * (roles viewer / operator / admin) and "My devices" for every approver.
 *
 * Security model, per request:
 * - Sessions: an opaque cookie `dg_console` (HttpOnly, Secure, SameSite=Lax, Path=/console) whose
 *   SHA-256 — domain-separated with a `console:` prefix, so a verification-page cookie can never be
 *   used here nor the reverse — keys a row of the web session table. Absolute lifetime
 *   `console.session_ttl_seconds` (default 1800 s) and inactivity timeout
 *   `console.idle_timeout_seconds` (default 1800 s), NIST SP 800-63B §4.2.2–4.2.3 (AAL2): each request of a
 *   signed-in session moves its expiry to now + idle timeout, never past sign-in + lifetime; a
 *   request with an ended session is sent to sign in (GET) or refused 401, and the end is audited
 *   once as `session.expired` with `reason` `idle_timeout` or `lifetime_ended` (recorded when the
 *   browser comes back: a session never revisited is purged silently). Rotated at sign-in (no
 *   fixation).
 * - Sign-in: local password + TOTP (RFC 6238) from the built-in user store; a person with a console
 *   role must complete the second factor; one without a role (My devices only) must too when they
 *   have enrolled one. Upstream sign-in plugs in through {@link ConsoleSignIn}.
 * - Every POST: same-origin (`Origin` equal to the issuer's, no `Sec-Fetch-Site: cross-site`) and
 *   the session's synchronizer CSRF token, then the role check for the route's permission
 *   ({@link ConsolePermission}), all on the server; a refusal is 403 and audited.
 * - Every action is audited with the signed-in person's username as actor.
 * - Headers: CSP without any script source and with `frame-ancestors 'none'`, X-Frame-Options DENY,
 *   no-store, nosniff, same-origin referrer; nothing is loaded from another origin.
 */
import cookie from '@fastify/cookie'
import helmet from '@fastify/helmet'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ConsoleConfig } from '../config/console.js'
import type { DomainEvent, EventSink } from '../core/events.js'
import { shownName, type Client, type ClientDirectory, type User, type UserDirectory } from '../core/model.js'
import type { Clock, Random } from '../core/ports.js'
import type { AuditLog } from '../governance/audit.js'
import type { PrincipalAdmin, PrincipalOverrides } from '../governance/principals.js'
import type { Person } from '../identity/people.js'
import type { RevocationService } from '../governance/revocation.js'
import type { PolicyHolder } from '../policy/holder.js'
import type { PolicyService } from '../policy/service.js'
import { OAuthError } from '../protocol/errors.js'
import { StoreUnavailableError, type Store, type WebSessionRecord } from '../storage/store.js'
import { randomToken, sha256Hex } from '../system.js'
import { createPostGuard } from '../web/csrf.js'
import { CONSOLE_CSP_DIRECTIVES, html, NAV, page, type NavItem, type Viewer } from './html.js'
import { isAllowed, roleOf, type ConsolePermission, type ConsoleRole } from './roles.js'

/** Path prefix of the console. */
export const CONSOLE_PREFIX = '/console'
/** A signed-in session's expiry is rewritten only when it would move by more than this (seconds). */
const IDLE_TOUCH_SECONDS = 60

/** Name of the console session cookie. */
export const CONSOLE_COOKIE = 'dg_console'

/** The identity an upstream sign-in verified. */
export interface UpstreamIdentity {
  /** Username in the user directory (the provider maps its subject or claim onto it). */
  username: string
  /** Whether the sign-in included a second factor (e.g. OIDC `amr` with `otp`/`mfa`, RFC 8176). */
  mfa: boolean
  /** Name of the method for the audit record, e.g. `oidc:corp`. */
  method: string
}

/** Ends an upstream sign-in: rotates the session, audits, redirects to the console. */
export type CompleteSignIn = (request: FastifyRequest, reply: FastifyReply, identity: UpstreamIdentity) => Promise<FastifyReply>

/** What a {@link ConsoleSignIn} gets to register its routes with. */
export interface ConsoleSignInContext {
  /** Ends the sign-in once the person is verified (session rotation, audit, redirect). */
  complete: CompleteSignIn
  store: Store
  clock: Clock
}

/**
 * The seam for sign-in methods other than the local password + TOTP form — the upstream OpenID
 * Connect provider (src/identity/). The sign-in page shows one link per method to
 * `/console/sign-in/<id>`; the method registers that route (and whatever it needs after it) on the
 * console scope and, once it has verified the person upstream, calls `complete` with who they are.
 * `upstream-sign-in.ts` adapts a sign-in that ends in a verification-page session.
 */
export interface ConsoleSignIn {
  /** URL segment, `[a-z0-9-]+`. */
  readonly id: string
  /** Link text, e.g. `Sign in with Corp SSO`. */
  readonly label: string
  register(app: FastifyInstance, ctx: ConsoleSignInContext): Promise<void>
}

/** What the console needs; built by the composition root. */
export interface ConsoleDeps {
  config: ConsoleConfig
  store: Store
  clock: Clock
  random: Random
  /** Origin of the issuer; a browser's `Origin` on POSTs must equal it. */
  issuerOrigin: string
  /** The governed directories (administrator overrides applied). */
  users: UserDirectory
  clients: ClientDirectory
  /** Every person of the identity domain (configured, upstream, SCIM; any status), for the People list. */
  people: { all(): readonly Person[] }
  /** Every configured client, for the client lists. */
  configuredClients: readonly Client[]
  events: EventSink
  revocation: RevocationService
  principals: PrincipalAdmin
  overrides: PrincipalOverrides
  audit: AuditLog | undefined
  policy: PolicyService
  policyHolder: PolicyHolder
  /** Upstream sign-in methods (none: local sign-in only). */
  signIns?: readonly ConsoleSignIn[]
  /** Further navigation entries, e.g. the access-review inbox. */
  extraNav?: readonly NavItem[]
  logger: FastifyBaseLogger
}

/** A signed-in console request. */
export interface ConsoleSession {
  record: WebSessionRecord
  user: User
  role: ConsoleRole | null
  viewer: Viewer
}

type Form = Record<string, string | string[] | undefined>

declare module 'fastify' {
  interface FastifyRequest {
    consoleSession?: ConsoleSession
  }
  interface FastifyContextConfig {
    /** Permission a console route needs; absent: public (sign-in pages). */
    consolePermission?: ConsolePermission
  }
}

/** Helpers shared by the page modules. */
export interface ConsoleContext {
  deps: ConsoleDeps
  nav: readonly NavItem[]
  /** Sends HTML with no-store. */
  send(reply: FastifyReply, status: number, html: string): FastifyReply
  /** The signed-in session (only on routes with a permission). */
  session(request: FastifyRequest): ConsoleSession
  /** The parsed form body (empty when none). */
  form(request: FastifyRequest): Form
  /** One string field of a form or query, trimmed, at most `max` characters; undefined when empty. */
  text(source: Form | Record<string, unknown>, name: string, max?: number): string | undefined
  /** Records an audit event with the signed-in person as actor and the request's address. */
  audit(request: FastifyRequest, event: Omit<DomainEvent, 'actor' | 'ip'>): Promise<void>
  /** 303 to `location` with a notice kept in the query. */
  redirect(reply: FastifyReply, location: string): FastifyReply
  /** Session operations (the sign-in pages). */
  sessions: SessionControl
  /** An error page. */
  error(reply: FastifyReply, request: FastifyRequest, status: number, title: string, message: string): FastifyReply
}

/** A page module: registers its routes (each with a `consolePermission`) on the console scope. */
export type ConsolePage = (app: FastifyInstance, ctx: ConsoleContext) => Promise<void>

/**
 * Pages another domain adds to the console, with their navigation entries — the slot for the
 * access-review inbox (src/reviews/): `{ nav: [{ href: '/console/reviews', label: 'Access reviews',
 * needs: 'self' }], pages: [registerReviewInbox] }`.
 */
export interface ConsoleExtension {
  nav: readonly NavItem[]
  pages: readonly ConsolePage[]
}

/** The console's session lookup key: domain-separated from the verification pages' sessions. */
export function consoleSessionHash(cookieValue: string): string {
  return sha256Hex(`console:${cookieValue}`)
}

/**
 * Registers the console as an encapsulated plugin under {@link CONSOLE_PREFIX} with its own cookie
 * parser, security headers and HTML error pages.
 */
export async function registerConsole(app: FastifyInstance, deps: ConsoleDeps, pages: readonly ConsolePage[]): Promise<void> {
  const issuerOrigin = new URL(deps.issuerOrigin).origin
  await app.register(
    async (scope) => {
      await scope.register(cookie)
      await scope.register(helmet, {
        contentSecurityPolicy: { useDefaults: false, directives: Object.fromEntries(Object.entries(CONSOLE_CSP_DIRECTIVES).map(([k, v]) => [k, [...v]])) },
        frameguard: { action: 'deny' },
        hsts: issuerOrigin.startsWith('https:') ? { maxAge: 31_536_000 } : false,
        referrerPolicy: { policy: 'same-origin' },
        crossOriginResourcePolicy: { policy: 'same-origin' },
      })

      const nav = [...NAV.slice(0, -1), ...(deps.extraNav ?? []), NAV[NAV.length - 1]!]
      const send = (reply: FastifyReply, status: number, body: string) =>
        reply.code(status).header('cache-control', 'no-store').header('pragma', 'no-cache').type('text/html; charset=utf-8').send(body)
      const form = (request: FastifyRequest): Form => {
        const body = request.body
        return body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Form) : {}
      }
      const text = (source: Form | Record<string, unknown>, name: string, max = 200): string | undefined => {
        const v = source[name]
        if (typeof v !== 'string') return undefined
        const t = v.trim()
        return t.length === 0 ? undefined : t.slice(0, max)
      }
      const error = (reply: FastifyReply, request: FastifyRequest, status: number, title: string, message: string) =>
        send(reply, status, page({ title, viewer: request.consoleSession?.viewer, nav, body: html`<p class="notice error" role="alert">${message}</p><p><a href="${CONSOLE_PREFIX}">Back to the console</a></p>` }))
      // --- sessions ----------------------------------------------------------------------------

      /** Starts a session (anonymous, or signed in) and sets the cookie. */
      async function startSession(reply: FastifyReply, user: User | undefined, mfa: boolean): Promise<WebSessionRecord> {
        const now = deps.clock.nowSeconds()
        const value = randomToken(deps.random)
        const record: WebSessionRecord = {
          idHash: consoleSessionHash(value),
          csrfToken: randomToken(deps.random),
          subject: user?.username ?? null,
          authTime: user === undefined ? null : now,
          mfaAt: mfa ? now : null,
          createdAt: now,
          expiresAt: now + Math.min(deps.config.idleTimeoutSeconds, deps.config.sessionTtlSeconds),
        }
        await deps.store.createWebSession(record)
        if (mfa) await deps.store.markWebSessionMfa(record.idHash, now)
        reply.setCookie(CONSOLE_COOKIE, value, { httpOnly: true, secure: true, sameSite: 'lax', path: CONSOLE_PREFIX, maxAge: deps.config.sessionTtlSeconds })
        return record
      }

      const sessions: SessionControl = {
        loadSession,
        isTrustedPost,
        async anonymous(request, reply) {
          const loaded = await loadSession(request)
          return loaded?.record ?? startSession(reply, undefined, false)
        },
        async signIn(request, reply, user, mfa, method) {
          const previous = await loadSession(request)
          const record = await startSession(reply, user, mfa)
          if (previous !== undefined) await deps.store.deleteWebSession(previous.record.idHash)
          const role = roleOf(deps.config, user.username, user.groups ?? [])
          deps.logger.info({ event: 'console.signed_in', subject: user.username, role, ip: request.clientIp }, 'console sign-in')
          await deps.events.record({ type: 'session.signed_in', actor: user.username, subject: user.username, ip: request.clientIp, details: { surface: 'console', method, mfa, role } })
          return record
        },
        async signOut(request, reply) {
          const loaded = await loadSession(request)
          if (loaded !== undefined) {
            await deps.store.deleteWebSession(loaded.record.idHash)
            await deps.events.record({ type: 'session.signed_out', actor: loaded.record.subject, subject: loaded.record.subject, ip: request.clientIp, details: { surface: 'console' } })
          }
          reply.clearCookie(CONSOLE_COOKIE, { httpOnly: true, secure: true, sameSite: 'lax', path: CONSOLE_PREFIX })
        },
      }
      const ctx: ConsoleContext = {
        deps,
        nav,
        send,
        form,
        text,
        error,
        session(request) {
          if (request.consoleSession === undefined) throw new TypeError('console route without a permission')
          return request.consoleSession
        },
        async audit(request, event) {
          await deps.events.record({ ...event, actor: request.consoleSession?.user.username ?? null, ip: request.clientIp } as DomainEvent)
        },
        redirect: (reply, location) => reply.code(303).header('cache-control', 'no-store').header('location', location).send(),
        sessions,
      }

      /** The session for a cookie, with its still-enabled user, or undefined. */
      async function loadSession(request: FastifyRequest): Promise<{ record: WebSessionRecord; user: User | undefined } | undefined> {
        const value = request.cookies[CONSOLE_COOKIE]
        if (value === undefined || value.length === 0 || value.length > 256) return undefined
        const now = deps.clock.nowSeconds()
        const idHash = consoleSessionHash(value)
        const record = await deps.store.findWebSession(idHash, now)
        if (record === undefined) {
          await endExpiredSession(request, idHash, now)
          return undefined
        }
        const user = record.subject === null ? undefined : deps.users.get(record.subject)
        if (record.subject !== null) {
          // Sliding inactivity deadline, capped by the absolute lifetime. Written only when it moves
          // by more than a minute, so a burst of requests costs one write.
          const expiresAt = Math.min(now + deps.config.idleTimeoutSeconds, record.createdAt + deps.config.sessionTtlSeconds)
          if (expiresAt - record.expiresAt > IDLE_TOUCH_SECONDS && (await deps.store.extendWebSession(idHash, expiresAt, now))) record.expiresAt = expiresAt
        }
        return { record, user: user !== undefined && !user.disabled ? user : undefined }
      }

      /**
       * Ends a signed-in session whose inactivity timeout or lifetime has passed: deletes it and
       * audits `session.expired` once (the store hands an expired row to one caller only).
       */
      async function endExpiredSession(request: FastifyRequest, idHash: string, now: number): Promise<void> {
        const ended = await deps.store.takeExpiredWebSession(idHash, now)
        if (ended === undefined || ended.subject === null) return
        const reason = ended.expiresAt >= ended.createdAt + deps.config.sessionTtlSeconds ? 'lifetime_ended' : 'idle_timeout'
        deps.logger.info({ event: 'console.session_expired', subject: ended.subject, reason, ip: request.clientIp }, 'console session ended')
        await deps.events.record({
          type: 'session.expired',
          actor: 'system',
          subject: ended.subject,
          ip: request.clientIp,
          details: { surface: 'console', reason, signedInAt: ended.createdAt, expiredAt: ended.expiresAt },
        })
      }

      const postGuard = createPostGuard(issuerOrigin)
      /** Same origin and this session's CSRF token (the pages' one POST check, `web/csrf.ts`). */
      function isTrustedPost(request: FastifyRequest, record: WebSessionRecord): boolean {
        return postGuard({ secFetchSite: request.headers['sec-fetch-site'], origin: request.headers.origin, csrfToken: form(request).csrf_token }, record.csrfToken)
      }

      scope.setErrorHandler((err, request, reply) => {
        // What the app-wide onRequest hook refuses before any console route (a Content-Encoding:
        // 415, an HTTP/1.1 request without Host: 400, an Expect it cannot meet: 417, the 503 while
        // draining) comes as an OAuthError: its status and headers (Retry-After), as a page.
        if (err instanceof OAuthError) {
          reply.headers({ ...err.headers })
          return err.status >= 500
            ? error(reply, request, err.status, 'Temporarily unavailable', 'The server cannot take this request right now. Nothing was changed; try again in a moment.')
            : error(reply, request, err.status, 'Request not accepted', 'The request could not be read.')
        }
        const status = (err as { statusCode?: number }).statusCode
        if (typeof status === 'number' && status >= 400 && status < 500) return error(reply, request, status, 'Request not accepted', 'The request could not be read.')
        if (err instanceof StoreUnavailableError) {
          request.log.error({ err }, 'store unavailable')
          reply.header('retry-after', '5')
          return error(reply, request, 503, 'Temporarily unavailable', 'The database cannot be reached right now. Nothing was changed; try again in a moment.')
        }
        request.log.error({ err }, 'console error')
        return error(reply, request, 500, 'Something went wrong', 'The console could not complete this request. Nothing else was changed by it; try again.')
      })
      scope.setNotFoundHandler((request, reply) => error(reply, request, 404, 'Not found', 'There is no console page at this address.'))

      // Authentication, CSRF and the role check, before any console route runs.
      scope.addHook('preHandler', async (request, reply) => {
        const permission = request.routeOptions.config.consolePermission
        if (permission === undefined) return
        const loaded = await loadSession(request)
        if (loaded === undefined || loaded.user === undefined) {
          if (request.method === 'GET' || request.method === 'HEAD') {
            const next = request.url.startsWith(CONSOLE_PREFIX) ? request.url : CONSOLE_PREFIX
            return ctx.redirect(reply, `${CONSOLE_PREFIX}/sign-in?next=${encodeURIComponent(next)}`)
          }
          reply.header('www-authenticate', 'Form realm="devicegate-console"')
          return error(reply, request, 401, 'Signed out', 'Your console session has ended. Sign in again; nothing was changed.')
        }
        const user = loaded.user
        const role = roleOf(deps.config, user.username, user.groups ?? [])
        // A role needs a second factor in this sign-in; a session without one (granted a role
        // since) is sent to sign in again.
        const effectiveRole = role !== null && (loaded.record.mfaAt ?? null) === null ? null : role
        request.consoleSession = { record: loaded.record, user, role: effectiveRole, viewer: { username: user.username, name: shownName(user), role: effectiveRole, csrfToken: loaded.record.csrfToken } }
        if (request.method === 'POST' && !isTrustedPost(request, loaded.record)) {
          deps.logger.warn({ event: 'console.request_refused', reason: 'csrf', subject: user.username, ip: request.clientIp }, 'console POST refused')
          return error(reply, request, 403, 'Request not accepted', 'This form could not be verified, so nothing was changed. Open the page again and retry from there.')
        }
        if (!isAllowed(effectiveRole, permission)) {
          // A person without a role who opens a governance page is sent to My devices (navigation,
          // not an attempt); every other refusal is audited.
          if (request.method === 'GET' && effectiveRole === null && permission === 'read') return ctx.redirect(reply, `${CONSOLE_PREFIX}/my-devices`)
          await ctx.audit(request, { type: 'console.access_denied', subject: user.username, details: { method: request.method, path: request.url.split('?')[0], role: effectiveRole, needs: permission } })
          return error(reply, request, 403, 'Not allowed', `Your console role (${effectiveRole ?? 'none'}) does not allow this. Nothing was changed.`)
        }
      })

      for (const register of pages) await register(scope, ctx)
    },
    { prefix: CONSOLE_PREFIX },
  )
}

/** Session operations of the sign-in pages. */
export interface SessionControl {
  loadSession(request: FastifyRequest): Promise<{ record: WebSessionRecord; user: User | undefined } | undefined>
  isTrustedPost(request: FastifyRequest, record: WebSessionRecord): boolean
  /** The current session, or a new anonymous one (for the sign-in form's CSRF token). */
  anonymous(request: FastifyRequest, reply: FastifyReply): Promise<WebSessionRecord>
  /** Rotates to a new signed-in session, deletes the old one, audits `session.signed_in`. */
  signIn(request: FastifyRequest, reply: FastifyReply, user: User, mfa: boolean, method: string): Promise<WebSessionRecord>
  signOut(request: FastifyRequest, reply: FastifyReply): Promise<void>
}
