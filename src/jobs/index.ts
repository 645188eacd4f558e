// Scheduled work. Each job runs inside a transaction that holds a PostgreSQL advisory lock, so
// across any number of instances one runner at a time does it; the others skip that tick.
import type { Knex } from 'knex';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import { deleteStaleUnverifiedUsers } from '../identity/unverified.ts';
import type { Mailer } from '../mail/index.ts';
import type { SecurityEvents } from '../events/index.ts';
import type { DeletionService } from '../flows/deletion/service.ts';
import type { Logger } from '../observability/logger.ts';
import { sweepExpired } from '../oidc/adapter.ts';
import { deleteRetiredSigningKeys } from '../oidc/keys.ts';
import { purgeExpiredLinkTokens } from '../security/link-tokens.ts';
import { purgeExpiredRateLimits } from '../security/rate-limit.ts';
import { purgeSignInState } from '../sessions/sweep.ts';
import { purgeSamlState } from '../federation/saml/requests.ts';
import { refreshDueMetadata, warnExpiringCertificates } from '../federation/saml/maintenance.ts';
import { createOutbound } from '../security/outbound.ts';
import type { Audit } from '../security/audit.ts';
import { SEALER_LOCK_ID, sealPending } from '../security/audit-chain.ts';

/** What jobs may use besides the database. */
export interface JobServices {
  config: Pick<Config, 'unverifiedTtlSeconds' | 'outboundAllowOrigins'>;
  mail: Mailer;
  events: SecurityEvents;
  deletion: DeletionService;
  audit: Audit;
}

export interface Job {
  /** Stable advisory-lock id. */
  lockId: number;
  /**
   * Coordinates across instances by itself and must not hold a transaction open while it works
   * (e.g. network sends): runs outside the advisory lock, given the plain database handle.
   */
  unlocked?: boolean;
  run(trx: Knex.Transaction | Db, services: JobServices, log: Logger): Promise<Record<string, number>>;
}

export const JOBS: Record<string, Job> = {
  'sweep-expired': {
    lockId: 72_517_101,
    async run(trx) {
      // Bounded per run (the batches share this transaction's locks); the next tick continues.
      return {
        expiredArtifacts: await sweepExpired(trx, 1000, 20),
        retiredKeys: await deleteRetiredSigningKeys(trx),
        expiredLinks: await purgeExpiredLinkTokens(trx),
        expiredRateLimits: await purgeExpiredRateLimits(trx),
        ...(await purgeSignInState(trx)),
        ...(await purgeSamlState(trx)),
      };
    },
  },
  'cleanup-unverified': {
    lockId: 72_517_102,
    async run(trx, { config }, log) {
      const ids = await deleteStaleUnverifiedUsers(trx as Knex.Transaction, config.unverifiedTtlSeconds);
      if (ids.length) log.info({ event: 'users.unverified_removed', count: ids.length }, 'removed stale unverified accounts');
      return { removedUsers: ids.length };
    },
  },
  // Delivery claims rows with leases (SKIP LOCKED), so instances share the work without the lock.
  'mail-outbox': {
    lockId: 72_517_103,
    unlocked: true,
    async run(db, { mail }) {
      const delivered = await mail.deliverDue();
      return { ...delivered, purged: await mail.purge(db) };
    },
  },
  // Security Event Tokens to relying parties: the same leases as the mail outbox.
  'security-events': {
    lockId: 72_517_104,
    unlocked: true,
    async run(db, { events }) {
      const delivered = await events.deliverDue();
      return { ...delivered, purged: await events.purge(db) };
    },
  },
  'deletion-reminders': {
    lockId: 72_517_105,
    async run(trx, { deletion }) {
      return { reminded: await deletion.remindDue(trx) };
    },
  },
  // One transaction per user (a locked job would put them all in one): each user's row is
  // locked with SKIP LOCKED, so instances running it together purge each user once.
  'deletion-purge': {
    lockId: 72_517_106,
    unlocked: true,
    async run(_db, { deletion }) {
      return { purged: (await deletion.purgeDue(new Date())).length };
    },
  },
  // Fetches over the network, so no transaction is held: each connection is claimed by an UPDATE.
  'saml-metadata': {
    lockId: 72_517_107,
    unlocked: true,
    async run(db, { config }, log) {
      return refreshDueMetadata(db as Db, createOutbound(config.outboundAllowOrigins), log);
    },
  },
  // The audit hash chain (the server also runs it every second): takes its own advisory lock.
  'audit-seal': {
    lockId: SEALER_LOCK_ID,
    unlocked: true,
    async run(db, { audit }) {
      const { sealed } = await sealPending(db as Db, audit.anonymousSalt);
      return { sealed };
    },
  },
  'saml-certificates': {
    lockId: 72_517_108,
    async run(trx, _services, log) {
      return warnExpiringCertificates(trx, log);
    },
  },
};

export type JobResult = { job: string; ran: boolean; result?: Record<string, number> };

export async function runJob(db: Db, name: string, log: Logger, services: JobServices): Promise<JobResult> {
  const job = JOBS[name];
  if (!job) throw new Error(`unknown job ${name}; known: ${Object.keys(JOBS).join(', ')}`);
  if (job.unlocked) {
    const started = Date.now();
    const result = await job.run(db, services, log);
    log.info({ event: 'job.finished', job: name, ms: Date.now() - started, ...result }, `job ${name} finished`);
    return { job: name, ran: true, result };
  }
  return db.transaction(async (trx) => {
    const { rows } = await trx.raw('SELECT pg_try_advisory_xact_lock(?) AS locked', [job.lockId]);
    if (!rows[0].locked) return { job: name, ran: false };
    const started = Date.now();
    const result = await job.run(trx, services, log);
    log.info({ event: 'job.finished', job: name, ms: Date.now() - started, ...result }, `job ${name} finished`);
    return { job: name, ran: true, result };
  });
}

/** Runs every job on an interval inside the server; returns a stop function. */
export function scheduleJobs(db: Db, log: Logger, intervalSeconds: number, services: JobServices): () => void {
  if (intervalSeconds <= 0) return () => {};
  const timer = setInterval(() => {
    for (const name of Object.keys(JOBS)) {
      runJob(db, name, log, services).catch((err) => log.error({ event: 'job.failed', job: name, err }, `job ${name} failed`));
    }
  }, intervalSeconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
