// Brute-force defence for sign-in that cannot lock the real user out:
// - every budget is spent BEFORE the work it limits (argon2, a TOTP check), in one atomic
//   statement per counter, so requests in flight at once cannot all be checked against a
//   counter none of them has incremented yet (ZITADEL GHSA-7h8m-vrxx-vr4m); a success refunds;
// - failures per IP are limited (one source guessing many accounts), and failures per account
//   (many sources guessing one account);
// - both apply only to browsers that have completed a sign-in to that account (every factor it
//   needs): those carry a signed device cookie bound to the user id and the credential version,
//   and are exempt (OWASP "device cookies"), so an attacker who exhausts an account's or a shared
//   IP's budget blocks only themselves; a password reset bumps the version, ending that trust;
// - keys are the typed address (keyed hash), so unknown addresses behave exactly like known ones.
import crypto from 'node:crypto';
import type { Context } from 'koa';
import { RateLimiterRes, type RateLimiterPostgres } from 'rate-limiter-flexible';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import { postgresLimiter, RateLimitedError } from './rate-limit.ts';

const DEVICE_COOKIE = 'lk.device';
const DEVICE_COOKIE_MAX_ACCOUNTS = 5;
const WINDOW_SECONDS = 15 * 60;
const REAUTH_WINDOW_SECONDS = 24 * 3600;
/** The name of the per-session re-authentication budget: when it is spent, the session ends. */
export const REAUTH_SESSION_BUDGET = 'reauth_fail_session';

/** A user as far as device trust goes: a password reset changes `credentials_version`. */
export interface DeviceSubject {
  id: string;
  credentials_version: number;
}

/** Points reserved for one attempt: `last` when it used the final point of some budget. */
export interface Reservation {
  last: boolean;
  /** The budgets whose final point this attempt used. */
  spentOut: string[];
  /** The attempt succeeded: give the points back. */
  refund(): Promise<void>;
}

const FREE: Reservation = { last: false, spentOut: [], refund: async () => {} };

export function createLoginThrottle(db: Db, config: Pick<Config, 'rateLimits' | 'secureCookies'>, deviceKey: Buffer) {
  const limiter = (name: string, points: number, seconds = WINDOW_SECONDS) => postgresLimiter(db, name, points, seconds);
  const perIp = limiter('login_fail_ip', config.rateLimits.loginPerIp);
  const perAccount = limiter('login_fail_account', config.rateLimits.loginPerAccount);
  // Second factors: a few wrong codes end the attempt (the password must be given again), and
  // a user's codes can be guessed only slowly overall. Only someone who has the password can
  // spend these, so they are not a lockout lever for strangers.
  const perAttempt = limiter('factor_fail_attempt', config.rateLimits.factorPerAttempt);
  const perUser = limiter('factor_fail_user', config.rateLimits.factorPerUser);
  // Re-authentication on account pages: a stolen session is not a guessing oracle.
  const perSession = limiter(REAUTH_SESSION_BUDGET, config.rateLimits.reauthMaxFailures, REAUTH_WINDOW_SECONDS);

  const keyed = (purpose: string, value: string) => crypto.createHmac('sha256', deviceKey).update(`${purpose}\0${value}`).digest('base64url').slice(0, 32);
  const accountKey = (email: string) => keyed('account', email.trim().toLowerCase());
  const ipKey = (ctx: Context) => keyed('ip', ctx.ip);
  const deviceMark = (user: DeviceSubject) => keyed('device', `${user.id}:${user.credentials_version}`).slice(0, 22);

  function deviceMarks(ctx: Context): string[] {
    const raw = ctx.cookies.get(DEVICE_COOKIE, { signed: true });
    return raw ? raw.split('.').filter(Boolean).slice(0, DEVICE_COOKIE_MAX_ACCOUNTS) : [];
  }

  function trustedDevice(ctx: Context, user: DeviceSubject | undefined): boolean {
    return Boolean(user && deviceMarks(ctx).includes(deviceMark(user)));
  }

  /** Spends one point of each budget, in order; throws RateLimitedError when any is spent out. */
  async function reserve(budgets: [RateLimiterPostgres, string][]): Promise<Reservation> {
    const spentOut: string[] = [];
    for (const [l, key] of budgets) {
      try {
        if ((await l.consume(key)).remainingPoints <= 0) spentOut.push(l.keyPrefix);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        throw new RateLimitedError(Math.max(1, Math.ceil(err.msBeforeNext / 1000)), l.keyPrefix);
      }
    }
    return {
      last: spentOut.length > 0,
      spentOut,
      async refund() {
        await Promise.all(budgets.map(([l, key]) => l.reward(key, 1)));
      },
    };
  }

  return {
    /**
     * Reserves a password attempt for `email` (whose account, if any, is `user`) before the
     * password is checked. Throws RateLimitedError when it must not even be checked.
     */
    async reservePassword(ctx: Context, email: string, user: DeviceSubject | undefined): Promise<Reservation> {
      if (trustedDevice(ctx, user)) return FREE;
      return reserve([
        [perIp, ipKey(ctx)],
        [perAccount, accountKey(email)],
      ]);
    },

    /** Reserves a second-factor attempt of sign-in `attemptId` for `userId`, before the code is checked. */
    async reserveSecondFactor(attemptId: string, userId: string): Promise<Reservation> {
      return reserve([
        [perAttempt, keyed('attempt', attemptId)],
        [perUser, keyed('user', userId)],
      ]);
    },

    /**
     * Reserves a re-authentication attempt on an account page: the session's budget (`last` means
     * the session must end), plus the account's password or second-factor budget. Known devices
     * are not exempt here: whoever holds the session holds the browser.
     */
    async reserveReauth(sessionUid: string, user: { id: string; email: string }, method: 'password' | 'code' | 'passkey'): Promise<Reservation> {
      const budgets: [RateLimiterPostgres, string][] = [[perSession, keyed('session', sessionUid)]];
      if (method === 'password') budgets.push([perAccount, accountKey(user.email)]);
      if (method === 'code') budgets.push([perUser, keyed('user', user.id)]);
      return reserve(budgets);
    },

    /** Marks this browser as one the account's owner completed a sign-in with. */
    rememberDevice(ctx: Context, user: DeviceSubject): void {
      const mark = deviceMark(user);
      const marks = [mark, ...deviceMarks(ctx).filter((m) => m !== mark)].slice(0, DEVICE_COOKIE_MAX_ACCOUNTS);
      ctx.cookies.set(DEVICE_COOKIE, marks.join('.'), {
        signed: true,
        httpOnly: true,
        sameSite: 'lax',
        secure: config.secureCookies,
        path: '/',
        maxAge: 365 * 24 * 3600 * 1000,
        overwrite: true,
      });
    },
  };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
