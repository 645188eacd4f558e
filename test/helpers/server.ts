// Starts the real server as a child process (exactly as `npm start` does) on a free port,
// against a fresh database, and runs the real CLI against the same database.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import crypto from 'node:crypto';
import pg from 'pg';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = path.join(ROOT, 'src/main.ts');
const run = promisify(execFile);

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
  /**
   * Stops the process (keeping the database) and starts it again with the same port and env,
   * plus `changes`; `whileStopped` runs in between (e.g. to read the embedded database).
   */
  restart(changes?: Record<string, string>, whileStopped?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

async function waitReady(url: string, child: ChildProcess, logs: string[]) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${logs.join('')}`);
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not become ready:\n${logs.join('')}`);
}

function spawnServer(env: Record<string, string>, logs: string[]): ChildProcess {
  const child = spawn(process.execPath, [MAIN, 'serve'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => logs.push(String(d)));
  child.stderr!.on('data', (d) => logs.push(String(d)));
  return child;
}

async function stopChild(child: ChildProcess) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

async function launch(env: Record<string, string>, cleanup: () => Promise<void>, options: { issuer?: string } = {}): Promise<TestServer> {
  const port = await freePort();
  const url = `http://localhost:${port}`;
  const issuer = options.issuer ?? url;
  const fullEnv = { ...env, PORT: String(port), ISSUER: issuer };
  const logs: string[] = [];
  let child = spawnServer(fullEnv, logs);
  await waitReady(url, child, logs);

  const cliRaw = async (args: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], { env: { ...process.env, ...fullEnv } });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
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
    async restart(changes = {}, whileStopped) {
      await stopChild(child);
      await whileStopped?.();
      Object.assign(fullEnv, changes);
      child = spawnServer(fullEnv, logs);
      await waitReady(url, child, logs);
    },
    async stop() {
      await stopChild(child);
      await cleanup();
    },
  };
}

/** A server on a fresh database: PostgreSQL when DATABASE_URL is set, else embedded PGlite. */
export async function startServer(extraEnv: Record<string, string> = {}): Promise<TestServer> {
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
    ...(location.databaseUrl ? { DATABASE_URL: location.databaseUrl } : {}),
    ...extraEnv,
  };
  // An empty value means unset: the child must not inherit the CI's DATABASE_URL in PGlite mode.
  return launch({ ...env, DATABASE_URL: location.databaseUrl ?? '' }, location.cleanup);
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
