// Brute-force defence for sign-in that cannot lock the real user out:
// - failures per IP are limited (one source guessing many accounts), and failures per account
//   (many sources guessing one account);
// - both apply only to browsers that have never signed in to that account: a browser that has
//   carries a signed device cookie and is exempt (OWASP "device cookies"), so an attacker who
//   exhausts an account's or a shared IP's budget blocks only themselves;
// - keys are the typed address (hashed), so unknown addresses behave exactly like known ones.
import crypto from 'node:crypto';
import type { Context } from 'koa';
import { RateLimiterRes, type RateLimiterPostgres } from 'rate-limiter-flexible';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import { postgresLimiter, RateLimitedError } from './rate-limit.ts';
import { sha256Hex } from './crypto.ts';

const DEVICE_COOKIE = 'lk.device';
const DEVICE_COOKIE_MAX_ACCOUNTS = 5;
const WINDOW_SECONDS = 15 * 60;

export function createLoginThrottle(db: Db, config: Pick<Config, 'rateLimits' | 'secureCookies'>, deviceKey: Buffer) {
  const limiter = (name: string, points: number) => postgresLimiter(db, name, points, WINDOW_SECONDS);
  const perIp = limiter('login_fail_ip', config.rateLimits.loginPerIp);
  const perAccount = limiter('login_fail_account', config.rateLimits.loginPerAccount);
  // Second factors: a few wrong codes end the attempt (the password must be given again), and
  // a user's codes can be guessed only slowly overall. Only someone who has the password can
  // spend these, so they are not a lockout lever for strangers.
  const perAttempt = limiter('factor_fail_attempt', 5);
  const perUser = limiter('factor_fail_user', 20);

  const accountKey = (email: string) => sha256Hex(email.trim().toLowerCase()).slice(0, 32);
  const ipKey = (ctx: Context) => sha256Hex(ctx.ip).slice(0, 32);
  const deviceMark = (email: string) => crypto.createHmac('sha256', deviceKey).update(accountKey(email)).digest('base64url').slice(0, 22);

  function deviceMarks(ctx: Context): string[] {
    const raw = ctx.cookies.get(DEVICE_COOKIE, { signed: true });
    return raw ? raw.split('.').filter(Boolean).slice(0, DEVICE_COOKIE_MAX_ACCOUNTS) : [];
  }

  function trustedDevice(ctx: Context, email: string): boolean {
    return deviceMarks(ctx).includes(deviceMark(email));
  }

  async function blockedFor(l: RateLimiterPostgres, key: string): Promise<number> {
    const res = await l.get(key);
    return res && res.remainingPoints <= 0 ? Math.ceil(res.msBeforeNext / 1000) : 0;
  }

  async function spend(l: RateLimiterPostgres, key: string) {
    try {
      await l.consume(key);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
    }
  }

  return {
    /** Throws RateLimitedError when this attempt must not even be checked. */
    async check(ctx: Context, email: string): Promise<void> {
      if (trustedDevice(ctx, email)) return;
      const wait = Math.max(await blockedFor(perIp, ipKey(ctx)), await blockedFor(perAccount, accountKey(email)));
      if (wait > 0) throw new RateLimitedError(wait);
    },

    async failure(ctx: Context, email: string): Promise<void> {
      if (trustedDevice(ctx, email)) return;
      await spend(perIp, ipKey(ctx));
      await spend(perAccount, accountKey(email));
    },

    /** Counts a wrong second factor; true when this sign-in attempt must start over. */
    async secondFactorFailure(attemptId: string, userId: string): Promise<boolean> {
      const exhausted = async (l: RateLimiterPostgres, key: string) => {
        try {
          return (await l.consume(sha256Hex(key).slice(0, 32))).remainingPoints <= 0;
        } catch (err) {
          if (!(err instanceof RateLimiterRes)) throw err;
          return true;
        }
      };
      const [attempt, user] = await Promise.all([exhausted(perAttempt, attemptId), exhausted(perUser, userId)]);
      return attempt || user;
    },

    /** Marks this browser as one the account's owner uses. */
    success(ctx: Context, email: string): void {
      const mark = deviceMark(email);
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
