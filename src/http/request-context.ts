/**
 * Per-request facts derived once by the HTTP layer and read everywhere else.
 */
declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The caller's IP address: the socket peer, or — only when the peer is a configured trusted
     * proxy — the right-most untrusted address of `X-Forwarded-For`. Used for rate limits, the
     * review page, logs, policy and audit.
     */
    clientIp: string
  }
}
export {}
