/**
 * Console sign-in and sign-out.
 *
 * - `GET  /console/sign-in`          the form (username, password, authenticator code) and one
 *                                    button per upstream method ({@link ConsoleSignIn}).
 * - `POST /console/sign-in`          `username`, `password`, `totp`, `csrf_token`, `next` → 303.
 * - `POST /console/sign-out`         `csrf_token` → 303 to the sign-in page.
 *
 * Failed sign-ins are limited per address and username and per address (same limits as the
 * verification pages), audited as `session.sign_in_failed` with `surface: console`, and answered
 * with one message whatever failed, so the form does not tell which part was wrong. The second
 * factor is checked only after the password, so nobody can lock a person's authenticator without
 * their password.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { User } from '../../core/model.js'
import { MAX_USERNAME_LENGTH as MAX_USERNAME, SIGN_IN_MAX_FAILURES, SIGN_IN_MAX_FAILURES_PER_IP, SIGN_IN_WINDOW_SECONDS } from '../../verification/sign-in.js'
import { checkTotpCode, findUserTotpSecret } from '../../verification/totp.js'
import { sha256Hex } from '../../system.js'
import { csrf, field, html, page } from '../html.js'
import { CONSOLE_PREFIX, type ConsoleContext, type UpstreamIdentity } from '../index.js'
import { roleOf } from '../roles.js'

/** Longest password considered (bounds argon2 work), as on the verification pages. */
const MAX_PASSWORD = 1024

/** Where to go after sign-in: only console paths (no open redirect). */
export function safeNext(next: unknown): string {
  return typeof next === 'string' && /^\/console(\/[A-Za-z0-9/_\-.?=&%+]*)?$/.test(next) && !next.startsWith('/console//') ? next : CONSOLE_PREFIX
}

export async function registerSignInPages(app: FastifyInstance, ctx: ConsoleContext): Promise<void> {
  const { deps } = ctx
  const methods = deps.signIns ?? []

  function signInPage(csrfToken: string, o: { next?: string; username?: string; message?: string } = {}): string {
    return page({
      title: 'Sign in to the governance console',
      notice: o.message === undefined ? undefined : { tone: 'error', text: o.message },
      body: html`<div class="card">
<form method="post" action="/console/sign-in">
${csrf(csrfToken)}<input type="hidden" name="next" value="${safeNext(o.next)}">
${field('username', 'Username', o.username, { required: true, autocomplete: 'username' })}
${field('password', 'Password', undefined, { type: 'password', required: true, autocomplete: 'current-password' })}
${field('totp', 'Authenticator code', undefined, { autocomplete: 'one-time-code', hint: '6 digits from your authenticator app. Required for console roles.' })}
<div class="actions"><button type="submit" class="primary">Sign in</button></div>
</form>
${methods.length === 0 ? '' : html`<h2>Or</h2><ul>${methods.map((m) => html`<li><a href="/console/sign-in/${m.id}">${m.label}</a></li>`)}</ul>`}
</div>
<p class="muted">Approvers without a console role can sign in too, to see and revoke the devices they approved.</p>`,
    })
  }

  app.get('/sign-in', async (request, reply) => {
    const loaded = await ctx.sessions.loadSession(request)
    const next = (request.query as Record<string, unknown>).next
    if (loaded?.user !== undefined) return ctx.redirect(reply, safeNext(next))
    const record = await ctx.sessions.anonymous(request, reply)
    return ctx.send(reply, 200, signInPage(record.csrfToken, { next: safeNext(next) }))
  })

  app.post('/sign-in', async (request, reply) => {
    const now = deps.clock.nowSeconds()
    const form = ctx.form(request)
    const loaded = await ctx.sessions.loadSession(request)
    if (loaded === undefined || !ctx.sessions.isTrustedPost(request, loaded.record)) {
      return ctx.error(reply, request, 403, 'Request not accepted', 'This form could not be verified, so nothing was changed. Open the sign-in page again.')
    }
    const username = typeof form.username === 'string' ? form.username : ''
    const password = typeof form.password === 'string' ? form.password : ''
    const totp = typeof form.totp === 'string' ? form.totp : ''
    const next = safeNext(form.next)
    const limits = [
      { key: `console_sign_in:${request.clientIp}:${sha256Hex(username)}`, max: SIGN_IN_MAX_FAILURES },
      { key: `console_sign_in_ip:${request.clientIp}`, max: SIGN_IN_MAX_FAILURES_PER_IP },
    ]
    const counts = await Promise.all(limits.map((l) => deps.store.readCounter(l.key, SIGN_IN_WINDOW_SECONDS, now)))
    if (limits.some((l, i) => (counts[i] ?? 0) >= l.max)) {
      reply.header('retry-after', String(SIGN_IN_WINDOW_SECONDS - (now % SIGN_IN_WINDOW_SECONDS)))
      return ctx.send(reply, 429, signInPage(loaded.record.csrfToken, { next, username, message: 'Too many failed sign-ins. Try again later.' }))
    }
    const fail = async (reason: string, status = 401, message = 'Sign-in failed. Check your username, password and authenticator code.') => {
      await Promise.all(limits.map((l) => deps.store.incrementCounter(l.key, SIGN_IN_WINDOW_SECONDS, now)))
      const known = username.length <= MAX_USERNAME && deps.users.get(username) !== undefined
      await deps.events.record({ type: 'session.sign_in_failed', subject: known ? username : null, ip: request.clientIp, details: { surface: 'console', reason } })
      if (status === 401) reply.header('www-authenticate', 'Form realm="devicegate-console"')
      return ctx.send(reply, status, signInPage(loaded.record.csrfToken, { next, username: username.slice(0, MAX_USERNAME), message }))
    }
    const user =
      username.length > 0 && username.length <= MAX_USERNAME && password.length > 0 && password.length <= MAX_PASSWORD
        ? await deps.users.authenticate(username, password)
        : undefined
    if (user === undefined) return fail('password')
    const role = roleOf(deps.config, user.username, user.groups ?? [])
    const secret = await findUserTotpSecret(deps.store, user)
    if (secret === undefined && role !== null) {
      return fail('no_second_factor', 403, 'A console role needs a second factor, and none is set up for your account. Ask an administrator to enrol one (devicegate users enroll-totp).')
    }
    let mfa = false
    if (secret !== undefined) {
      const result = await checkTotpCode(deps.store, user.username, secret, totp, now)
      if (result === 'locked') return fail('totp_locked', 429, 'Too many wrong authenticator codes. Try again later.')
      if (result !== 'ok') return fail(result === 'replayed' ? 'totp_replayed' : 'totp')
      mfa = true
    }
    await ctx.sessions.signIn(request, reply, user, mfa, 'password+totp')
    return ctx.redirect(reply, role === null && next === CONSOLE_PREFIX ? `${CONSOLE_PREFIX}/my-devices` : next)
  })

  app.post('/sign-out', async (request, reply) => {
    const loaded = await ctx.sessions.loadSession(request)
    if (loaded !== undefined && !ctx.sessions.isTrustedPost(request, loaded.record)) {
      return ctx.error(reply, request, 403, 'Request not accepted', 'This form could not be verified. Open the console again and sign out from there.')
    }
    await ctx.sessions.signOut(request, reply)
    return ctx.redirect(reply, `${CONSOLE_PREFIX}/sign-in`)
  })

  // Upstream methods (OpenID Connect, …) register their own routes and end here.
  const complete = async (request: FastifyRequest, reply: FastifyReply, identity: UpstreamIdentity): Promise<FastifyReply> => {
    const user: User | undefined = deps.users.get(identity.username)
    if (user === undefined || user.disabled) {
      await deps.events.record({ type: 'session.sign_in_failed', subject: null, ip: request.clientIp, details: { surface: 'console', reason: 'unknown_user', method: identity.method } })
      return ctx.error(reply, request, 403, 'Not allowed', 'Your account is not known to devicegate or is disabled.')
    }
    if (!identity.mfa && roleOf(deps.config, user.username, user.groups ?? []) !== null) {
      await deps.events.record({ type: 'session.sign_in_failed', subject: user.username, ip: request.clientIp, details: { surface: 'console', reason: 'no_second_factor', method: identity.method } })
      return ctx.error(reply, request, 403, 'Second factor needed', 'A console role needs a sign-in with a second factor. Sign in again with one.')
    }
    await ctx.sessions.signIn(request, reply, user, identity.mfa, identity.method)
    return ctx.redirect(reply, CONSOLE_PREFIX)
  }
  for (const method of methods) {
    if (!/^[a-z0-9-]+$/.test(method.id)) throw new TypeError(`console sign-in method id "${method.id}": use [a-z0-9-]`)
    await method.register(app, { complete, store: deps.store, clock: deps.clock })
  }
}
