// CLI for account deletion and the clients' Security Event Token endpoint:
//   users delete EMAIL [--now]            schedule (grace period), or purge at once
//   users purge --due [--as-of ISO-8601]  purge every account whose grace period ended by then
//   clients update ID --events-uri URL    where SETs about the client's users go ('' removes it)
import { parseArgs } from 'node:util';
import type { Latchkey } from '../app.ts';
import { findUserByEmail } from '../identity/users.ts';

interface CommandContext {
  latchkey: Latchkey;
  print(value: unknown, human: () => string): void;
  /** The CLI's usage error (exit code 2 with the usage text). */
  usage(message: string): Error;
}

export async function usersDeletionCommand(action: 'delete' | 'purge', args: string[], { latchkey, print, usage }: CommandContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { now: { type: 'boolean', default: false }, due: { type: 'boolean', default: false }, 'as-of': { type: 'string' }, json: { type: 'boolean' } },
  });
  if (action === 'delete') {
    const email = positionals[0];
    if (!email || positionals.length > 1) throw usage('usage: latchkey users delete EMAIL [--now]');
    const user = await findUserByEmail(latchkey.db, email);
    if (!user) {
      print({ email, error: 'not_found' }, () => `no user ${email}`);
      return 1;
    }
    if (values.now) {
      const receipt = await latchkey.deletion.deleteNow(user);
      print({ status: 'deleted', receipt }, () => `deleted ${user.email} (receipt ${receipt?.pseudonym})`);
      return receipt ? 0 : 1;
    }
    const { deleteAfter, alreadyScheduled } = await latchkey.deletion.schedule(user, { requestedBy: 'operator' });
    print({ status: 'scheduled', user_id: user.id, deletion_date: deleteAfter.toISOString(), already_scheduled: alreadyScheduled }, () =>
      `${user.email} ${alreadyScheduled ? 'was already' : 'is now'} scheduled for deletion on ${deleteAfter.toISOString()}`,
    );
    return 0;
  }
  if (!values.due) throw usage('usage: latchkey users purge --due [--as-of ISO-8601]');
  const asOf = values['as-of'] ? new Date(values['as-of']) : new Date();
  if (Number.isNaN(asOf.getTime()) || (values['as-of'] && !/^\d{4}-\d{2}-\d{2}/.test(values['as-of']))) throw usage('--as-of must be an ISO-8601 date or time, e.g. 2030-01-31T00:00:00Z');
  const receipts = await latchkey.deletion.purgeDue(asOf);
  print({ as_of: asOf.toISOString(), purged: receipts.length, receipts }, () =>
    receipts.length ? receipts.map((r) => `purged ${r.pseudonym} (${Object.entries(r.rows).map(([t, n]) => `${t}: ${n}`).join(', ')})`).join('\n') : `nothing due as of ${asOf.toISOString()}`,
  );
  return 0;
}

export async function clientsUpdateCommand(args: string[], { latchkey, print, usage }: CommandContext): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { id: { type: 'string' }, 'events-uri': { type: 'string' }, json: { type: 'boolean' } } });
  const id = positionals[0] ?? values.id;
  if (!id || values['events-uri'] === undefined) throw usage('usage: latchkey clients update ID --events-uri URL (an empty URL removes it)');
  const uri = values['events-uri'] || null;
  const updated = await latchkey.clients.setEventsUri(id, uri);
  print({ client_id: id, updated, events_uri: uri }, () => (updated ? `${id}: events_uri ${uri ?? 'removed'}` : `no client ${id}`));
  return updated ? 0 : 1;
}
