// Password reset: /forgot-password asks for an address and always answers the same way, in the
// same time, whether or not an account has it; /reset-password?token= sets a new password,
// then signs the user out everywhere and tells them by mail.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { findUserByEmail, findUserById, replacePassword } from '../../identity/users.ts';
import { humanDuration } from '../../mail/index.ts';
import { passwordProblem, passwordSchema } from '../../methods/password/index.ts';
import { revokeAccountEverywhere } from '../../oidc/revoke-account.ts';
import { consumeLinkToken, inspectLinkToken, issueLinkToken, revokeLinkTokens } from '../../security/link-tokens.ts';
import { createRateLimit, RateLimitedError } from '../../security/rate-limit.ts';
import type { FlowDeps } from '../context.ts';
import { addressKey, bodyOf, ipKey, renderLinkProblem, RESPONSE_FLOOR_MS, stringField, withResponseFloor } from '../mail-links.ts';

const UID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const NEW_LINK = { url: '/forgot-password', text: 'Get a new link' };

/** A pending sign-in to go back to afterwards, when the user came from one. */
function signInUid(value: unknown): string | undefined {
  return typeof value === 'string' && UID_RE.test(value) ? value : undefined;
}

/**
 * A reset proves the mailbox only, so it removes no second factor or passkey (they still guard the
 * sign-in, and the owner may need them); it ends every session and lists what remains, so the
 * owner can remove what an intruder added.
 */
async function signInMethods(deps: FlowDeps, userId: string): Promise<string[]> {
  const [enrolled, passkeys] = await Promise.all([deps.factors.enrolled(userId), deps.passkeys.list(userId)]);
  const day = (d: Date) => new Date(d).toISOString().slice(0, 10);
  return [
    ...(enrolled.totp ? ['Authenticator app'] : []),
    ...passkeys.map((p) => `Passkey “${p.name}”, added ${day(p.created_at)}${p.last_used_at ? `, last used ${day(p.last_used_at)}` : ''}`),
    ...(enrolled.recoveryCodes > 0 ? [`${enrolled.recoveryCodes} unused recovery code${enrolled.recoveryCodes === 1 ? '' : 's'}`] : []),
  ];
}

export function registerResetPasswordRoutes(router: Router, deps: FlowDeps) {
  const { perIp, perAddress, windowSeconds } = deps.config.mail.rateLimit;
  const ipLimit = createRateLimit(deps.db, 'mail-ip', perIp, windowSeconds);
  const addressLimit = createRateLimit(deps.db, 'reset-address', perAddress, windowSeconds);
  const newPassword = passwordSchema(deps.config);
  const emailSchema = z.string().trim().min(1).max(320).pipe(z.email());

  const forgotPage = (ctx: Context, vars: Record<string, unknown>, status = 200) =>
    deps.views.render(ctx, 'forgot-password', { title: 'Reset your password', ...vars }, status);

  router.get('/forgot-password', async (ctx) => {
    forgotPage(ctx, { uid: signInUid(ctx.query.uid), email: typeof ctx.query.email === 'string' ? ctx.query.email.slice(0, 320) : '' });
  });

  router.post('/forgot-password', async (ctx) => {
    const body = bodyOf(ctx);
    const uid = signInUid(body.uid);
    const parsed = emailSchema.safeParse(body.email);
    if (!parsed.success) {
      return forgotPage(ctx, { uid, email: stringField(body, 'email')?.slice(0, 320) ?? '', error: 'Enter the email address of your account.' }, 400);
    }
    const email = parsed.data;
    try {
      await ipLimit.consume(ipKey(ctx));
      await addressLimit.consume(addressKey(email));
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      return forgotPage(ctx, { uid, email, error: 'Too many reset requests. Wait a while, then try again.' }, 429);
    }

    // Same work and the same answer for a known and an unknown address; the floor hides the rest.
    const sent = await withResponseFloor(RESPONSE_FLOOR_MS, async () => {
      const user = await findUserByEmail(deps.db, email);
      const known = user?.status === 'active' ? user : undefined;
      const ttl = deps.config.linkTtl.resetPassword;
      if (known) {
        await deps.db.transaction(async (trx) => {
          // Only the newest link works.
          await revokeLinkTokens(trx, known.id, ['reset-password']);
          const token = await issueLinkToken(trx, { purpose: 'reset-password', userId: known.id, boundEmail: known.email, ttlSeconds: ttl, data: uid ? { uid } : {} });
          await deps.mail.enqueue(trx, known.email, 'reset-password', {
            name: known.name,
            email: known.email,
            link: deps.mail.link('/reset-password', { token }),
            expiresIn: humanDuration(ttl),
          });
        });
      }
      await deps.audit(ctx, {
        type: 'password.reset_requested',
        userId: known?.id ?? null,
        data: { known: Boolean(known), emailRef: deps.audit.emailRef(email) },
      });
      return Boolean(known);
    });
    if (sent) deps.mail.kick();
    deps.views.render(ctx, 'message', {
      title: 'Check your email',
      heading: 'Check your email',
      message: `If an account exists for ${email}, we sent it a link to reset the password. The link works for ${humanDuration(deps.config.linkTtl.resetPassword)}.`,
      actionUrl: uid ? `/interaction/${uid}` : undefined,
      actionText: 'Back to sign in',
    });
  });

  const resetPage = (ctx: Context, token: string, email: string | null, vars: Record<string, unknown> = {}, status = 200) =>
    deps.views.render(ctx, 'reset-password', { title: 'Choose a new password', token, email, passwordMinLength: deps.config.password.minLength, ...vars }, status);

  router.get('/reset-password', async (ctx) => {
    const token = ctx.query.token;
    const found = await inspectLinkToken(deps.db, token, 'reset-password');
    if (found.state !== 'valid') return renderLinkProblem(deps, ctx, found.state, NEW_LINK);
    ctx.set('Referrer-Policy', 'no-referrer');
    resetPage(ctx, String(token), found.token.boundEmail);
  });

  router.post('/reset-password', async (ctx) => {
    const body = bodyOf(ctx);
    const token = stringField(body, 'token') ?? '';
    const found = await inspectLinkToken(deps.db, token, 'reset-password');
    if (found.state !== 'valid') return renderLinkProblem(deps, ctx, found.state, NEW_LINK);
    const owner = found.token.userId ? await findUserById(deps.db, found.token.userId) : undefined;
    const parsed = newPassword.safeParse(body.password);
    const problem = parsed.success ? passwordProblem(parsed.data, { email: owner?.email, name: owner?.name }) : undefined;
    if (problem) return resetPage(ctx, token, found.token.boundEmail, { fieldErrors: { password: problem } }, 400);
    if (!parsed.success) {
      return resetPage(ctx, token, found.token.boundEmail, { fieldErrors: { password: parsed.error.issues[0]?.message ?? 'Choose another password.' } }, 400);
    }
    const hash = await deps.password.hash(parsed.data);
    // Read before the transaction (one connection on PGlite): the mail lists what the reset kept.
    const methods = found.token.userId ? await signInMethods(deps, found.token.userId) : [];

    const user = await deps.db.transaction(async (trx) => {
      const spent = await consumeLinkToken(trx, token, 'reset-password');
      if (!spent?.userId) return undefined;
      const account = await findUserById(trx, spent.userId);
      if (!account) return undefined;
      await replacePassword(trx, account.id, hash);
      // Other open reset and sign-in links die with the old password.
      await revokeLinkTokens(trx, account.id, ['reset-password', 'magic-link']);
      await deps.mail.enqueue(trx, account.email, 'password-changed', {
        name: account.name,
        email: account.email,
        changedAt: new Date().toUTCString(),
        resetLink: deps.mail.link('/forgot-password'),
        accountLink: deps.mail.link('/account'),
        methods,
      });
      return { ...account, uid: typeof spent.data.uid === 'string' ? spent.data.uid : undefined };
    });
    if (!user) return renderLinkProblem(deps, ctx, (await inspectLinkToken(deps.db, token, 'reset-password')).state, NEW_LINK);
    deps.mail.kick();

    const revoked = await revokeAccountEverywhere(deps.db, deps.provider(), user.id, ctx.state.log);
    await deps.audit(ctx, { type: 'password.reset', userId: user.id, data: { via: 'email-link' } });
    await deps.audit(ctx, { type: 'sessions.revoked', userId: user.id, data: { reason: 'password.reset', ...revoked } });
    deps.views.render(ctx, 'message', {
      title: 'Password changed',
      heading: 'Your password was changed',
      message: 'You were signed out everywhere. Sign in again with your new password.',
      actionUrl: user.uid ? `/interaction/${user.uid}` : '/account',
      actionText: user.uid ? 'Continue signing in' : 'Sign in',
    });
  });
}
