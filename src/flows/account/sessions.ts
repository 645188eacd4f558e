// Account sections "Devices" (/account/sessions: where the user is signed in, with sign-out per
// device, of every other device, or of all) and "Activity" (/account/history: the last sign-in
// attempts). HTML for people; JSON with `Accept: application/json`. Every POST carries the CSRF
// token (form field or x-csrf-token header) and spends the user's revocation budget first.
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { FlowDeps } from '../context.ts';
import { wantsJson } from '../../http/request-context.ts';
import { createRateLimit } from '../../security/rate-limit.ts';
import { deviceSessionJson, findDeviceSession, listDeviceSessions } from '../../sessions/devices.ts';
import { loginHistory } from '../../sessions/history.ts';
import { revokeSessions, sessionUidsOf, type SessionRevokeResult } from '../../sessions/revoke.ts';
import { accountNav } from './nav.ts';
import { currentAccount, endAccountSession, requireAccount, type AccountSession } from './session.ts';

const NOTICES = {
  revoked: 'That device was signed out. Its applications have to ask it to sign in again.',
  'revoked-others': 'Every other device was signed out.',
  'password-changed': 'Password changed. Every other device was signed out.',
} as const;

const HISTORY_LIMIT = 20;
/** Revocations per user per hour: enough for any person, not a lever for a script. */
const REVOKE_BUDGET = 30;

function notice(code: unknown): string | undefined {
  return typeof code === 'string' && Object.hasOwn(NOTICES, code) ? NOTICES[code as keyof typeof NOTICES] : undefined;
}

/** "2026-05-01 14:03 UTC": the same for every reader, whatever their browser's locale. */
export function shortTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

const METHOD_LABELS: Record<string, string> = {
  password: 'Password',
  totp: 'Authenticator app',
  passkey: 'Passkey',
  'recovery-code': 'Recovery code',
  'magic-link': 'Email link',
  saml: 'Single sign-on',
};
export const methodLabel = (m: string | null) => (m ? (METHOD_LABELS[m] ?? m) : '—');

/** The account for a JSON request: a 401 instead of the sign-in redirect a page gets. */
async function accountFor(deps: FlowDeps, ctx: Context, returnTo: string): Promise<AccountSession> {
  if (!wantsJson(ctx)) return requireAccount(deps, ctx, returnTo);
  const account = await currentAccount(deps, ctx);
  if (account) return account;
  throw Object.assign(new Error('Sign in first.'), { status: 401, expose: true });
}

export function registerSessionRoutes(router: Router, deps: FlowDeps) {
  const revokeBudget = createRateLimit(deps.db, 'session_revoke_user', REVOKE_BUDGET, 3600);

  router.get('/account/sessions', async (ctx) => {
    const account = await accountFor(deps, ctx, '/account/sessions');
    const sessions = (await listDeviceSessions(deps.db, account.user.id)).map((row) => deviceSessionJson(row, account.sessionUid));
    ctx.set('Cache-Control', 'no-store');
    if (wantsJson(ctx)) {
      ctx.body = sessions;
      return;
    }
    deps.views.render(ctx, 'account-sessions', {
      title: 'Devices',
      accountNav: await accountNav(deps, ctx, 'sessions'),
      user: account.user,
      notice: notice(ctx.query.notice),
      sessions: sessions.map((s) => ({
        ...s,
        created: shortTime(s.created_at),
        lastActive: shortTime(s.last_active_at),
        methodNames: s.methods.map(methodLabel).join(', '),
      })),
    });
  });

  /** Ends `uids` of the signed-in user; signs this browser out too when its own session is among them. */
  async function revoke(ctx: Context, account: AccountSession, uids: string[], reason: string, extra: Record<string, unknown> = {}): Promise<{ result: SessionRevokeResult; signedOut: boolean }> {
    const result = await revokeSessions(deps.db, deps.provider(), account.user.id, uids, ctx.state.log);
    await deps.audit(ctx, { type: 'session.revoked', userId: account.user.id, data: { reason, ...extra, ...result } });
    const signedOut = uids.includes(account.sessionUid);
    if (signedOut) await endAccountSession(deps, ctx, account);
    return { result, signedOut };
  }

  function respond(ctx: Context, outcome: { result: SessionRevokeResult; signedOut: boolean }, noticeCode: keyof typeof NOTICES) {
    if (wantsJson(ctx)) {
      ctx.body = { revoked: outcome.result.sessions, signed_out: outcome.signedOut };
      return;
    }
    if (outcome.signedOut) {
      deps.views.render(ctx, 'message', {
        title: 'Signed out',
        heading: 'You were signed out',
        message: 'This device is signed out, and applications on the devices you chose have to ask them to sign in again.',
        actionUrl: '/account',
        actionText: 'Sign in again',
      });
      return;
    }
    ctx.status = 303;
    ctx.redirect(`/account/sessions?notice=${noticeCode}`);
  }

  router.post('/account/sessions/revoke-others', async (ctx) => {
    const account = await accountFor(deps, ctx, '/account/sessions');
    await revokeBudget.consume(account.user.id);
    const others = await sessionUidsOf(deps.db, account.user.id, account.sessionUid);
    respond(ctx, await revoke(ctx, account, others, 'user.others'), 'revoked-others');
  });

  router.post('/account/sessions/revoke-all', async (ctx) => {
    const account = await accountFor(deps, ctx, '/account/sessions');
    await revokeBudget.consume(account.user.id);
    const all = [...new Set([account.sessionUid, ...(await sessionUidsOf(deps.db, account.user.id))])];
    respond(ctx, await revoke(ctx, account, all, 'user.all'), 'revoked-others');
  });

  router.post('/account/sessions/:id/revoke', async (ctx) => {
    const account = await accountFor(deps, ctx, '/account/sessions');
    await revokeBudget.consume(account.user.id);
    // Only the user's own live sessions: another user's id is "not found", like a made-up one.
    const target = await findDeviceSession(deps.db, account.user.id, ctx.params.id!);
    if (!target) throw Object.assign(new Error('That device is not signed in to your account (any more).'), { status: 404, expose: true });
    respond(ctx, await revoke(ctx, account, [target.session_uid], 'user', { session: target.id, device: target.device }), 'revoked');
  });

  router.get('/account/history', async (ctx) => {
    const account = await accountFor(deps, ctx, '/account/history');
    const attempts = await loginHistory(deps.db, account.user.id, HISTORY_LIMIT);
    ctx.set('Cache-Control', 'no-store');
    if (wantsJson(ctx)) {
      ctx.body = attempts;
      return;
    }
    deps.views.render(ctx, 'account-history', {
      title: 'Activity',
      accountNav: await accountNav(deps, ctx, 'history'),
      user: account.user,
      attempts: attempts.map((a) => ({ ...a, when: shortTime(a.at), methodName: methodLabel(a.method) })),
    });
  });
}
