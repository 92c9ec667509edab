/**
 * A fresh PostgreSQL schema for one test file's server (`DEVICEGATE_TEST_PG_URL`): its storage URL
 * points `search_path` at the schema, and `drop()` removes it with everything in it.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'

/** Runs `fn` on a client of its own connected to `pgUrl`, closed afterwards. */
export async function withPgClient<T>(pgUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: pgUrl })
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end()
  }
}

async function query(pgUrl: string, text: string): Promise<void> {
  await withPgClient(pgUrl, (c) => c.query(text))
}

/** Creates `<prefix>_<pid>_<random>` and answers its storage URL and how to drop it. */
export async function freshPgSchema(pgUrl: string, prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const schema = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
  await query(pgUrl, `create schema ${schema}`)
  const url = new URL(pgUrl)
  url.searchParams.set('options', `-c search_path=${schema}`)
  return { url: url.toString(), drop: () => query(pgUrl, `drop schema if exists ${schema} cascade`) }
}
