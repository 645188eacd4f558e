// Changing the account's email address from /account. It needs a recent authentication; the new
// address gets a confirmation link and the address changes only when that link is used; the old
// address gets a notice with a link to report the change, which cancels (or undoes) it and signs
// the account out everywhere. Addresses already in use are refused.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { findUserByEmail, findUserById } from '../../identity/users.ts';
import { humanDuration } from '../../mail/index.ts';
import { revokeAccountEverywhere } from '../../oidc/revoke-account.ts';
import { consumeLinkToken, inspectLinkToken, issueLinkToken, openLinkToken, revokeLinkTokens } from '../../security/link-tokens.ts';
import { createRateLimit, RateLimitedError } from '../../security/rate-limit.ts';
import type { FlowDeps } from '../context.ts';
import type { AccountSection } from '../account/routes.ts';
import { handleRedirects, requireAccount, requireRecentAuth, type AccountSession } from '../account/session.ts';
import { bodyOf, ipKey, renderConfirmLink, renderLinkProblem, stringField } from '../mail-links.ts';
import { redirectSeeOther } from '../interaction.ts';
import { accountNoticeUrl } from '../account/notices.ts';

const ACCOUNT_LINK = { url: '/account', text: 'Go to your account' };
const TAKEN = 'An account with this email address already exists. Use another address.';

/** The "Email" section of the account page: verification state, resend, change, pending change. */
export const emailAccountSection: AccountSection = {
  template: 'partials/account-email.njk',
  async load(deps, account) {
    const pending = await openLinkToken(deps.db, account.user.id, 'email-change');
    return { verified: account.user.email_verified, pendingEmail: pending?.data.newEmail };
  },
};

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === '23505';
}

export function registerChangeEmailRoutes(router: Router, deps: FlowDeps) {
  const { perIp, perAddress, windowSeconds } = deps.config.mail.rateLimit;
  const ipLimit = createRateLimit(deps.db, 'mail-ip', perIp, windowSeconds);
  const userLimit = createRateLimit(deps.db, 'email-change', perAddress, windowSeconds);
  const emailSchema = z.string().trim().min(1, 'Enter the new email address.').max(320, 'That email address is too long.').pipe(z.email('Enter a valid email address.'));

  const formPage = (ctx: Context, account: AccountSession, vars: Record<string, unknown> = {}, status = 200) =>
    deps.views.render(ctx, 'change-email', { title: 'Change your email address', currentEmail: account.user.email, ...vars }, status);

  router.get('/account/email', handleRedirects, async (ctx) => {
    const account = await requireAccount(deps, ctx);
    requireRecentAuth(deps, account, '/account/email');
    formPage(ctx, account);
  });

  router.post('/account/email', handleRedirects, async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account/email');
    requireRecentAuth(deps, account, '/account/email');
    const body = bodyOf(ctx);
    const parsed = emailSchema.safeParse(body.email);
    const typed = stringField(body, 'email')?.slice(0, 320) ?? '';
    if (!parsed.success) return formPage(ctx, account, { email: typed, error: parsed.error.issues[0]?.message }, 400);
    const newEmail = parsed.data;
    if (newEmail.toLowerCase() === account.user.email.toLowerCase()) {
      return formPage(ctx, account, { email: typed, error: 'That is already your email address.' }, 400);
    }
    // Limits first, then the same answer whether or not the address is taken: the form must not
    // tell who has an account. The owner of a taken address hears about the attempt instead.
    try {
      await ipLimit.consume(ipKey(ctx));
      await userLimit.consume(`user:${account.user.id}`);
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      return formPage(ctx, account, { email: typed, error: 'Too many change requests. Wait a while, then try again.' }, 429);
    }
    const owner = await findUserByEmail(deps.db, newEmail);
    if (owner) {
      await deps.mail.enqueue(deps.db, owner.email, 'email-in-use', { name: owner.name, email: owner.email });
      deps.mail.kick();
      await deps.audit(ctx, { type: 'email.change_to_taken', userId: account.user.id });
      return redirectSeeOther(ctx, accountNoticeUrl('email-change-sent'));
    }

    const { user } = account;
    const ttl = deps.config.linkTtl.emailChange;
    const reportTtl = deps.config.linkTtl.emailChangeReport;
    await deps.db.transaction(async (trx) => {
      // One pending change at a time: a new request replaces the previous one.
      await revokeLinkTokens(trx, user.id, ['email-change']);
      const confirm = await issueLinkToken(trx, { purpose: 'email-change', userId: user.id, boundEmail: user.email, data: { newEmail }, ttlSeconds: ttl });
      // Not bound to the address: it must still work after the change happened.
      const report = await issueLinkToken(trx, { purpose: 'email-change-report', userId: user.id, data: { oldEmail: user.email, newEmail }, ttlSeconds: reportTtl });
      await deps.mail.enqueue(trx, newEmail, 'email-change-confirm', {
        name: user.name,
        newEmail,
        link: deps.mail.link('/account/email/confirm', { token: confirm }),
        expiresIn: humanDuration(ttl),
      });
      await deps.mail.enqueue(trx, user.email, 'email-change-notice', {
        name: user.name,
        email: user.email,
        newEmail,
        reportLink: deps.mail.link('/account/email/report', { token: report }),
        reportExpiresIn: humanDuration(reportTtl),
      });
    });
    deps.mail.kick();
    await deps.audit(ctx, { type: 'email.change_requested', userId: user.id });
    redirectSeeOther(ctx, accountNoticeUrl('email-change-sent'));
  });

  router.get('/account/email/confirm', async (ctx) => {
    const token = ctx.query.token;
    const found = await inspectLinkToken(deps.db, token, 'email-change');
    if (found.state !== 'valid') return renderLinkProblem(deps, ctx, found.state, ACCOUNT_LINK);
    renderConfirmLink(deps, ctx, {
      heading: 'Confirm your new email address',
      message: `Use ${String(found.token.data.newEmail)} as the email address of your account instead of ${found.token.boundEmail}?`,
      action: '/account/email/confirm',
      token: String(token),
      button: 'Confirm new address',
    });
  });

  router.post('/account/email/confirm', async (ctx) => {
    const token = stringField(bodyOf(ctx), 'token');
    let changed: { id: string; email: string; oldEmail: string } | undefined;
    try {
      changed = await deps.db.transaction(async (trx) => {
        const spent = await consumeLinkToken(trx, token, 'email-change');
        const newEmail = spent?.data.newEmail;
        if (!spent?.userId || !spent.boundEmail || typeof newEmail !== 'string') return undefined;
        const rows = await trx('users')
          .where({ id: spent.userId })
          .whereRaw('lower(email) = lower(?)', [spent.boundEmail])
          .update({ email: newEmail, email_verified: true, updated_at: trx.fn.now() }, ['id', 'email']);
        const row = rows[0] as { id: string; email: string } | undefined;
        if (!row) return undefined;
        // Links sent to the old address (verification, reset, sign-in) stop working with it.
        await revokeLinkTokens(trx, row.id, ['verify-email', 'reset-password', 'magic-link']);
        return { ...row, oldEmail: spent.boundEmail };
      });
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      // Someone took the address since the request; nothing changed and the link stays unused.
      return deps.views.render(ctx, 'error', { title: 'Address in use', heading: 'This address is already in use', message: TAKEN, actionUrl: '/account', actionText: 'Go to your account' }, 409);
    }
    if (!changed) return renderLinkProblem(deps, ctx, (await inspectLinkToken(deps.db, token, 'email-change')).state, ACCOUNT_LINK);
    await deps.audit(ctx, { type: 'email.changed', userId: changed.id });
    deps.views.render(ctx, 'message', {
      title: 'Email address changed',
      heading: 'Your email address was changed',
      message: `Your account now uses ${changed.email}. Use it the next time you sign in.`,
      actionUrl: '/account',
      actionText: 'Go to your account',
    });
  });

  // The old address's "this wasn't me" link.
  router.get('/account/email/report', async (ctx) => {
    const token = ctx.query.token;
    const found = await inspectLinkToken(deps.db, token, 'email-change-report');
    if (found.state !== 'valid') return renderLinkProblem(deps, ctx, found.state, { url: '/forgot-password', text: 'Reset your password' });
    renderConfirmLink(deps, ctx, {
      heading: 'Report an email change you did not make',
      message: `We will cancel the change to ${String(found.token.data.newEmail)} (or undo it, putting back ${String(found.token.data.oldEmail)}), and sign your account out everywhere.`,
      detail: 'Afterwards, choose a new password: whoever asked for the change knew your current one, or had your session.',
      action: '/account/email/report',
      token: String(token),
      button: 'Cancel the change and secure my account',
    });
  });

  router.post('/account/email/report', async (ctx) => {
    const token = stringField(bodyOf(ctx), 'token');
    const outcome = await deps.db.transaction(async (trx) => {
      const spent = await consumeLinkToken(trx, token, 'email-change-report');
      const { oldEmail, newEmail } = spent?.data ?? {};
      if (!spent?.userId || typeof oldEmail !== 'string' || typeof newEmail !== 'string') return undefined;
      const user = await findUserById(trx, spent.userId);
      if (!user) return undefined;
      await revokeLinkTokens(trx, user.id, ['email-change', 'verify-email', 'reset-password', 'magic-link']);
      let restored = false;
      if (user.email.toLowerCase() === newEmail.toLowerCase()) {
        const taken = await trx('users').whereRaw('lower(email) = lower(?)', [oldEmail]).whereNot({ id: user.id }).first('id');
        if (!taken) {
          await trx('users').where({ id: user.id }).update({ email: oldEmail, email_verified: true, updated_at: trx.fn.now() });
          restored = true;
        }
      }
      return { userId: user.id, oldEmail, restored };
    });
    if (!outcome) return renderLinkProblem(deps, ctx, (await inspectLinkToken(deps.db, token, 'email-change-report')).state, { url: '/forgot-password', text: 'Reset your password' });
    const revoked = await revokeAccountEverywhere(deps.db, deps.provider(), outcome.userId, ctx.state.log);
    await deps.audit(ctx, { type: 'email.change_reported', userId: outcome.userId, data: { restored: outcome.restored } });
    await deps.audit(ctx, { type: 'sessions.revoked', userId: outcome.userId, data: { reason: 'email.change_reported', ...revoked } });
    deps.views.render(ctx, 'message', {
      title: 'Change reported',
      heading: outcome.restored ? 'We put your email address back' : 'We cancelled the email change',
      message: `Your account uses ${outcome.oldEmail} and was signed out everywhere. Now choose a new password.`,
      actionUrl: `/forgot-password?email=${encodeURIComponent(outcome.oldEmail)}`,
      actionText: 'Choose a new password',
    });
  });
}
