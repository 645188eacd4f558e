// Rate limits shared by every instance: rate-limiter-flexible's RateLimiterPostgres on the
// `rate_limits` table (migration 0002). It is given a small query adapter instead of the knex
// instance, because its `storeType: 'knex'` path hands PGlite a pg-style query object PGlite
// cannot take; through the adapter the same code runs on PostgreSQL and on embedded PGlite.
// Never call a limiter inside a knex transaction: on PGlite (one connection) it would wait forever.
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { Db } from '../db/knex.ts';
import { sha256Hex } from './crypto.ts';

interface RawConnection {
  query(text: string, values?: unknown[]): Promise<{ rows?: unknown[]; rowCount?: number | null; affectedRows?: number }>;
}

interface KnexClient {
  acquireConnection(): Promise<RawConnection>;
  releaseConnection(connection: RawConnection): Promise<unknown>;
}

/** A `pg.Pool`-shaped client over knex's connection pool (pg.Client and PGlite both take query(text, values)). */
function poolLike(db: Db) {
  const client = db.client as unknown as KnexClient;
  return {
    async query(q: { text: string; values?: unknown[] }) {
      const connection = await client.acquireConnection();
      try {
        const result = await connection.query(q.text, q.values ?? []);
        const rows = result.rows ?? [];
        // PGlite reports affectedRows (0 for a SELECT); the limiter reads rowCount.
        return { rows, rowCount: Math.max(rows.length, result.rowCount ?? result.affectedRows ?? 0) };
      } finally {
        await client.releaseConnection(connection);
      }
    },
  };
}

export class RateLimitedError extends Error {
  status = 429;
  expose = true;
  retryAfterSeconds: number;
  /** Which budget ran out, when the caller reserved several. */
  budget?: string;
  constructor(retryAfterSeconds: number, budget?: string) {
    super('Too many attempts. Please wait a while and try again.');
    this.retryAfterSeconds = retryAfterSeconds;
    this.budget = budget;
  }
}

export interface RateLimit {
  /** Spends one point for each key; throws RateLimitedError when any of them is exhausted. */
  consume(...keys: string[]): Promise<void>;
}

/** A counter in the shared `rate_limits` table: `points` per `durationSeconds` per key, under `name`. */
export function postgresLimiter(db: Db, name: string, points: number, durationSeconds: number): RateLimiterPostgres {
  return new RateLimiterPostgres({
    storeClient: poolLike(db),
    storeType: 'pool',
    tableName: 'rate_limits',
    tableCreated: true, // by migration 0002
    clearExpiredByTimeout: false, // the sweep-expired job deletes old rows
    keyPrefix: name,
    points,
    duration: durationSeconds,
  });
}

/** `points` attempts per `durationSeconds` for each key, under `name`. Keys are hashed (they may be addresses). */
export function createRateLimit(db: Db, name: string, points: number, durationSeconds: number): RateLimit {
  const limiter = postgresLimiter(db, name, points, durationSeconds);
  return {
    async consume(...keys) {
      let retryAfter = 0;
      for (const key of keys) {
        try {
          await limiter.consume(sha256Hex(key).slice(0, 32));
        } catch (err) {
          if (!(err instanceof RateLimiterRes)) throw err;
          retryAfter = Math.max(retryAfter, Math.ceil(err.msBeforeNext / 1000));
        }
      }
      if (retryAfter > 0) throw new RateLimitedError(retryAfter);
    },
  };
}

/** Deletes counters whose window ended more than an hour ago. Returns rows removed. */
export async function purgeExpiredRateLimits(db: Db, limit = 1000): Promise<number> {
  const rows = await db('rate_limits')
    .whereIn('key', db('rate_limits').select('key').where('expire', '<', Date.now() - 3600_000).limit(limit))
    .delete(['key']);
  return rows.length;
}
