/**
 * Recognising "the database is unavailable" among the errors a request can fail with, so that
 * an outage is answered `503 service_unavailable` (retry later) rather than `500
 * internal_error` (a bug).
 *
 * The database layer marks the errors it knows to be about reaching the server (see
 * `src/database/data-source-options.ts`: connection refused, reset or timed out, a query
 * that got no answer within `DB_QUERY_TIMEOUT`) with {@link markDatabaseUnavailable}; the
 * pool's own "no connection within DB_CONNECT_TIMEOUT" error and the SQLSTATEs that mean
 * the server cannot serve now are recognised here. TypeORM wraps query errors (`driverError`)
 * and pg-pool wraps timed-out connects (`cause`): both chains are followed.
 */

const MARK = Symbol.for('gatehouse.databaseUnavailable');

/**
 * SQLSTATEs (PostgreSQL manual, Appendix A) meaning the server cannot serve now: class 08
 * connection exceptions, 53300 too many connections, 57014 query_canceled (what
 * `statement_timeout` raises; Gatehouse cancels no queries itself), 57P01-57P03 shutting down
 * or not accepting connections yet.
 */
const UNAVAILABLE_SQLSTATE = /^(08...|53300|57014|57P0[1-3])$/;

/** pg-pool's message when no pooled connection became free within `connectionTimeoutMillis`. */
const POOL_ACQUIRE_TIMEOUT = 'timeout exceeded when trying to connect';

/** Marks `error` (an Error object) as meaning the database cannot be reached; returns it. */
export function markDatabaseUnavailable<T>(error: T): T {
  if (error !== null && typeof error === 'object' && !Object.isFrozen(error)) {
    Object.defineProperty(error, MARK, { value: true, enumerable: false, configurable: true });
  }
  return error;
}

/** Whether `error` (or what it wraps) says the database is unreachable, hung or refusing work. */
export function isDatabaseUnavailable(error: unknown): boolean {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0 && seen.size < 10) {
    const e = queue.shift();
    if (e === null || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const record = e as { [MARK]?: boolean; code?: unknown; message?: unknown; severity?: unknown; driverError?: unknown; cause?: unknown };
    if (record[MARK] === true) return true;
    if (record.message === POOL_ACQUIRE_TIMEOUT) return true;
    // A PostgreSQL error response carries a severity and a five-character SQLSTATE.
    if (typeof record.severity === 'string' && typeof record.code === 'string' && UNAVAILABLE_SQLSTATE.test(record.code)) return true;
    queue.push(record.driverError, record.cause);
  }
  return false;
}
