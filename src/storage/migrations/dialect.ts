/**
 * Which database a migration runs on, for the few statements that differ (triggers, table
 * rebuilds). Shared by the migration bodies of every domain.
 */
import { PostgresAdapter, type Kysely } from 'kysely'

/** True when `db` talks to PostgreSQL (otherwise SQLite). */
export function isPostgres(db: Kysely<any>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter
}
