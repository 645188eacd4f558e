// /account/password: change (or, for an account without one, set) the password. Proof is the
// current password, or a second factor or passkey proven in the last RECENT_AUTH_TTL. The new
// password follows the policy (NIST SP 800-63B: length, no common or breached password, not the
// account's email or name). Afterwards this session gets a new id, every other session and every
// token not issued under this session is revoked, half-done sign-ins are dropped, and the user is
// mailed. Each attempt spends the user's password-change budget before any hashing; a wrong
// current password spends the re-authentication budgets too.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { findUserById, replacePassword } from '../../identity/users.ts';
import { passwordSchema } from '../../methods/password/index.ts';
import { revokeLinkTokens } from '../../security/link-tokens.ts';
import { createRateLimit } from '../../security/rate-limit.ts';
import { deviceName } from '../../sessions/device.ts';
import { revokeSessions, revokeTokensOutside, sessionUidsOf } from '../../sessions/revoke.ts';
import type { FlowDeps } from '../context.ts';
import { accountNav } from './nav.ts';
import { reauthFailed, requireAccount, reserveReauth, rotateSessionId, type AccountSession } from './session.ts';

/** Changes per user per hour. */
const CHANGE_BUDGET = 10;
/** Factors that stand in for the current password when proven recently (never a mailbox or an IdP). */
const STRONG_METHODS = new Set(['totp', 'passkey']);

const form = z.object({
  current_password: z.string().max(1024).optional(),
  new_password: z.string().max(4096).optional(),
});

/** A second factor or passkey proven by this session within RECENT_AUTH_TTL. */
function recentSecondFactor(deps: FlowDeps, account: AccountSession, now = Math.floor(Date.now() / 1000)): boolean {
  return account.proofs.some((p) => STRONG_METHODS.has(p.method) && now - p.at <= deps.config.recentAuthSeconds);
}

export function registerPasswordRoutes(router: Router, deps: FlowDeps) {
  const changeBudget = createRateLimit(deps.db, 'password_change_user', CHANGE_BUDGET, 3600);

  async function render(ctx: Context, account: AccountSession, vars: Record<string, unknown> = {}, status = 200) {
    const enrolled = await deps.factors.enrolled(account.user.id);
    const strongEnrolled = enrolled.totp || enrolled.passkeys > 0;
    deps.views.render(
      ctx,
      'account-password',
      {
        title: 'Password',
        accountNav: await accountNav(deps, ctx, 'security'),
        user: account.user,
        hasPassword: Boolean(account.user.password_hash),
        askCurrent: Boolean(account.user.password_hash) && !recentSecondFactor(deps, account),
        // No password and no recent factor: confirm with a passkey or code first.
        needsConfirm: !account.user.password_hash && !recentSecondFactor(deps, account),
        canConfirm: strongEnrolled,
        passwordMinLength: deps.config.password.minLength,
        notice: ctx.query.notice === 'changed' ? 'Your password was changed. Every other device was signed out.' : undefined,
        ...vars,
      },
      status,
    );
  }

  router.get('/account/password', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    await render(ctx, account);
  });

  router.post('/account/password', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account/password');
    const { user } = account;
    // Paid for before anything is hashed or verified.
    await changeBudget.consume(user.id);
    const parsed = form.safeParse((ctx.request as { body?: unknown }).body);
    const input = parsed.success ? parsed.data : {};
    const strong = recentSecondFactor(deps, account);
    if (!user.password_hash && !strong) return render(ctx, account, { error: 'Confirm it’s you with a passkey or your authenticator app first.' }, 403);

    if (user.password_hash && !strong) {
      if (!input.current_password) return render(ctx, account, { fieldErrors: { current_password: 'Enter your current password.' } }, 400);
      const reservation = await reserveReauth(deps, ctx, account, 'password');
      const result = await deps.password.verifyUser(user, input.current_password);
      if (result?.user.id !== user.id) {
        await reauthFailed(deps, ctx, account, 'password', reservation, { via: 'password-change' });
        return render(ctx, account, { fieldErrors: { current_password: 'That is not your current password.' } }, 401);
      }
      await reservation.refund();
    }

    const checked = passwordSchema(deps.config, { email: user.email, name: user.name }).safeParse(input.new_password ?? '');
    if (!checked.success) return render(ctx, account, { fieldErrors: { new_password: checked.error.issues[0]?.message ?? 'Choose another password.' } }, 400);
    const hash = await deps.password.hash(checked.data);
    const device = deviceName(ctx.get('user-agent'));

    await deps.db.transaction(async (trx) => {
      await replacePassword(trx, user.id, hash);
      // Reset and sign-in links mailed before the change die with the old password.
      await revokeLinkTokens(trx, user.id, ['reset-password', 'magic-link']);
      // Half-done sign-ins that proved the old password must not finish with a second factor.
      await trx('pending_logins').where({ user_id: user.id }).delete();
      await deps.mail.enqueue(trx, user.email, 'password-changed', {
        name: user.name,
        email: user.email,
        changedAt: new Date().toUTCString(),
        fromAccount: true,
        device,
        resetLink: deps.mail.link('/forgot-password'),
        accountLink: deps.mail.link('/account/sessions'),
      });
    });
    deps.mail.kick();

    // Every other device is signed out; tokens not issued under this session die too.
    const others = await sessionUidsOf(deps.db, user.id, account.sessionUid);
    const revoked = await revokeSessions(deps.db, deps.provider(), user.id, others, ctx.state.log);
    const tokens = await revokeTokensOutside(deps.db, user.id, account.sessionUid);
    // A cookie value copied before the change stops working here too.
    await rotateSessionId(deps, ctx, account);
    // The new credential version ends every browser's device trust; this one keeps it.
    const updated = await findUserById(deps.db, user.id);
    if (updated) deps.loginThrottle.rememberDevice(ctx, updated);
    await deps.audit(ctx, { type: 'password.changed', userId: user.id, data: { via: 'account', proof: strong ? 'second-factor' : 'password', set: !user.password_hash } });
    await deps.audit(ctx, { type: 'sessions.revoked', userId: user.id, data: { reason: 'password.changed', ...revoked, tokens } });
    ctx.status = 303;
    ctx.redirect('/account/password?notice=changed');
  });
}
