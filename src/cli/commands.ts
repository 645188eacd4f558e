// CLI commands, independent of where they run: standalone against the database, or inside a
// running embedded-database server (PGlite allows one process per data directory).
import { parseArgs } from 'node:util';
import { z, ZodError } from 'zod';
import type { Latchkey } from '../app.ts';
import type { Config } from '../config.ts';
import { migrateLatest } from '../db/migrate.ts';
import { createUser, EmailTakenError, listUsers } from '../identity/users.ts';
import { JOBS, runJob } from '../jobs/index.ts';
import { passwordSchema } from '../methods/password/index.ts';
import { ClientExistsError } from '../oidc/clients.ts';
import { listSigningKeys, rotateSigningKeys } from '../oidc/keys.ts';
import type { Logger } from '../observability/logger.ts';
import { SAML_USAGE, samlCommand } from './saml.ts';
import { clientsUpdateCommand, usersDeletionCommand } from './deletion.ts';
import { SESSIONS_USAGE, sessionsCommand } from './sessions.ts';
import { AUDIT_USAGE, auditCommand, webhooksCommand } from './audit.ts';

export const USAGE = `Usage: latchkey <command> [options]

  serve [--workers N]                    run the identity provider (migrates first); N processes, default one per core on PostgreSQL
  migrate                                apply pending database migrations
  clients create --id ID [--secret S | --public] --redirect-uri URI...
                 [--post-logout-redirect-uri URI...] [--grant-type G...] [--scope "..."]
                 [--name NAME] [--first-party] [--require-verified-email]
                 [--backchannel-logout-uri URI] [--resource-server] [--events-uri URI] [--account-api]
  clients update ID --events-uri URI     where Security Event Tokens go ('' removes it)
  clients update ID --account-api | --no-account-api   allow or stop requesting the Account API
  clients list
  clients delete ID
  users create --email E (--password P | --password-stdin) [--name N] [--verified]
  users list
  users delete EMAIL [--now]             schedule deletion after DELETION_GRACE_DAYS, or delete at once
  users purge --due [--as-of ISO-8601]   purge accounts whose grace period ended (by the given time)
  keys rotate                            new current signing keys; old ones stay published until tokens expire
  keys list
  jobs run NAME                          run a scheduled job now (${Object.keys(JOBS).join(', ')})
${SESSIONS_USAGE}
${AUDIT_USAGE}
${SAML_USAGE}

Every command accepts --json for machine-readable output.`;

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export class UsageError extends Error {}

/** Runs one command; returns the process exit code. */
export async function runCommand(argv: string[], latchkey: Latchkey, config: Config, log: Logger, io: CliIo): Promise<number> {
  const [command, sub, ...rest] = argv;
  const json = argv.includes('--json');
  const print = (value: unknown, human: () => string) => io.out(json ? JSON.stringify(value, null, 2) + '\n' : human() + '\n');
  const { db } = latchkey;
  try {
    switch (command) {
      case 'migrate': {
        const applied = await migrateLatest(db);
        print({ applied }, () => (applied.length ? `applied ${applied.join(', ')}` : 'database is up to date'));
        return 0;
      }
      case 'clients':
        if (sub === 'update' && rest.some((a) => a === '--account-api' || a === '--no-account-api')) return await clientsAccountApiCommand(rest);
        if (sub === 'update') return await clientsUpdateCommand(rest, { latchkey, print, usage: (m) => new UsageError(m) });
        return await clientsCommand(sub, rest);
      case 'users':
        if (sub === 'delete' || sub === 'purge') return await usersDeletionCommand(sub, rest, { latchkey, print, usage: (m) => new UsageError(m) });
        return await usersCommand(sub, rest);
      case 'saml':
        return await samlCommand(sub, rest, { latchkey, config, json, out: io.out, err: io.err, usage: (message) => { throw new UsageError(message); } });
      case 'sessions':
        return await sessionsCommand(sub, rest, { latchkey, log, print, usage: (m) => new UsageError(m) });
      case 'audit':
        return await auditCommand(sub, rest, { latchkey, json, out: io.out, print, usage: (m) => new UsageError(m) });
      case 'webhooks':
        return await webhooksCommand(sub, rest, { latchkey, json, out: io.out, print, usage: (m) => new UsageError(m) });
      case 'keys':
        return await keysCommand(sub);
      case 'jobs': {
        if (sub !== 'run' || !rest[0] || rest[0].startsWith('--')) throw new UsageError('usage: latchkey jobs run NAME');
        const name = rest[0];
        if (!JOBS[name]) throw new UsageError(`unknown job ${name}`);
        const result = await runJob(db, name, log, latchkey.jobServices);
        print(result, () => (result.ran ? `${name}: ${JSON.stringify(result.result)}` : `${name}: another instance is running it now`));
        return 0;
      }
      default:
        throw new UsageError(`unknown command ${command ?? ''}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`latchkey: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof ZodError) {
      io.err(`latchkey: invalid input:\n${err.issues.map((i) => `  ${i.path.join('.') || 'value'}: ${i.message}`).join('\n')}\n`);
      return 2;
    }
    if (err instanceof EmailTakenError || err instanceof ClientExistsError) {
      io.err(`latchkey: ${err.message}\n`);
      return 1;
    }
    if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`latchkey: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    const described = (err as { error_description?: string }).error_description;
    if (described) {
      io.err(`latchkey: ${described}\n`);
      return 2;
    }
    throw err;
  }

  async function clientsCommand(action: string | undefined, args: string[]): Promise<number> {
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
        'resource-server': { type: 'boolean', default: false },
        'backchannel-logout-uri': { type: 'string' },
        'events-uri': { type: 'string' },
        'account-api': { type: 'boolean', default: false },
        json: { type: 'boolean' },
      },
    });
    if (action === 'create') {
      if (!values.id) throw new UsageError('clients create needs --id');
      const created = await latchkey.clients.create(
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
          resourceServer: values['resource-server'],
          backchannelLogoutUri: values['backchannel-logout-uri'],
          eventsUri: values['events-uri'],
          accountApi: values['account-api'],
        },
        // The provider's own validation, so a client that would fail at sign-in fails now.
        (metadata) => latchkey.provider().Client.validate(metadata as never),
      );
      await latchkey.audit(undefined, { type: 'client.created', clientId: values.id });
      print(created, () =>
        [`client_id:     ${created.client_id}`, created.client_secret ? `client_secret: ${created.client_secret}\n(shown once: store it now)` : 'public client (PKCE S256 required)'].join('\n'),
      );
      return 0;
    }
    if (action === 'list') {
      const list = await latchkey.clients.list();
      print(list, () => list.map((c) => `${c.client_id.padEnd(24)} ${c.redirect_uris.join(' ')}`).join('\n') || '(no clients)');
      return 0;
    }
    if (action === 'delete') {
      const id = positionals[0] ?? values.id;
      if (!id) throw new UsageError('clients delete needs a client id');
      const deleted = await latchkey.clients.delete(id);
      if (deleted) await latchkey.audit(undefined, { type: 'client.deleted', clientId: id });
      print({ client_id: id, deleted }, () => (deleted ? `deleted ${id}` : `no client ${id}`));
      return deleted ? 0 : 1;
    }
    throw new UsageError(`unknown clients command ${action ?? ''}`);
  }

  async function clientsAccountApiCommand(args: string[]): Promise<number> {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { id: { type: 'string' }, 'account-api': { type: 'boolean' }, 'no-account-api': { type: 'boolean' }, json: { type: 'boolean' } },
    });
    const id = positionals[0] ?? values.id;
    if (!id || values['account-api'] === values['no-account-api']) throw new UsageError('usage: latchkey clients update ID --account-api | --no-account-api');
    const allowed = Boolean(values['account-api']);
    const updated = await latchkey.clients.setAccountApi(id, allowed);
    if (updated) await latchkey.audit(undefined, { type: 'client.updated', clientId: id, data: { account_api: allowed } });
    print({ client_id: id, updated, account_api: allowed }, () => (updated ? `${id}: Account API ${allowed ? 'allowed' : 'not allowed'}` : `no client ${id}`));
    return updated ? 0 : 1;
  }

  async function usersCommand(action: string | undefined, args: string[]): Promise<number> {
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
    if (action === 'create') {
      if (!values.email || !values.password) throw new UsageError('users create needs --email and --password');
      // The same policy as sign-up, reset and change (NIST SP 800-63B 5.1.1.2): not common, and not
      // built from this account's email or name or the product's name. Refused before anything is written.
      const { password } = z.object({ password: passwordSchema(config, { email: values.email, name: values.name }) }).parse({ password: values.password });
      const user = await createUser(db, {
        email: values.email,
        name: values.name,
        emailVerified: values.verified,
        passwordHash: await latchkey.password.hash(password),
      });
      await latchkey.audit(undefined, { type: 'user.created', userId: user.id, data: { via: 'cli' } });
      print(user, () => `created user ${user.id} <${user.email}>`);
      return 0;
    }
    if (action === 'list') {
      const users = await listUsers(db, { limit: Number(values.limit ?? 1000) });
      print(users, () => users.map((u) => `${u.id}  ${u.email}${u.email_verified ? '' : ' (unverified)'}  ${u.name ?? ''}`).join('\n') || '(no users)');
      return 0;
    }
    throw new UsageError(`unknown users command ${action ?? ''}`);
  }

  async function keysCommand(action: string | undefined): Promise<number> {
    if (action === 'rotate') {
      // Old keys verify until every token they could have signed has expired, plus a margin.
      const retireAfter = Math.max(config.ttl.idToken, config.ttl.accessToken) + 300;
      const result = await rotateSigningKeys(db, latchkey.atRestKey, retireAfter);
      await latchkey.audit(undefined, { type: 'keys.rotated', data: { created: result.created.map((k) => k.kid), rotated: result.rotated } });
      await latchkey.reloadKeys();
      print(result, () => `new keys ${result.created.map((k) => `${k.alg}:${k.kid}`).join(', ')}; previous keys published until ${result.retireAfter.toISOString()}`);
      return 0;
    }
    if (action === 'list') {
      const keys = await listSigningKeys(db);
      print(keys, () => keys.map((k) => `${k.alg} ${k.kid} ${k.rotated_at ? `retiring after ${k.retire_after?.toISOString()}` : 'current'}`).join('\n'));
      return 0;
    }
    throw new UsageError(`unknown keys command ${action ?? ''}`);
  }
}
