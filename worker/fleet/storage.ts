/**
 * The small storage interface domain modules use: synchronous SQL over the
 * Durable Object's SQLite storage. Synchronous on purpose — a read-check-write
 * with no `await` in between cannot interleave with another request, which is
 * what makes caps and sequence numbers exact.
 *
 * Rules: every query that can return many rows has a LIMIT (paginate with a
 * cursor); hot filters have an index; never hold `transaction()` across an
 * `await` (it is synchronous, so the compiler enforces it).
 */
export interface FleetStorage {
  /** All rows of a bounded query. */
  all<T extends Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]): T[]
  /** The first row, or undefined. */
  one<T extends Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]): T | undefined
  /** Runs a write; returns rows written. */
  run(query: string, ...bindings: unknown[]): number
  /** Runs `fn` atomically (all or nothing). */
  transaction<T>(fn: () => T): T
  /**
   * Applies a module's schema once per object: statements run in order inside
   * one transaction the first time `name` is seen. Add a new name for changes.
   */
  migrate(name: string, statements: readonly string[]): void
}

export function fleetStorage(storage: DurableObjectStorage): FleetStorage {
  const sql = storage.sql
  sql.exec('CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)')
  const applied = new Set<string>()
  const api: FleetStorage = {
    all: <T extends Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]) => sql.exec<T>(query, ...bindings).toArray(),
    one: <T extends Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]) => {
      const rows = sql.exec<T>(query, ...bindings).toArray()
      return rows[0]
    },
    run: (query, ...bindings) => sql.exec(query, ...bindings).rowsWritten,
    transaction: (fn) => storage.transactionSync(fn),
    migrate: (name, statements) => {
      if (applied.has(name)) return
      storage.transactionSync(() => {
        if (!sql.exec('SELECT 1 FROM _migrations WHERE name = ?', name).toArray().length) {
          for (const statement of statements) sql.exec(statement)
          sql.exec('INSERT INTO _migrations (name, applied_at) VALUES (?, ?)', name, new Date().toISOString())
        }
      })
      applied.add(name)
    },
  }
  return api
}

/** Opaque cursor for `ORDER BY <time> DESC, id DESC` pagination. */
export function encodeCursor(time: string, id: string): string {
  return btoa(`${time}|${id}`).replace(/=+$/, '')
}

export function decodeCursor(cursor: string): { time: string; id: string } | undefined {
  try {
    const [time, id, ...rest] = atob(cursor).split('|')
    if (!time || !id || rest.length) return undefined
    return { time, id }
  } catch {
    return undefined
  }
}
