// Scheduled work. Each job runs inside a transaction that holds a PostgreSQL advisory lock, so
// across any number of instances one runner at a time does it; the others skip that tick.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';
import { sweepExpired } from '../oidc/adapter.ts';
import { deleteRetiredSigningKeys } from '../oidc/keys.ts';

export interface Job {
  /** Stable advisory-lock id. */
  lockId: number;
  run(trx: Knex.Transaction): Promise<Record<string, number>>;
}

export const JOBS: Record<string, Job> = {
  'sweep-expired': {
    lockId: 72_517_101,
    async run(trx) {
      // Bounded per run (the batches share this transaction's locks); the next tick continues.
      return { expiredArtifacts: await sweepExpired(trx, 1000, 20), retiredKeys: await deleteRetiredSigningKeys(trx) };
    },
  },
};

export type JobResult = { job: string; ran: boolean; result?: Record<string, number> };

export async function runJob(db: Db, name: string, log: Logger): Promise<JobResult> {
  const job = JOBS[name];
  if (!job) throw new Error(`unknown job ${name}; known: ${Object.keys(JOBS).join(', ')}`);
  return db.transaction(async (trx) => {
    const { rows } = await trx.raw('SELECT pg_try_advisory_xact_lock(?) AS locked', [job.lockId]);
    if (!rows[0].locked) return { job: name, ran: false };
    const started = Date.now();
    const result = await job.run(trx);
    log.info({ event: 'job.finished', job: name, ms: Date.now() - started, ...result }, `job ${name} finished`);
    return { job: name, ran: true, result };
  });
}

/** Runs every job on an interval inside the server; returns a stop function. */
export function scheduleJobs(db: Db, log: Logger, intervalSeconds: number): () => void {
  if (intervalSeconds <= 0) return () => {};
  const timer = setInterval(() => {
    for (const name of Object.keys(JOBS)) {
      runJob(db, name, log).catch((err) => log.error({ event: 'job.failed', job: name, err }, `job ${name} failed`));
    }
  }, intervalSeconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
