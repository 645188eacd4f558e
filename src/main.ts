// CLI entry: `latchkey serve [--workers N] | migrate | clients … | users … | keys … | jobs run NAME`.
// The app and the commands are imported dynamically: a server opens its database first, so the
// embedded database starts up while the rest of the code loads.
import './compile-cache.ts'; // first: every module after it loads from the compile cache
import cluster from 'node:cluster';
import { forwardToServer, findRunningServer, createBridge } from './cli/embedded-bridge.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createDb, isEmbedded } from './db/knex.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import type { Latchkey } from './app.ts';

type Output = { out(s: string): void; err(s: string): void };

async function serve(config: Config, log: Logger) {
  const started = performance.now();
  log.info(
    { event: 'server.starting', node: process.version, database: isEmbedded(config) ? 'embedded-pglite' : 'postgresql', pid: process.pid },
    `Latchkey starting on Node ${process.version}`,
  );
  const embedded = isEmbedded(config);
  if (embedded && findRunningServer(config)) {
    throw new ConfigError(`another Latchkey server is already using the embedded database in ${config.dataDir}`);
  }
  // Commands forwarded to this server run here; loaded on first use, not at start-up.
  const bridge = embedded
    ? {
        ...createBridge(config),
        run: async (argv: string[], latchkey: Latchkey, out: Output) => (await import('./cli/commands.ts')).runCommand(argv, latchkey, config, log, out),
      }
    : undefined;
  const db = createDb(config);
  const { createLatchkey } = await import('./app.ts');
  const latchkey = await createLatchkey(config, log, { background: true, bridge, db });
  const server = latchkey.app.listen(config.port, config.host, () => {
    bridge?.publish(config.port);
    log.info(
      { event: 'server.listening', port: config.port, issuer: config.issuer, pid: process.pid, startupMs: Math.round(performance.now() - started) },
      `Latchkey listening on ${config.issuer} (port ${config.port})`,
    );
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'server.stopping', signal, pid: process.pid }, 'shutting down');
    bridge?.unpublish();
    server.close();
    server.closeIdleConnections();
    await latchkey.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/** `serve [--workers N]`: the worker count asked for on the command line, if any. */
function serveOptions(args: string[]): { workers?: number } {
  let workers: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const value = arg === '--workers' ? args[++i] : arg.startsWith('--workers=') ? arg.slice('--workers='.length) : undefined;
    if (value === undefined) throw new ConfigError(arg === '--workers' ? '--workers needs a number' : `serve: unknown option ${arg} (usage: latchkey serve [--workers N])`);
    if (!/^[1-9][0-9]{0,2}$/.test(value) || Number(value) > 256) throw new ConfigError(`--workers must be a whole number from 1 to 256, not ${JSON.stringify(value)}`);
    workers = Number(value);
  }
  return { workers };
}

/**
 * `serve`: one server in this process, or with more than one worker (PostgreSQL only) a primary
 * that forks them (cluster.ts); a forked worker runs the one-process server.
 */
async function serveCommand(args: string[]): Promise<number | undefined> {
  const config = loadConfig(undefined, serveOptions(args));
  const log = createLogger(config.logLevel);
  if (cluster.isWorker) {
    await serve(config, log.child({ worker: cluster.worker!.id }));
    return undefined;
  }
  if (config.workers === 1) {
    await serve(config, log);
    return undefined;
  }
  if (isEmbedded(config)) {
    throw new ConfigError(
      `cannot run ${config.workers} workers on the embedded database: PGlite can be opened by one process only. ` +
        'Use --workers 1 (WORKERS=1), or set DATABASE_URL to a PostgreSQL database.',
    );
  }
  log.info(
    { event: 'server.starting', node: process.version, database: 'postgresql', pid: process.pid, workers: config.workers },
    `Latchkey starting ${config.workers} workers on Node ${process.version}`,
  );
  const { prepareDatabaseOnce, runPrimary } = await import('./cluster.ts');
  await prepareDatabaseOnce(config, log);
  return runPrimary(config, log);
}

/**
 * `--password-stdin`: the password comes from standard input instead of the command line, where
 * `ps` and shell history would show it. It is put back into argv only inside this process (or
 * the request body to a running server), never into a process's arguments.
 */
async function passwordFromStdin(argv: string[]): Promise<string[]> {
  // `webhooks add --secret-from-stdin` likewise, for an operator-chosen signing secret.
  const at = argv.findIndex((a) => a === '--password-stdin' || a === '--secret-from-stdin');
  if (at < 0) return argv;
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const value = input.replace(/\r?\n$/, '');
  return [...argv.slice(0, at), argv[at] === '--password-stdin' ? '--password' : '--secret', value, ...argv.slice(at + 1)];
}

async function main(rawArgv: string[]): Promise<number | undefined> {
  const argv = await passwordFromStdin(rawArgv);
  const [command] = argv;
  if (!command || ['--help', '-h', 'help'].includes(command)) {
    process.stdout.write((await import('./cli/commands.ts')).USAGE + '\n');
    return 0;
  }
  if (command === 'serve') {
    const code = await serveCommand(argv.slice(1));
    // The primary of `--workers N`: every worker has exited.
    if (code !== undefined) process.exit(code);
    return undefined;
  }
  const config = loadConfig();
  // One-shot commands keep stdout for their output; only warnings are logged (to stdout's sibling, stderr).
  const log = createLogger('warn', 'stderr');
  const running = isEmbedded(config) ? findRunningServer(config) : undefined;
  if (running) return forwardToServer(running, argv);
  const [{ createLatchkey }, { runCommand }] = await Promise.all([import('./app.ts'), import('./cli/commands.ts')]);
  const latchkey = await createLatchkey(config, log, { background: false });
  try {
    return await runCommand(argv, latchkey, config, log, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
  } finally {
    await latchkey.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`latchkey: ${err instanceof ConfigError ? err.message : ((err as Error).stack ?? String(err))}\n`);
    process.exit(1);
  },
);
