/** Types of scripts/check-architecture.mjs (for test/dependency-rules.test.ts). */

/** One broken rule: the rule's name, the importing file, and the imported module (or `line:column`). */
export interface Violation {
  rule: string
  from: string
  to: string
}

/**
 * Runs every dependency rule on `baseDir` (a repository root; default: this repository), with the
 * TypeScript settings of `tsConfig` (default: this repository's tsconfig.json).
 * @returns the violations; empty when every rule holds.
 */
export function checkArchitecture(options?: { baseDir?: string; tsConfig?: string }): Promise<Violation[]>
