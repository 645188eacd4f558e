// `latchkey serve --workers N`: a primary process that forks N workers (node:cluster), each running
// the whole server on the same port (the primary holds the listening socket and hands connections
// out round-robin). The primary runs no server: it migrates the database and creates the first
// signing keys once, before forking, then keeps N workers alive and stops them on SIGTERM/SIGINT.
//
// Everything a worker runs is already safe with several processes on one database, as with
// several instances: all state is in PostgreSQL; scheduled jobs take an advisory lock or lease
// their rows (FOR UPDATE SKIP LOCKED); the audit sealer takes an advisory lock per pass; signing
// keys are re-read every KEY_CHECK_INTERVAL; each worker LISTENs for client changes. So every
// worker runs the same background work, and no job is pinned to one of them.
import cluster, { type Worker } from 'node:cluster';
import type { Readable, Writable } from 'node:stream';
import type { Config } from './config.ts';
import { createDb } from './db/knex.ts';
import { prepareDatabase } from './db/prepare.ts';
import type { Logger } from './observability/logger.ts';
import { loadSecrets } from './security/secrets.ts';

export interface ClusterPolicy {
  /** Workers in a row that exit before they listen, after which the primary gives up (exit 1). */
  maxStartFailures: number;
  /** Delay before replacing a worker that died; doubled for each quick death of that slot… */
  restartBaseMs: number;
  /** …up to this. */
  restartMaxMs: number;
  /** A worker that served this long resets its slot's delay. */
  stableAfterMs: number;
  /** Workers still running this long after the stop signal are killed (SIGKILL). */
  shutdownTimeoutMs: number;
}

export const DEFAULT_POLICY: ClusterPolicy = {
  maxStartFailures: 5,
  restartBaseMs: 500,
  restartMaxMs: 30_000,
  stableAfterMs: 60_000,
  shutdownTimeoutMs: 30_000,
};

/** Migrations and first signing keys, once, before any worker starts (then theirs find nothing to do). */
export async function prepareDatabaseOnce(config: Config, log: Logger): Promise<void> {
  const db = createDb(config);
  try {
    // Also creates the development secret in DATA_DIR (without LATCHKEY_SECRET) before the workers read it.
    await prepareDatabase(db, loadSecrets(config, log).atRestKey, log);
  } finally {
    await db.destroy();
  }
}

/**
 * Copies a worker's output to ours in whole lines. Workers write their JSON log lines in batches
 * (logger.ts); batches of several processes written straight to one shared pipe could interleave
 * inside a line once a batch is larger than the pipe's atomic write size (4 KiB). Relayed, this
 * process is the only writer.
 */
function relayLines(from: Readable | null | undefined, to: Writable) {
  if (!from) return;
  let partial = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const end = chunk.lastIndexOf('\n');
    if (end < 0) {
      partial += chunk;
      return;
    }
    to.write(partial + chunk.slice(0, end + 1));
    partial = chunk.slice(end + 1);
  });
  from.on('end', () => {
    if (partial) to.write(partial + '\n');
    partial = '';
  });
}

interface Slot {
  index: number;
  worker?: Worker;
  startedAt: number;
  listeningAt?: number;
  delayMs: number;
  restart?: NodeJS.Timeout;
}

/**
 * Runs the primary until every worker has exited after a stop signal (resolves 0) or the workers
 * crash-loop at start (resolves 1). A worker that dies otherwise is replaced after a backoff.
 */
export function runPrimary(config: Config, log: Logger, policy: ClusterPolicy = DEFAULT_POLICY): Promise<number> {
  const count = config.workers;
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ index, startedAt: 0, delayMs: policy.restartBaseMs }));
  let startFailures = 0;
  let stopping: { code: number } | undefined;
  let forceTimer: NodeJS.Timeout | undefined;
  let done: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => (done = resolve));

  const alive = () => slots.filter((s) => s.worker);

  function fork(slot: Slot) {
    slot.restart = undefined;
    // Each worker sizes its own pools for `count` processes (config.ts) and runs `serve` itself.
    const worker = cluster.fork({ WORKERS: String(count) });
    relayLines(worker.process.stdout, process.stdout);
    relayLines(worker.process.stderr, process.stderr);
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.listeningAt = undefined;
    const pid = worker.process.pid;
    log.info({ event: 'cluster.worker_started', worker: worker.id, pid, slot: slot.index }, `worker ${worker.id} started (pid ${pid})`);
    worker.on('listening', () => {
      slot.listeningAt = Date.now();
      startFailures = 0;
    });
    // A failed fork or IPC error; 'exit' follows when the process is gone.
    worker.on('error', (err) => log.error({ event: 'cluster.worker_error', worker: worker.id, err: err.message }, `worker ${worker.id}: ${err.message}`));
    worker.on('exit', (code, signal) => exited(slot, worker, code, signal));
  }

  function exited(slot: Slot, worker: Worker, code: number | null, signal: string | null) {
    if (slot.worker === worker) slot.worker = undefined;
    const now = Date.now();
    const entry = { event: 'cluster.worker_exited', worker: worker.id, pid: worker.process.pid, slot: slot.index, code, signal, uptimeMs: now - slot.startedAt };
    if (stopping) {
      log.info({ ...entry, expected: true }, `worker ${worker.id} exited`);
      if (!alive().length) finish();
      return;
    }
    log.error({ ...entry, expected: false }, `worker ${worker.id} exited unexpectedly`);
    if (slot.listeningAt === undefined) {
      startFailures++;
      if (startFailures >= policy.maxStartFailures) {
        log.fatal({ event: 'cluster.crash_loop', startFailures }, `${startFailures} workers in a row exited before serving: giving up`);
        stop('crash_loop', 1);
        return;
      }
    } else if (now - slot.listeningAt >= policy.stableAfterMs) {
      slot.delayMs = policy.restartBaseMs;
    }
    const delayMs = slot.delayMs;
    slot.delayMs = Math.min(policy.restartMaxMs, slot.delayMs * 2);
    log.info({ event: 'cluster.worker_restarting', slot: slot.index, delayMs }, `replacing worker ${worker.id} in ${delayMs} ms`);
    slot.restart = setTimeout(() => fork(slot), delayMs);
  }

  function stop(reason: string, code: number) {
    if (stopping) {
      // A second signal: do not wait for a graceful stop.
      for (const s of alive()) s.worker!.process.kill('SIGKILL');
      return;
    }
    stopping = { code };
    log.info({ event: 'cluster.stopping', reason, workers: alive().length }, 'stopping workers');
    for (const s of slots) if (s.restart) clearTimeout(s.restart);
    // SIGINT as SIGINT, everything else as SIGTERM: each worker closes its server and database.
    for (const s of alive()) s.worker!.process.kill(reason === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
    forceTimer = setTimeout(() => {
      const left = alive();
      log.warn({ event: 'cluster.kill', workers: left.map((s) => s.worker!.id) }, 'workers did not stop in time: killing them');
      for (const s of left) s.worker!.process.kill('SIGKILL');
    }, policy.shutdownTimeoutMs);
    if (!alive().length) finish();
  }

  function finish() {
    if (forceTimer) clearTimeout(forceTimer);
    process.removeListener('SIGTERM', onSigterm);
    process.removeListener('SIGINT', onSigint);
    log.info({ event: 'cluster.stopped', code: stopping!.code }, 'all workers stopped');
    done(stopping!.code);
  }

  const onSigterm = () => stop('SIGTERM', 0);
  const onSigint = () => stop('SIGINT', 0);
  process.on('SIGTERM', onSigterm);
  process.on('SIGINT', onSigint);
  // Workers' stdout and stderr come to us (relayLines), not straight to the shared descriptors.
  cluster.setupPrimary({ silent: true });
  for (const slot of slots) fork(slot);
  return finished;
}
