// Starts the real server as a child process (exactly as `npm start` does) on a free port,
// against a fresh database, and runs the real CLI against the same database.
//
// Every process a test starts here (servers, CLI runs; saml-idp.ts's php too) is tracked and
// stopped on every exit path, so a failed start or a failed test never leaves one running (a
// live child keeps the test file's process, and so `npm test`, from ever exiting): a server that
// does not become ready is stopped before the error is thrown; stopChild escalates to SIGKILL;
// CLI runs have a time limit; the process's 'exit' hook and SIGINT/SIGTERM stop what is left.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import crypto from 'node:crypto';
import { after } from 'node:test';
import pg from 'pg';
import { createDb, type Db } from '../../src/db/knex.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = path.join(ROOT, 'src/main.ts');
/** How long a server may take to answer /readyz, and a CLI command to finish. */
const READY_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 120_000;
/** How long a child has to exit after SIGTERM before it gets SIGKILL. */
const STOP_GRACE_MS = 10_000;
const EXIT_HOOK_GRACE_MS = 3_000;

/** The node flags of package.json's start script: servers run as `npm start` runs them. */
export const START_FLAGS: string[] = (
  (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start.match(/^node\s+(.*?)\s*src\/main\.ts/)?.[1] ?? ''
)
  .split(/\s+/)
  .filter(Boolean);

const live = new Set<ChildProcess>();
let hooked = false;

const running = (child: ChildProcess) => child.pid !== undefined && child.exitCode === null && child.signalCode === null;

/** Whether `pid` is still a running process (not gone, not a zombie nobody reaped yet). */
export function pidRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function signal(child: ChildProcess, sig: NodeJS.Signals) {
  try {
    child.kill(sig);
  } catch {
    /* already gone */
  }
}

/**
 * Synchronous, for the 'exit' hook (no event loop any more): SIGTERM to every live child, a few
 * seconds for them to exit, then SIGKILL. (A cluster primary's workers exit with it.)
 */
function stopAllNow(): void {
  const pending = [...live].filter(running);
  if (!pending.length) return;
  for (const child of pending) signal(child, 'SIGTERM');
  const deadline = Date.now() + EXIT_HOOK_GRACE_MS;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline && pending.some((c) => pidRunning(c.pid!))) Atomics.wait(nap, 0, 0, 25);
  for (const child of pending) if (pidRunning(child.pid!)) signal(child, 'SIGKILL');
}

function onSignal(sig: NodeJS.Signals) {
  stopAllNow();
  // Alone (no test runner or playwright handler that exits): die of the signal as we would have.
  if (process.listenerCount(sig) === 1) {
    process.removeListener(sig, onSignal);
    process.kill(process.pid, sig);
  }
}

/** Tracks a child process until it exits: it is stopped when this process exits or is interrupted. */
export function track<T extends ChildProcess>(child: T): T {
  if (!hooked) {
    hooked = true;
    process.on('exit', stopAllNow);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => {
    if (!running(child)) live.delete(child);
  });
  return child;
}

// Under the test runner: once every test and hook of the file is done, a child nobody stopped
// (e.g. a second server started in the same Promise.all as one that failed) no longer keeps the
// file's process alive; the 'exit' hook then stops it. (Unref only: the file's own root-level
// `after` hooks, which run after this one, may still use their servers.)
if (process.env.NODE_TEST_CONTEXT) {
  after(() => {
    for (const child of live) {
      child.unref();
      for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as net.Socket | null)?.unref?.();
    }
  });
}

/** SIGTERM, then SIGKILL if the child has not exited within `graceMs`; never waits forever. */
export async function stopChild(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (!running(child)) return;
  const exited = new Promise<true>((resolve) => child.once('exit', () => resolve(true)));
  const timer = new AbortController();
  signal(child, 'SIGTERM');
  const gone = await Promise.race([exited, sleep(graceMs, false, { signal: timer.signal }).catch(() => false)]);
  timer.abort();
  if (gone || !running(child)) return;
  signal(child, 'SIGKILL');
  const killed = new AbortController();
  await Promise.race([exited, sleep(5_000, false, { signal: killed.signal }).catch(() => false)]);
  killed.abort();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export interface TestServer {
  issuer: string;
  /** Where this process listens; equals `issuer` unless it was started with `shareIssuer`. */
  url: string;
  env: Record<string, string>;
  logs: string[];
  cli(args: string[]): Promise<unknown>;
  cliRaw(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /**
   * Starts another server process on the same database (for multi-instance tests). With
   * `shareIssuer` it listens on its own port but uses this server's ISSUER, as two replicas
   * behind one load balancer would: reach it through its `url`.
   */
  startAnother(options?: { shareIssuer?: boolean }): Promise<TestServer>;
  /** The server's process (the cluster primary with `--workers`); changes on restart(). */
  child(): ChildProcess;
  /**
   * Stops the process (keeping the database) and starts it again with the same port and env,
   * plus `changes`; `whileStopped` runs in between (e.g. to read the embedded database).
   */
  restart(changes?: Record<string, string>, whileStopped?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

async function waitReady(url: string, child: ChildProcess, logs: string[]) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!running(child)) throw new Error(`server exited with ${child.exitCode ?? child.signalCode}:\n${logs.join('')}`);
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not become ready within ${READY_TIMEOUT_MS / 1000} s:\n${logs.join('')}`);
}

/** Starts `serve` and waits for /readyz; a server that does not get there is stopped, then the error thrown. */
async function startChild(url: string, env: Record<string, string>, logs: string[], args: string[]): Promise<ChildProcess> {
  const child = track(spawn(process.execPath, [...START_FLAGS, MAIN, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stdout!.on('data', (d) => logs.push(String(d)));
  child.stderr!.on('data', (d) => logs.push(String(d)));
  try {
    await waitReady(url, child, logs);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return child;
}

/** Runs the CLI to completion (killed after CLI_TIMEOUT_MS: a hung command fails, it does not hang the suite). */
function runCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, timeout: CLI_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const killed = (err as { killed?: boolean }).killed ? `\n(latchkey ${args.join(' ')} was killed after ${CLI_TIMEOUT_MS / 1000} s)` : '';
      resolve({ code: typeof err.code === 'number' ? err.code : 1, stdout, stderr: stderr + killed });
    });
    track(child);
  });
}

export interface LaunchOptions {
  /** Share another server's ISSUER (multi-instance tests). */
  issuer?: string;
  /** More arguments after `serve`, e.g. `['--workers', '2']`. */
  args?: string[];
}

async function launch(env: Record<string, string>, cleanup: () => Promise<void>, options: LaunchOptions = {}): Promise<TestServer> {
  const port = await freePort();
  const url = `http://localhost:${port}`;
  const issuer = options.issuer ?? url;
  const fullEnv = { ...env, PORT: String(port), ISSUER: issuer };
  const args = options.args ?? [];
  const logs: string[] = [];
  let child: ChildProcess;
  try {
    child = await startChild(url, fullEnv, logs, args);
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }

  const cliRaw = (cliArgs: string[]) => runCli(cliArgs, fullEnv);
  return {
    issuer,
    url,
    env: fullEnv,
    logs,
    cliRaw,
    async cli(args) {
      const r = await cliRaw([...args, '--json']);
      if (r.code !== 0) throw new Error(`latchkey ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout);
    },
    startAnother: (opts = {}) => launch(env, async () => {}, opts.shareIssuer ? { issuer } : {}),
    child: () => child,
    async restart(changes = {}, whileStopped) {
      await stopChild(child);
      await whileStopped?.();
      Object.assign(fullEnv, changes);
      child = await startChild(url, fullEnv, logs, args);
    },
    async stop() {
      await stopChild(child);
      await cleanup();
    },
  };
}

/**
 * A server on a fresh database: PostgreSQL when DATABASE_URL is set, else embedded PGlite. One
 * process (WORKERS=1) unless `extraEnv` or `options.args` (e.g. `['--workers', '2']`) ask for more.
 */
export async function startServer(extraEnv: Record<string, string> = {}, options: Pick<LaunchOptions, 'args'> = {}): Promise<TestServer> {
  const location = await testDatabaseLocation();
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    DATA_DIR: location.dataDir,
    LATCHKEY_SECRET: 'test-secret-0123456789abcdefghijklmnopqrstuvwxyz',
    // Fast hashing in tests: parameters are exercised, not their cost.
    ARGON2_MEMORY_KIB: '8192',
    ARGON2_TIME_COST: '1',
    // Suites that send many sign-ins at once test budgets, not the argon2 pool's shedding
    // (test/e2e/performance.test.ts sets its own small pool).
    ARGON2_MAX_QUEUE: '1000',
    // One server process, as before `serve` forked a worker per core on PostgreSQL by default.
    WORKERS: '1',
    ...(location.databaseUrl ? { DATABASE_URL: location.databaseUrl } : {}),
    ...extraEnv,
  };
  // An empty value means unset: the child must not inherit the CI's DATABASE_URL in PGlite mode.
  return launch({ ...env, DATABASE_URL: location.databaseUrl ?? '' }, location.cleanup, options);
}

/** A fresh, empty database: a new database on the DATABASE_URL server, or a new PGlite dir. */
export async function testDatabaseLocation(): Promise<{ databaseUrl?: string; dataDir: string; cleanup(): Promise<void> }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-e2e-'));
  const removeDir = async () => fs.rmSync(dataDir, { recursive: true, force: true });
  const base = process.env.DATABASE_URL;
  if (!base) return { dataDir, cleanup: removeDir };
  const name = `latchkey_e2e_${crypto.randomBytes(6).toString('hex')}`;
  const admin = new URL(base);
  admin.pathname = '/postgres';
  const adminClient = async (sql: string) => {
    const c = new pg.Client({ connectionString: admin.toString() });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await adminClient(`CREATE DATABASE ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    databaseUrl: url.toString(),
    dataDir,
    async cleanup() {
      await adminClient(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await removeDir();
    },
  };
}

/**
 * The links of the newest mail to `to` that the development transport printed to the server's
 * log (event `mail.dev`), waiting for the outbox to deliver it.
 */
export async function devMailLinks(server: TestServer, to: string, timeoutMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = server.logs
      .join('')
      .split('\n')
      .flatMap((line) => {
        try {
          const entry = JSON.parse(line) as { event?: string; to?: string; links?: string[] };
          return entry.event === 'mail.dev' && entry.to?.toLowerCase() === to.toLowerCase() ? [entry.links ?? []] : [];
        } catch {
          return [];
        }
      });
    if (found.length) return found.at(-1)!;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail to ${to} in the server log`);
}

/**
 * Runs `fn` against the server's database: PostgreSQL directly while the server runs (so nothing
 * in its memory is reset); embedded PGlite (one process at a time) while it is stopped.
 */
export async function withServerDb<T>(server: TestServer, fn: (db: Db) => Promise<T>): Promise<T> {
  const open = () => createDb({ databaseUrl: server.env.DATABASE_URL || undefined, dataDir: server.env.DATA_DIR!, databasePoolMax: 1 });
  if (server.env.DATABASE_URL) {
    const db = open();
    try {
      return await fn(db);
    } finally {
      await db.destroy();
    }
  }
  let result: T | undefined;
  await server.restart({}, async () => {
    const db = open();
    try {
      result = await fn(db);
    } finally {
      await db.destroy();
    }
  });
  return result as T;
}
