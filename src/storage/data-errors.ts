/**
 * Database errors caused by the data a request carried rather than by the server.
 *
 * PostgreSQL reports them in SQLSTATE class 22 "data exception": 22021 invalid byte sequence
 * (a NUL byte in text), 22003 numeric value out of range (an integer beyond 64 bits), 22007 /
 * 22008 invalid or out-of-range datetime, 22P02 invalid text representation, and so on. Input
 * validation should refuse such values first; this is the backstop that turns one that slips
 * through into 400 `invalid_request` instead of 500.
 * @see https://www.postgresql.org/docs/current/errcodes-appendix.html
 */

/** Whether `err` is a PostgreSQL data exception (SQLSTATE class 22). */
export function isDataException(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false
  const { code, severity } = err as { code?: unknown; severity?: unknown }
  // `severity` marks an error sent by the server (pg's DatabaseError), not a Node system error.
  return typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code) && typeof severity === 'string'
}
