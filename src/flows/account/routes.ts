// The signed-in user's account page (/account) and re-authentication for sensitive actions.
import type Router from '@koa/router';
import { z } from 'zod';
import type { FlowDeps } from '../context.ts';
import type { Context } from 'koa';
import { PasskeyError } from '../../methods/passkey/index.ts';
import { parseJsonBody, passkeyAssertionBody } from '../../http/forms.ts';
import type { MethodSuccess } from '../../methods/types.ts';
import { accountNoticeText } from './notices.ts';
import type { Reservation } from '../../security/login-throttle.ts';
import { accountCallback, handleRedirects, reauthFailed, recordAccountProof, requireAccount, reserveReauth, rotateSessionId, safeReturnPath, type AccountSession } from './session.ts';

/** Sections other flows add to the account page (email, security…), rendered in order. */
export interface AccountSection {
  template: string;
  load(deps: FlowDeps, account: Awaited<ReturnType<typeof requireAccount>>): Promise<Record<string, unknown>>;
}

export function registerAccountRoutes(router: Router, deps: FlowDeps, sections: AccountSection[] = []) {
  router.use('/account', handleRedirects);

  router.get('/account', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    const loaded = await Promise.all(sections.map(async (s) => ({ template: s.template, vars: await s.load(deps, account) })));
    deps.views.render(ctx, 'account', {
      title: 'Your account',
      user: account.user,
      assurance: account.assurance,
      sections: loaded,
      notice: accountNoticeText(ctx.query.notice),
    });
  });

  router.get('/account/callback', async (ctx) => {
    ctx.status = 303;
    ctx.redirect(accountCallback(deps, ctx));
  });

  // Re-authentication offers every method the user has: password, authenticator app, passkey.
  async function renderReauth(ctx: Context, account: AccountSession, returnTo: string, error?: string) {
    const enrolled = await deps.factors.enrolled(account.user.id);
    deps.views.render(
      ctx,
      'reauth',
      { title: 'Confirm it’s you', email: account.user.email, returnTo, error, password: Boolean(account.user.password_hash), totp: enrolled.totp, passkey: enrolled.passkeys > 0 },
      error ? 401 : 200,
    );
  }

  async function reauthenticated(ctx: Context, account: AccountSession, success: MethodSuccess, reservation: Reservation) {
    await reservation.refund();
    await recordAccountProof(deps, account, success);
    await rotateSessionId(deps, ctx, account);
    await deps.audit(ctx, { type: 'login.success', userId: account.user.id, data: { method: success.method, via: 'reauth' } });
  }

  const reauthForm = z.object({ password: z.string().min(1).max(1024).optional(), code: z.string().trim().min(1).max(64).optional(), return_to: z.string().max(2048).optional() });

  router.get('/account/reauth', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    await renderReauth(ctx, account, safeReturnPath(ctx.query.return_to));
  });

  router.post('/account/reauth', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    const parsed = reauthForm.safeParse((ctx.request as { body?: unknown }).body);
    const form = parsed.success ? parsed.data : {};
    const returnTo = safeReturnPath(form.return_to);
    const method = form.password ? 'password' : form.code ? 'code' : undefined;
    if (!method) return renderReauth(ctx, account, returnTo, 'Enter your password or a code from your authenticator app.');
    const reservation = await reserveReauth(deps, ctx, account, method);
    let success: MethodSuccess | null = null;
    if (form.password) {
      const result = await deps.password.verifyUser(account.user, form.password);
      success = result?.user.id === account.user.id ? result : null;
    } else if (form.code) {
      success = await deps.totp.verify(account.user.id, form.code);
    }
    if (!success) {
      await reauthFailed(deps, ctx, account, method === 'code' ? 'totp' : 'password', reservation);
      return renderReauth(ctx, account, returnTo, form.code ? 'That code is not valid or was already used.' : 'That password is not correct.');
    }
    await reauthenticated(ctx, account, success, reservation);
    ctx.status = 303;
    ctx.redirect(returnTo);
  });

  router.post('/account/reauth/passkey/options', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    ctx.body = await deps.passkeys.authenticationOptions(`reauth:${account.sessionUid}`, account.user.id);
  });

  router.post('/account/reauth/passkey/verify', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    const body = parseJsonBody(ctx, passkeyAssertionBody);
    const reservation = await reserveReauth(deps, ctx, account, 'passkey');
    try {
      const result = await deps.passkeys.authenticate(`reauth:${account.sessionUid}`, body, account.user.id);
      await reauthenticated(ctx, account, result.proof, reservation);
      ctx.body = { redirect: safeReturnPath(ctx.query.return_to) };
    } catch (err) {
      if (!(err instanceof PasskeyError)) throw err;
      await reauthFailed(deps, ctx, account, 'passkey', reservation, err.audit ? { signal: err.audit } : {});
      if (err.audit === 'counter_rollback') await deps.audit(ctx, { type: 'passkey.counter_rollback', userId: account.user.id, data: { credential: String(body?.id ?? '').slice(0, 12), via: 'reauth' } });
      ctx.status = 401;
      ctx.body = { error: 'invalid_passkey', error_description: err.message };
    }
  });
}
