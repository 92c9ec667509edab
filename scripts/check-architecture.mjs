#!/usr/bin/env node
/**
 * Checks devicegate's dependency rules: the import rules of `.dependency-cruiser.cjs`
 * (dependency-cruiser over the TypeScript import graph, type-only and dynamic imports included)
 * and one rule imports cannot show — `core/` never reads the clock (`Date.now()`); time comes in
 * through `core/ports.ts` (`Clock`).
 *
 * Usage: `node scripts/check-architecture.mjs` (from the repository root; exit status 1 and one
 * line per violation when a rule is broken). `npm test` runs it through
 * test/dependency-rules.test.ts, which also shows it failing on a fixture that breaks every rule.
 */
import { readdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cruise } from 'dependency-cruiser'
import ts from 'typescript'

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..')

/**
 * @typedef {{ rule: string, from: string, to: string }} Violation
 *   `rule` names the broken rule; `from` the importing file; `to` the imported module (or, for
 *   `core-reads-no-clock`, the `line:column` of the call).
 */

/**
 * Runs every check on `baseDir` (a repository root: rules name paths like `src/core/`).
 * @param {{ baseDir?: string, tsConfig?: string }} [options] `baseDir` default: this repository;
 *   `tsConfig` default: `<this repository>/tsconfig.json`.
 * @returns {Promise<Violation[]>} empty when every rule holds.
 */
export async function checkArchitecture({ baseDir = ROOT, tsConfig = join(ROOT, 'tsconfig.json') } = {}) {
  const config = createRequire(import.meta.url)(join(ROOT, '.dependency-cruiser.cjs'))
  const result = await cruise(
    ['src'],
    {
      ...config.options,
      tsConfig: { fileName: tsConfig },
      baseDir,
      validate: true,
      ruleSet: { forbidden: config.forbidden },
    },
  )
  const output = /** @type {import('dependency-cruiser').ICruiseResult} */ (result.output)
  const violations = output.summary.violations.map((v) => ({ rule: v.rule.name, from: v.from, to: v.to }))
  return [...violations, ...(await findClockReads(join(baseDir, 'src', 'core'), baseDir))]
}

/** Calls of `Date.now()` in the TypeScript files under `dir` (comments and strings do not count). */
async function findClockReads(dir, baseDir) {
  /** @type {Violation[]} */
  const found = []
  let entries
  try {
    entries = await readdir(dir, { recursive: true })
  } catch {
    return found
  }
  for (const entry of entries.filter((e) => e.endsWith('.ts')).sort()) {
    const path = join(dir, entry)
    const source = ts.createSourceFile(path, await readFile(path, 'utf8'), ts.ScriptTarget.ES2022, true)
    const visit = (node) => {
      if (
        ts.isPropertyAccessExpression(node) &&
        ts.isIdentifier(node.expression) &&
        node.expression.text === 'Date' &&
        node.name.text === 'now'
      ) {
        const { line, character } = source.getLineAndCharacterOfPosition(node.getStart(source))
        found.push({ rule: 'core-reads-no-clock', from: relative(baseDir, path), to: `${line + 1}:${character + 1}` })
      }
      ts.forEachChild(node, visit)
    }
    visit(source)
  }
  return found
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const violations = await checkArchitecture()
  for (const v of violations) console.error(`${v.rule}: ${v.from} → ${v.to}`)
  if (violations.length > 0) process.exit(1)
  console.log('dependency rules: no violation')
}
