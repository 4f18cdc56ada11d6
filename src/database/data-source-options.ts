import { join } from 'node:path';
import pg from 'pg';
import type { DataSourceOptions } from 'typeorm';
import { markDatabaseUnavailable } from '../common/errors/database-unavailable.js';
import type { AppConfig } from '../config/config.schema.js';

/** `dist/src` (or `src` when run from source): where entities are found by glob. */
const SRC_ROOT = join(import.meta.dirname, '..');

/** Node's error codes for a peer that cannot be reached or went away. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** pg's own messages for a connection that failed, ended or got no answer in time. */
const CONNECTION_LOST = /^Connection terminated|is not queryable|^Query read timeout$/;
const QUERY_TIMEOUT = 'Query read timeout';

/** Whether a pg error is about reaching the server (not an error the server answered with, nor a bug). */
function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error) || error instanceof pg.DatabaseError) return false;
  return NETWORK_CODES.has(String((error as { code?: unknown }).code)) || CONNECTION_LOST.test(error.message);
}

type Callback = (error: Error | null | undefined, ...rest: unknown[]) => void;

/**
 * pg's `Client` as the pool creates it, hardened for a server that fails without closing:
 *
 * - every error about reaching the server (connect refused/reset/timed out, connection
 *   terminated, no answer within `query_timeout`) is marked with `markDatabaseUnavailable`,
 *   so a request failing on it is answered 503 `service_unavailable`, not 500;
 * - a query that got no answer within `query_timeout` (DB_QUERY_TIMEOUT) closes its
 *   connection: the server still owes that answer, and pg would otherwise queue every later
 *   query on this client behind it. The pool then drops the client and opens a fresh one.
 *
 * Errors PostgreSQL itself answered with (`DatabaseError`) pass through unmarked; those that
 * mean "cannot serve now" are recognised by SQLSTATE in `isDatabaseUnavailable`.
 */
export class GuardedClient extends pg.Client {
  override connect(...args: unknown[]): never {
    const connect = super.connect.bind(this) as (...a: unknown[]) => unknown;
    const [callback] = args;
    if (typeof callback === 'function') {
      return connect((error: Error | null | undefined, ...rest: unknown[]) => (callback as Callback)(error ? markDatabaseUnavailable(error) : error, ...rest)) as never;
    }
    return (connect() as Promise<unknown>).catch((error: unknown) => {
      throw markDatabaseUnavailable(error);
    }) as never;
  }

  // pg's `query` has many overloads (config object, text + values, callback or promise,
  // submittables); wrap them all without restating them.
  override query(...args: unknown[]): never {
    const last = args.at(-1);
    const query = super.query.bind(this) as (...a: unknown[]) => unknown;
    if (typeof last === 'function') {
      args[args.length - 1] = (error: Error | null | undefined, ...rest: unknown[]) => (last as Callback)(this.failed(error), ...rest);
      return query(...args) as never;
    }
    const result = query(...args);
    if (result instanceof Promise) {
      return result.catch((error: unknown) => {
        throw this.failed(error);
      }) as never;
    }
    return result as never;
  }

  private failed<E>(error: E): E {
    if (!isConnectionError(error)) return error;
    markDatabaseUnavailable(error);
    if ((error as Error).message === QUERY_TIMEOUT) (this as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    return error;
  }
}

/**
 * The one builder of TypeORM options, used by the app, the CLI (`migrate`, `migrate:revert`,
 * `migrate:generate`) and the TypeORM CLI's `data-source.ts`, so all three see the same
 * entities, migrations and pool settings.
 *
 * Timeouts (ms, from the `database` config): `connectTimeoutMs` bounds opening a connection
 * and waiting for a free pooled one; `statementTimeoutMs` is PostgreSQL's
 * `statement_timeout`; `queryTimeoutMs` is pg's client-side `query_timeout`, the one bound
 * that holds when the server stops answering altogether (see {@link GuardedClient}).
 */
export function buildDataSourceOptions(db: AppConfig['database'], url: string): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    // Schema changes only ever come from migrations/.
    synchronize: false,
    migrationsRun: false,
    entities: [join(SRC_ROOT, '**', '*.entity.js')],
    migrations: [join(SRC_ROOT, '..', 'migrations', '*.js')],
    migrationsTableName: 'migrations',
    // Each migration commits on its own, so a failure leaves every earlier one applied and
    // the failed one rolled back: a re-run continues where it stopped.
    migrationsTransactionMode: 'each',
    logging: false,
    extra: {
      Client: GuardedClient,
      max: db.poolMax,
      application_name: 'gatehouse',
      statement_timeout: db.statementTimeoutMs || undefined,
      query_timeout: db.queryTimeoutMs || undefined,
      connectionTimeoutMillis: db.connectTimeoutMs,
      // TCP keep-alive: a peer that vanished (no FIN, no RST) is noticed on idle connections too.
      keepAlive: true,
      idleTimeoutMillis: 30_000,
    },
  };
}
