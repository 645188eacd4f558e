// CLI entry: `latchkey serve | migrate | clients … | users … | keys … | jobs run NAME`.
import { parseArgs } from 'node:util';
import { ZodError } from 'zod';
import { createLatchkey } from './app.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createDb } from './db/knex.ts';
import { migrateLatest } from './db/migrate.ts';
import { createUser, EmailTakenError, listUsers } from './identity/users.ts';
import { JOBS, runJob } from './jobs/index.ts';
import { createPasswordMethod, passwordSchema } from './methods/password/index.ts';
import { ClientExistsError, createClientStore } from './oidc/clients.ts';
import { listSigningKeys, rotateSigningKeys } from './oidc/keys.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { createAudit } from './security/audit.ts';
import { loadSecrets } from './security/secrets.ts';

const USAGE = `Usage: latchkey <command> [options]

  serve                                  run the identity provider (migrates first)
  migrate                                apply pending database migrations
  clients create --id ID [--secret S | --public] --redirect-uri URI...
                 [--post-logout-redirect-uri URI...] [--grant-type G...] [--scope "..."]
                 [--name NAME] [--first-party] [--require-verified-email]
                 [--backchannel-logout-uri URI]
  clients list
  clients delete ID
  users create --email E --password P [--name N] [--verified]
  users list
  keys rotate                            new current signing keys; old ones stay published until tokens expire
  keys list
  jobs run NAME                          run a scheduled job now (${Object.keys(JOBS).join(', ')})

Every command accepts --json for machine-readable output.`;

class UsageError extends Error {}

function print(json: boolean, value: unknown, human: () => string) {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : human() + '\n');
}

async function withDb<T>(config: Config, log: Logger, fn: (db: ReturnType<typeof createDb>) => Promise<T>): Promise<T> {
  const db = createDb(config);
  try {
    await migrateLatest(db);
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

async function serve(config: Config, log: Logger) {
  const started = performance.now();
  log.info({ event: 'server.starting', node: process.version, database: config.databaseUrl ? 'postgresql' : 'embedded-pglite' }, `Latchkey starting on Node ${process.version}`);
  const latchkey = await createLatchkey(config, log);
  const server = latchkey.app.listen(config.port, config.host, () => {
    log.info(
      { event: 'server.listening', port: config.port, issuer: config.issuer, startupMs: Math.round(performance.now() - started) },
      `Latchkey listening on ${config.issuer} (port ${config.port})`,
    );
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'server.stopping', signal }, 'shutting down');
    server.close();
    server.closeIdleConnections();
    await latchkey.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

async function clientsCommand(config: Config, log: Logger, sub: string | undefined, args: string[], json: boolean) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      id: { type: 'string' },
      secret: { type: 'string' },
      public: { type: 'boolean', default: false },
      name: { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      'post-logout-redirect-uri': { type: 'string', multiple: true },
      'grant-type': { type: 'string', multiple: true },
      scope: { type: 'string' },
      'first-party': { type: 'boolean', default: false },
      'require-verified-email': { type: 'boolean', default: false },
      'backchannel-logout-uri': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (sub === 'create') {
    if (!values.id) throw new UsageError('clients create needs --id');
    const latchkey = await createLatchkey({ ...config, sweepIntervalSeconds: 0 }, log);
    try {
      const created = await createClientStore(latchkey.db, loadSecrets(config, log).atRestKey).create(
        {
          clientId: values.id,
          secret: values.secret,
          public: values.public,
          name: values.name,
          redirectUris: values['redirect-uri'] ?? [],
          postLogoutRedirectUris: values['post-logout-redirect-uri'] ?? [],
          grantTypes: values['grant-type'] as never,
          scope: values.scope,
          firstParty: values['first-party'],
          requireVerifiedEmail: values['require-verified-email'],
          backchannelLogoutUri: values['backchannel-logout-uri'],
        },
        // The provider's own validation, so a client that would fail at sign-in time fails now.
        (metadata) => latchkey.provider().Client.validate(metadata as never),
      );
      await createAudit(latchkey.db, log)(undefined, { type: 'client.created', clientId: values.id });
      print(json, created, () =>
        [`client_id:     ${created.client_id}`, created.client_secret ? `client_secret: ${created.client_secret}\n(shown once: store it now)` : 'public client (PKCE S256 required)'].join('\n'),
      );
    } finally {
      await latchkey.close();
    }
    return;
  }
  await withDb(config, log, async (db) => {
    const store = createClientStore(db, loadSecrets(config, log).atRestKey);
    if (sub === 'list') {
      const list = await store.list();
      print(json, list, () => list.map((c) => `${String(c.client_id).padEnd(24)} ${(c.redirect_uris as string[]).join(' ')}`).join('\n') || '(no clients)');
    } else if (sub === 'delete') {
      const id = positionals[0] ?? values.id;
      if (!id) throw new UsageError('clients delete needs a client id');
      const deleted = await store.delete(id);
      if (deleted) await createAudit(db, log)(undefined, { type: 'client.deleted', clientId: id });
      print(json, { client_id: id, deleted }, () => (deleted ? `deleted ${id}` : `no client ${id}`));
      if (!deleted) process.exitCode = 1;
    } else throw new UsageError(`unknown clients command ${sub ?? ''}`);
  });
}

async function usersCommand(config: Config, log: Logger, sub: string | undefined, args: string[], json: boolean) {
  const { values } = parseArgs({
    args,
    options: {
      email: { type: 'string' },
      password: { type: 'string' },
      name: { type: 'string' },
      verified: { type: 'boolean', default: false },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  await withDb(config, log, async (db) => {
    if (sub === 'create') {
      if (!values.email || !values.password) throw new UsageError('users create needs --email and --password');
      const password = passwordSchema(config).parse(values.password);
      const user = await createUser(db, {
        email: values.email,
        name: values.name,
        emailVerified: values.verified,
        passwordHash: await createPasswordMethod(db, config).hash(password),
      });
      await createAudit(db, log)(undefined, { type: 'user.created', userId: user.id, data: { via: 'cli' } });
      print(json, user, () => `created user ${user.id} <${user.email}>`);
    } else if (sub === 'list') {
      const users = await listUsers(db, { limit: Number(values.limit ?? 1000) });
      print(json, users, () => users.map((u) => `${u.id}  ${u.email}${u.email_verified ? '' : ' (unverified)'}  ${u.name ?? ''}`).join('\n') || '(no users)');
    } else throw new UsageError(`unknown users command ${sub ?? ''}`);
  });
}

async function keysCommand(config: Config, log: Logger, sub: string | undefined, json: boolean) {
  await withDb(config, log, async (db) => {
    if (sub === 'rotate') {
      // Old keys verify until every token they could have signed has expired, plus a margin.
      const retireAfter = Math.max(config.ttl.idToken, config.ttl.accessToken) + 300;
      const result = await rotateSigningKeys(db, loadSecrets(config, log).atRestKey, retireAfter);
      await createAudit(db, log)(undefined, { type: 'keys.rotated', data: { created: result.created.map((k) => k.kid), rotated: result.rotated } });
      print(json, result, () => `new keys ${result.created.map((k) => `${k.alg}:${k.kid}`).join(', ')}; previous keys published until ${result.retireAfter.toISOString()}`);
    } else if (sub === 'list') {
      const keys = await listSigningKeys(db);
      print(json, keys, () => keys.map((k) => `${k.alg} ${k.kid} ${k.rotated_at ? `retiring after ${k.retire_after?.toISOString()}` : 'current'}`).join('\n'));
    } else throw new UsageError(`unknown keys command ${sub ?? ''}`);
  });
}

async function main(argv: string[]) {
  const [command, sub, ...rest] = argv;
  const json = argv.includes('--json');
  if (!command || command === '--help' || command === 'help' || command === '-h') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const config = loadConfig();
  // CLI commands keep stdout for their output; the log goes to stderr.
  const log = createLogger(command === 'serve' ? config.logLevel : 'warn');
  try {
    switch (command) {
      case 'serve':
        return await serve(config, log);
      case 'migrate': {
        const applied = await withDb(config, log, async () => []);
        const db = createDb(config);
        const again = await migrateLatest(db).finally(() => db.destroy());
        return print(json, { applied: [...applied, ...again] }, () => 'database is up to date');
      }
      case 'clients':
        return await clientsCommand(config, log, sub, rest, json);
      case 'users':
        return await usersCommand(config, log, sub, rest, json);
      case 'keys':
        return await keysCommand(config, log, sub, json);
      case 'jobs': {
        if (sub !== 'run' || !rest[0]) throw new UsageError('usage: latchkey jobs run NAME');
        const name = rest[0];
        return await withDb(config, log, async (db) => {
          const result = await runJob(db, name, log);
          print(json, result, () => (result.ran ? `${name}: ${JSON.stringify(result.result)}` : `${name}: another instance is running it`));
        });
      }
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`latchkey: ${err.message}\n\n${USAGE}\n`);
      process.exitCode = 2;
    } else if (err instanceof ZodError) {
      process.stderr.write(`latchkey: invalid input:\n${err.issues.map((i) => `  ${i.path.join('.') || 'value'}: ${i.message}`).join('\n')}\n`);
      process.exitCode = 2;
    } else if (err instanceof EmailTakenError || err instanceof ClientExistsError) {
      process.stderr.write(`latchkey: ${err.message}\n`);
      process.exitCode = 1;
    } else throw err;
  }
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof ConfigError) process.stderr.write(`latchkey: ${err.message}\n`);
  else process.stderr.write(`latchkey: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
