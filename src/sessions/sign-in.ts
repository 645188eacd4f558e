// What a completed sign-in leaves behind: its device session, and, from a device or address the
// user never signed in from, an audit event and a mail ("New sign-in from Chrome on macOS") at
// most once per device per day. Called from the provider's interaction.ended event, the moment the
// session uid is known.
import type { Context } from 'koa';
import type { Db } from '../db/knex.ts';
import { findUserById } from '../identity/users.ts';
import type { Mailer } from '../mail/index.ts';
import type { Logger } from '../observability/logger.ts';
import type { Audit } from '../security/audit.ts';
import { createRateLimit, RateLimitedError } from '../security/rate-limit.ts';
import { recordSignIn, touchDeviceSession, TOUCH_EVERY_SECONDS, type SignInRecord } from './devices.ts';

const DAY = 24 * 3600;

export function createDeviceSessionHooks(deps: { db: Db; audit: Audit; mail: Mailer; log: Logger }) {
  const { db, audit, mail, log } = deps;
  // Spent before the mail is written: a flood of sign-ins from one device mails once a day.
  const mailBudget = createRateLimit(db, 'new_device_mail', 1, DAY);
  // Sessions this process wrote activity for in the last minute: their next uses (every page
  // and redirect saves the session) skip the database instead of running an UPDATE that matches
  // nothing. Forgotten when older than the window, so it holds at most a minute of sessions.
  const recentlyActive = new Map<string, number>();
  const activeRecently = (sessionUid: string): boolean => {
    const now = Date.now();
    const at = recentlyActive.get(sessionUid);
    if (at !== undefined && now - at < TOUCH_EVERY_SECONDS * 1000) return true;
    if (recentlyActive.size > 10_000) {
      for (const [uid, when] of recentlyActive) if (now - when >= TOUCH_EVERY_SECONDS * 1000) recentlyActive.delete(uid);
    }
    recentlyActive.set(sessionUid, now);
    return false;
  };

  async function mailNewDevice(userId: string, device: string, ip: string | null): Promise<void> {
    try {
      await mailBudget.consume(`${userId}\0${device}`);
    } catch (err) {
      if (err instanceof RateLimitedError) return;
      throw err;
    }
    const user = await findUserById(db, userId);
    if (!user || user.status !== 'active') return;
    await mail.enqueue(db, user.email, 'new-device', {
      name: user.name,
      email: user.email,
      device,
      ip: ip ?? 'unknown',
      when: new Date().toUTCString(),
      sessionsLink: mail.link('/account/sessions'),
      resetLink: mail.link('/forgot-password'),
    });
    mail.kick();
  }

  return {
    async signedIn(ctx: Pick<Context, 'ip' | 'get' | 'state'>, record: Omit<SignInRecord, 'ip' | 'userAgent'>): Promise<void> {
      const recorded = await recordSignIn(db, { ...record, ip: ctx.ip, userAgent: ctx.get('user-agent') });
      activeRecently(record.sessionUid); // last_active_at was just written
      if (!recorded.newDevice) return;
      await audit(ctx, { type: 'login.new_device', userId: record.userId, data: { device: recorded.device, session: recorded.id } });
      await mailNewDevice(record.userId, recorded.device, ctx.ip ?? null).catch((err: Error) =>
        log.error({ event: 'mail.enqueue_failed', err: err.message }, 'new-device mail not queued'),
      );
    },
    /** The session was used: last activity, written at most once a minute. */
    async used(sessionUid: string): Promise<void> {
      if (activeRecently(sessionUid)) return;
      await touchDeviceSession(db, sessionUid);
    },
  };
}

export type DeviceSessionHooks = ReturnType<typeof createDeviceSessionHooks>;
