/**
 * Prepared-query helpers shared by every Kysely storage domain: hot-path statements are built and
 * compiled once per store, then executed with new parameter values.
 */
import { createHash } from 'node:crypto'
import { sql, type Compilable, type CompiledQuery, type Kysely, type SqlBool } from 'kysely'
import type { DevicegateDatabase } from './tables.js'

/**
 * SQL texts of the hot statements ({@link PreparedQuery}), each with a statement name derived from
 * the text: the PostgreSQL adapter runs these as named (server-side prepared) statements, so the
 * server parses and plans each once per connection instead of on every call (measured: about
 * half of the backend's CPU for an introspection lookup; bench/README.md, "Tokens").
 *
 * Statements with `*` in their text are left out: a column added by a later migration (a rolling
 * upgrade) would change the result of a prepared `SELECT t.*` and PostgreSQL refuses such a plan
 * ("cached plan must not change result type"); an explicit column list does not change.
 */
export const NAMED_STATEMENTS: ReadonlyMap<string, string> = new Map<string, string>()

/**
 * Adds a hot statement's SQL text to {@link NAMED_STATEMENTS} (done by {@link PreparedQuery} for
 * its own; call it for raw SQL run through `CompiledQuery.raw`). Texts with `*` are left out (see
 * above). Idempotent.
 */
export function registerNamed(text: string): void {
  if (text.includes('*') || NAMED_STATEMENTS.has(text)) return
  ;(NAMED_STATEMENTS as Map<string, string>).set(text, `dg_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`)
}

/**
 * A query compiled once and executed many times with new parameter values.
 *
 * Kysely rebuilds and recompiles the operation tree on every call; on the hot paths (a poll, an
 * introspection) that is about a tenth of the request. The query is built once with sentinel
 * values, and each compiled parameter that is a sentinel is replaced by the matching argument at
 * execution, so parameter order and repetition in the SQL do not matter.
 */
export class PreparedQuery<Row> {
  readonly #compiled: CompiledQuery<Row>
  readonly #slots: readonly number[]

  constructor(arity: number, build: (...sentinels: string[]) => Compilable<Row>) {
    const sentinels = Array.from({ length: arity }, (_, i) => `\u0000devicegate-param-${i}\u0000`)
    this.#compiled = build(...sentinels).compile()
    this.#slots = this.#compiled.parameters.map((p) => sentinels.indexOf(p as string))
    if (this.#slots.filter((i) => i >= 0).length < arity) throw new TypeError('PreparedQuery: a parameter was not bound')
    registerNamed(this.#compiled.sql)
  }

  /**
   * Runs the query with `args` in place of the sentinels (an array only where the SQL takes one,
   * e.g. `= any(…)` on PostgreSQL): straight on the connection where the
   * dialect offers a {@link DirectExecutor} (SQLite) and it accepts, else through Kysely.
   */
  async execute(db: Kysely<DevicegateDatabase>, ...args: readonly (string | number | null | readonly string[])[]): Promise<Row[]> {
    const fixed = this.#compiled.parameters
    const parameters = this.#slots.map((slot, i) => (slot >= 0 ? args[slot] : fixed[i]))
    const direct = directExecutorOf(db)
    if (direct !== undefined) {
      const rows = direct.execute(this.#compiled.sql, parameters, db.isTransaction)
      if (rows !== undefined) return rows as Row[]
    }
    const result = await db.executeQuery<Row>({ ...this.#compiled, parameters })
    return result.rows
  }
}

/**
 * An INSERT of one whole row, compiled (see {@link PreparedQuery}) on first use for the columns
 * of that first row. Rows must come from one mapper function, so every row has the same columns;
 * a row with other columns is refused rather than written in part.
 */
export class PreparedInsert<Row extends object> {
  readonly #build: (row: Row) => Compilable<unknown>
  #columns: readonly (keyof Row & string)[] | undefined
  #query: PreparedQuery<unknown> | undefined

  constructor(build: (row: Row) => Compilable<unknown>) {
    this.#build = build
  }

  /** @throws {TypeError} when `row` has other columns than the first row inserted. */
  async execute(db: Kysely<DevicegateDatabase>, row: Row): Promise<void> {
    const columns = (this.#columns ??= Object.keys(row) as (keyof Row & string)[])
    this.#query ??= new PreparedQuery(columns.length, (...sentinels) =>
      this.#build(Object.fromEntries(columns.map((c, i) => [c, sentinels[i]])) as Row),
    )
    if (Object.keys(row).length !== columns.length) throw new TypeError('PreparedInsert: the row has other columns')
    await this.#query.execute(db, ...columns.map((c) => (row[c] ?? null) as string | number | null))
  }
}

/** Where a dialect's adapter carries its {@link DirectExecutor}. */
export const DIRECT_EXECUTOR = Symbol.for('devicegate.directExecutor')

/**
 * Runs a compiled statement synchronously on an in-process connection (SQLite), skipping Kysely's
 * asynchronous executor (connection hand-over, result mapping): on the hot paths that machinery
 * costs more than the statement. Writes still go through the adapter's group commit.
 */
export interface DirectExecutor {
  /**
   * Runs `sql` with `parameters`; returns the rows (none for a statement without RETURNING), or
   * undefined when it must not run now — another caller's explicit transaction holds the
   * connection and `inTransaction` is false — so the caller goes through Kysely and waits its turn.
   * @param inTransaction The caller runs inside its own Kysely transaction (it holds the connection).
   */
  execute(sql: string, parameters: readonly unknown[], inTransaction: boolean): unknown[] | undefined
}

function directExecutorOf(db: Kysely<DevicegateDatabase>): DirectExecutor | undefined {
  return (db.getExecutor().adapter as { [DIRECT_EXECUTOR]?: DirectExecutor })[DIRECT_EXECUTOR]
}

/** A condition that matches nothing (a filter with an empty id list). */
export const NEVER = sql<SqlBool>`1 = 0`
