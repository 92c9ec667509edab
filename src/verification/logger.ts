/**
 * The subset of a pino-style logger the verification service writes to: structured fields first,
 * then a message. Never given a code, password or token value.
 */
export interface VerificationLogger {
  info(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
}
