// Email verification: the mail sent at sign-up (and on request), the confirm page behind its
// link, and the "verify your email" step of a sign-in for a client that requires a verified
// address (the verify_email prompt, see oidc/verified-email.ts).
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Knex } from 'knex';
import { findUserById, type User } from '../../identity/users.ts';
import { humanDuration } from '../../mail/index.ts';
import { VERIFY_EMAIL_PROMPT } from '../../oidc/verified-email.ts';
import { consumeLinkToken, inspectLinkToken, issueLinkToken } from '../../security/link-tokens.ts';
import { createRateLimit, RateLimitedError } from '../../security/rate-limit.ts';
import type { Db } from '../../db/knex.ts';
import type { FlowDeps } from '../context.ts';
import { clientName, finishInteraction, loadInteraction, type InteractionDetails } from '../interaction.ts';
import { handleRedirects, requireAccount } from '../account/session.ts';
import { bodyOf, ipKey, renderConfirmLink, renderLinkProblem, stringField } from '../mail-links.ts';
import { accountNoticeUrl, type AccountNotice } from '../account/notices.ts';

const NEW_LINK = { url: '/account', text: 'Sign in to get a new link' };

/** Issues a verification link for the user's current address and puts the mail in the outbox (in `db`'s transaction). */
export async function sendVerificationMail(deps: FlowDeps, db: Db | Knex.Transaction, user: Pick<User, 'id' | 'email' | 'name'>): Promise<void> {
  const ttl = deps.config.linkTtl.verifyEmail;
  const token = await issueLinkToken(db, { purpose: 'verify-email', userId: user.id, boundEmail: user.email, ttlSeconds: ttl });
  await deps.mail.enqueue(db, user.email, 'verify-email', {
    name: user.name,
    email: user.email,
    link: deps.mail.link('/verify-email', { token }),
    expiresIn: humanDuration(ttl),
  });
}

/** Where the resend button may send the browser back to: the account page or a pending sign-in. */
function resendReturnPath(value: unknown): string {
  return typeof value === 'string' && /^\/(account|interaction\/[A-Za-z0-9_-]{1,64})$/.test(value) ? value : '/account';
}

const ACCOUNT_NOTICE_FOR = { sent: 'verification-sent', limited: 'verification-limited', verified: 'already-verified' } as const satisfies Record<string, AccountNotice>;

const NOTICES: Record<keyof typeof ACCOUNT_NOTICE_FOR, string> = {
  sent: 'We sent a new verification link. Check your inbox (and your spam folder).',
  limited: 'We have sent several links already. Wait a while before asking for another one.',
  verified: 'Your email address is already verified.',
};

/** The verify_email prompt's page: this client needs a verified address before it gets a code. */
export async function showVerifyEmailPrompt(deps: FlowDeps, ctx: Context, details: InteractionDetails, error?: string): Promise<void> {
  const user = details.session?.accountId ? await findUserById(deps.db, details.session.accountId) : undefined;
  if (!user) throw Object.assign(new Error('This sign-in has expired. Go back to the application and start again.'), { status: 400, expose: true });
  const client = await deps.provider().Client.find(String(details.params.client_id));
  const notice = typeof ctx.query.notice === 'string' && Object.hasOwn(NOTICES, ctx.query.notice) ? NOTICES[ctx.query.notice as keyof typeof NOTICES] : undefined;
  deps.views.render(
    ctx,
    'verify-email-required',
    { title: 'Verify your email', uid: details.uid, email: user.email, clientName: clientName(details, client), notice, error },
    error ? 409 : 200,
  );
}

export function registerVerifyEmailRoutes(router: Router, deps: FlowDeps) {
  const { perIp, perAddress, windowSeconds } = deps.config.mail.rateLimit;
  const ipLimit = createRateLimit(deps.db, 'mail-ip', perIp, windowSeconds);
  const userLimit = createRateLimit(deps.db, 'verify-resend', perAddress, windowSeconds);

  router.get('/verify-email', async (ctx) => {
    const token = ctx.query.token;
    const found = await inspectLinkToken(deps.db, token, 'verify-email');
    if (found.state === 'valid') {
      return renderConfirmLink(deps, ctx, {
        heading: 'Confirm your email address',
        message: `Confirm that ${found.token.boundEmail} is your email address.`,
        action: '/verify-email',
        token: String(token),
        button: 'Confirm email address',
      });
    }
    if (found.state === 'used' && found.token.userId) {
      const user = await findUserById(deps.db, found.token.userId);
      if (user?.email_verified) {
        return deps.views.render(ctx, 'message', { title: 'Email verified', heading: 'Your email address is already verified', actionUrl: '/account', actionText: 'Go to your account' });
      }
    }
    renderLinkProblem(deps, ctx, found.state, NEW_LINK);
  });

  router.post('/verify-email', async (ctx) => {
    const token = stringField(bodyOf(ctx), 'token');
    const verified = await deps.db.transaction(async (trx) => {
      const spent = await consumeLinkToken(trx, token, 'verify-email');
      if (!spent?.userId || !spent.boundEmail) return undefined;
      const rows = await trx('users')
        .where({ id: spent.userId })
        .whereRaw('lower(email) = lower(?)', [spent.boundEmail])
        .update({ email_verified: true, updated_at: trx.fn.now() }, ['id', 'email']);
      return rows[0] as { id: string; email: string } | undefined;
    });
    if (!verified) return renderLinkProblem(deps, ctx, (await inspectLinkToken(deps.db, token, 'verify-email')).state, NEW_LINK);
    await deps.audit(ctx, { type: 'email.verified', userId: verified.id });
    deps.views.render(ctx, 'message', {
      title: 'Email verified',
      heading: 'Your email address is verified',
      message: `Thank you: ${verified.email} is confirmed. If you were signing in to an application, go back to that window and continue.`,
      actionUrl: '/account',
      actionText: 'Go to your account',
    });
  });

  router.post('/verify-email/resend', handleRedirects, async (ctx) => {
    const returnTo = resendReturnPath(stringField(bodyOf(ctx), 'return_to'));
    const account = await requireAccount(deps, ctx, '/account');
    const back = (code: keyof typeof NOTICES) => {
      ctx.status = 303;
      ctx.redirect(returnTo === '/account' ? accountNoticeUrl(ACCOUNT_NOTICE_FOR[code]) : `${returnTo}?notice=${code}`);
    };
    if (account.user.email_verified) return back('verified');
    try {
      await ipLimit.consume(ipKey(ctx));
      await userLimit.consume(`user:${account.user.id}`);
    } catch (err) {
      if (err instanceof RateLimitedError) return back('limited');
      throw err;
    }
    await deps.db.transaction((trx) => sendVerificationMail(deps, trx, account.user));
    deps.mail.kick();
    await deps.audit(ctx, { type: 'email.verification_sent', userId: account.user.id, data: { via: 'resend' } });
    back('sent');
  });

  // The verify_email prompt: after verifying (in any browser), the user continues the sign-in here.
  router.post('/interaction/:uid/verify-email/continue', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== VERIFY_EMAIL_PROMPT) throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const user = details.session?.accountId ? await findUserById(deps.db, details.session.accountId) : undefined;
    if (user && !user.email_verified) {
      return showVerifyEmailPrompt(deps, ctx, details, 'Your email address is not verified yet. Open the link in the email we sent you, then continue.');
    }
    // The provider checks the policy again on resume; a verified user passes on to consent or the client.
    await finishInteraction(deps, ctx, {}, true);
  });
}
