// CLI for device sessions:
//   sessions list --user EMAIL [--json]     where the user is signed in
//   sessions revoke ID                      sign one device session out (its tokens die with it)
//   sessions revoke --user EMAIL            sign the user out everywhere
import { parseArgs } from 'node:util';
import type { Latchkey } from '../app.ts';
import { findUserByEmail } from '../identity/users.ts';
import type { Logger } from '../observability/logger.ts';
import { deviceSessionJson, listDeviceSessions } from '../sessions/devices.ts';
import { revokeSessions, sessionUidsOf } from '../sessions/revoke.ts';

export const SESSIONS_USAGE = `  sessions list --user EMAIL             the user's signed-in devices (id, device, IP, times, methods, acr)
  sessions revoke ID | --user EMAIL      sign out one device session, or every session of the user`;

interface CommandContext {
  latchkey: Latchkey;
  log: Logger;
  print(value: unknown, human: () => string): void;
  usage(message: string): Error;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function sessionsCommand(action: string | undefined, args: string[], { latchkey, log, print, usage }: CommandContext): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { user: { type: 'string' }, json: { type: 'boolean' } } });
  const { db } = latchkey;
  const userByEmail = async (email: string) => {
    const user = await findUserByEmail(db, email);
    if (!user) print({ email, error: 'not_found' }, () => `no user ${email}`);
    return user;
  };

  if (action === 'list') {
    if (!values.user || positionals.length) throw usage('usage: latchkey sessions list --user EMAIL [--json]');
    const user = await userByEmail(values.user);
    if (!user) return 1;
    const sessions = (await listDeviceSessions(db, user.id)).map((row) => {
      const { current: _current, ...rest } = deviceSessionJson(row);
      return rest;
    });
    print(sessions, () =>
      sessions.map((s) => `${s.id}  ${s.device.padEnd(24)} ${String(s.ip ?? '-').padEnd(16)} since ${s.created_at}  active ${s.last_active_at}  ${s.methods.join('+')}`).join('\n') || '(no sessions)',
    );
    return 0;
  }

  if (action === 'revoke') {
    if (values.user && positionals.length === 0) {
      const user = await userByEmail(values.user);
      if (!user) return 1;
      const result = await revokeSessions(db, latchkey.provider(), user.id, await sessionUidsOf(db, user.id), log);
      await latchkey.audit(undefined, { type: 'session.revoked', userId: user.id, data: { reason: 'operator.all', ...result } });
      print({ user_id: user.id, ...result }, () => `signed ${user.email} out of ${result.sessions} session(s)`);
      return 0;
    }
    const id = positionals[0];
    if (!id || positionals.length > 1 || values.user) throw usage('usage: latchkey sessions revoke ID | --user EMAIL');
    const row = UUID_RE.test(id) ? await db('device_sessions').where({ id }).first('id', 'session_uid', 'user_id', 'device') : undefined;
    if (!row) {
      print({ id, error: 'not_found' }, () => `no session ${id}`);
      return 1;
    }
    const result = await revokeSessions(db, latchkey.provider(), row.user_id, [row.session_uid], log);
    await latchkey.audit(undefined, { type: 'session.revoked', userId: row.user_id, data: { reason: 'operator', session: row.id, device: row.device, ...result } });
    print({ id, ...result }, () => `revoked session ${id} (${result.artifacts} artifacts, ${result.backchannel.delivered} back-channel logouts)`);
    return result.sessions > 0 ? 0 : 1;
  }
  throw usage(`unknown sessions command ${action ?? ''}`);
}
