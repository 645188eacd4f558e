// CLI for the audit trail and operator webhooks:
//   audit verify                               walk the hash chain; exit 1 naming the first broken row
//   audit list [--user EMAIL] [--type T] [--since ISO] [--limit N]   events, newest first (JSON lines)
//   webhooks add --url URL [--events a,b] [--secret-from-stdin]     prints the signing secret once
//   webhooks list | webhooks remove ID
import { parseArgs } from 'node:util';
import type { Latchkey } from '../app.ts';
import { addWebhook, listWebhooks, newWebhookSecret, removeWebhook } from '../events/webhooks.ts';
import { findUserByEmail } from '../identity/users.ts';
import { sealPending, verifyChain } from '../security/audit-chain.ts';
import { publicEventName, storedTypes } from '../security/audit.ts';

export const AUDIT_USAGE = `  audit verify                           check the audit hash chain (exit 1 names the first broken row)
  audit list [--user EMAIL] [--type T] [--since ISO-8601] [--limit N]   audit events, newest first
  webhooks add --url URL [--events login.failed,account.locked,...] [--secret-from-stdin]
                                         deliver audit events to URL (prints the signing secret once)
  webhooks list
  webhooks remove ID`;

interface CommandContext {
  latchkey: Latchkey;
  json: boolean;
  out(text: string): void;
  print(value: unknown, human: () => string): void;
  usage(message: string): Error;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const EVENT_RE = /^[a-z_]+(\.[a-z_]+)+$/;

export async function auditCommand(action: string | undefined, args: string[], { latchkey, json, out, print, usage }: CommandContext): Promise<number> {
  const { db } = latchkey;
  if (action === 'verify') {
    const { positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
    if (positionals.length) throw usage('usage: latchkey audit verify [--json]');
    // Rows written up to now are sealed first, so the walk covers them.
    await sealPending(db, latchkey.audit.anonymousSalt);
    const result = await verifyChain(db, latchkey.audit.anonymousSalt);
    print(result, () =>
      result.broken
        ? `audit chain BROKEN at seq ${result.broken.seq}${result.broken.id ? ` (row id ${result.broken.id})` : ''}: ${result.broken.reason}`
        : `audit chain intact: ${result.rows} rows${result.unsealed ? ` (${result.unsealed} written since, not yet sealed)` : ''}`,
    );
    return result.ok ? 0 : 1;
  }
  if (action === 'list') {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { user: { type: 'string' }, type: { type: 'string' }, since: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
    });
    if (positionals.length) throw usage('usage: latchkey audit list [--user EMAIL] [--type T] [--since ISO-8601] [--limit N]');
    const limit = values.limit === undefined ? 100 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw usage('--limit must be a whole number from 1 to 10000');
    const since = values.since === undefined ? undefined : new Date(values.since);
    if (since && Number.isNaN(since.getTime())) throw usage('--since must be an ISO-8601 time');
    const query = db('audit_events').orderBy('id', 'desc').limit(limit);
    if (values.user) {
      const user = await findUserByEmail(db, values.user);
      if (!user) {
        print({ email: values.user, error: 'not_found' }, () => `no user ${values.user}`);
        return 1;
      }
      query.where({ user_id: user.id });
    }
    if (values.type) query.whereIn('type', storedTypes(values.type));
    if (since) query.where('at', '>=', since);
    const rows = (await query.select('id', 'seq', 'at', 'type', 'user_id', 'user_pseudonym', 'client_id', 'ip', 'user_agent', 'request_id', 'data')) as Record<string, unknown>[];
    const events = rows.map((r) => ({
      id: String(r.id),
      seq: r.seq === null ? null : Number(r.seq),
      at: new Date(r.at as Date).toISOString(),
      type: r.type,
      event: publicEventName(String(r.type)),
      user_id: r.user_id,
      user_pseudonym: r.user_pseudonym,
      client_id: r.client_id,
      ip: r.ip,
      user_agent: r.user_agent,
      request_id: r.request_id,
      data: r.data,
    }));
    // JSON lines by default (greppable, streamable); one JSON array with --json.
    if (json) print(events, () => '');
    else for (const e of events) out(JSON.stringify(e) + '\n');
    return 0;
  }
  throw usage(`unknown audit command ${action ?? ''}`);
}

export async function webhooksCommand(action: string | undefined, args: string[], { latchkey, print, usage }: CommandContext): Promise<number> {
  const { db } = latchkey;
  if (action === 'add') {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      // --secret is only ever set from --secret-from-stdin (main.ts), never typed on a command line.
      options: { url: { type: 'string' }, events: { type: 'string' }, secret: { type: 'string' }, json: { type: 'boolean' } },
    });
    if (!values.url || positionals.length) throw usage('usage: latchkey webhooks add --url URL [--events a,b] [--secret-from-stdin]');
    const url = URL.parse(values.url);
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password) throw usage('--url must be an http(s) URL without credentials');
    const events = (values.events ?? '').split(',').map((e) => e.trim()).filter(Boolean);
    const bad = events.find((e) => !EVENT_RE.test(e));
    if (bad) throw usage(`not an event name: ${bad}`);
    if (values.secret !== undefined && values.secret.length < 16) throw usage('a webhook secret must be at least 16 characters');
    const secret = values.secret ?? newWebhookSecret();
    const hook = await addWebhook(db, latchkey.atRestKey, { url: url.href, events, secret });
    await latchkey.audit(undefined, { type: 'webhook.added', data: { webhook: hook.id, events } });
    print({ ...hook, secret }, () => `webhook ${hook.id} → ${hook.url} (${events.length ? events.join(', ') : 'every event'})\nsigning secret (shown once): ${secret}`);
    return 0;
  }
  if (action === 'list') {
    const hooks = await listWebhooks(db);
    print(hooks, () => hooks.map((h) => `${h.id}  ${h.url}  ${h.events.length ? h.events.join(',') : '(every event)'}`).join('\n') || '(no webhooks)');
    return 0;
  }
  if (action === 'remove') {
    const id = args.find((a) => !a.startsWith('--'));
    if (!id) throw usage('usage: latchkey webhooks remove ID');
    const removed = UUID_RE.test(id) && (await removeWebhook(db, id));
    if (removed) await latchkey.audit(undefined, { type: 'webhook.removed', data: { webhook: id } });
    print({ id, removed }, () => (removed ? `removed webhook ${id}` : `no webhook ${id}`));
    return removed ? 0 : 1;
  }
  throw usage(`unknown webhooks command ${action ?? ''}`);
}
