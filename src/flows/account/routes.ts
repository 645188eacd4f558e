// The signed-in user's account page (/account) and re-authentication for sensitive actions.
import type Router from '@koa/router';
import { z } from 'zod';
import type { FlowDeps } from '../context.ts';
import type { Context } from 'koa';
import { PasskeyError } from '../../methods/passkey/index.ts';
import { parseJsonBody, passkeyAssertionBody } from '../../http/forms.ts';
import type { MethodSuccess } from '../../methods/types.ts';
import { accountNoticeText } from './notices.ts';
import { accountNav, navBack, returnTarget, targetQuery, type AccountNav } from './nav.ts';
import { withNotice } from './console.ts';
import type { Reservation } from '../../security/login-throttle.ts';
import { accountCallback, handleRedirects, reauthFailed, recordAccountProof, requireAccount, reserveReauth, rotateSessionId, safeReturnPath, type AccountSession } from './session.ts';

/** Sections other flows add to the account page (email, security…), rendered in order. */
export interface AccountSection {
  template: string;
  load(deps: FlowDeps, account: Awaited<ReturnType<typeof requireAccount>>): Promise<Record<string, unknown>>;
}

const profileForm = z.object({
  name: z.string().trim().max(200, 'A name has at most 200 characters.'),
  // Given to applications as the `picture` claim: an https URL, or nothing.
  picture: z
    .string()
    .trim()
    .max(2048, 'The picture URL is too long.')
    .refine((v) => v === '' || URL.parse(v)?.protocol === 'https:', 'The picture must be an https:// URL.'),
});

export function registerAccountRoutes(router: Router, deps: FlowDeps, sections: AccountSection[] = []) {
  router.use('/account', handleRedirects);

  async function renderAccount(ctx: Context, account: AccountSession, nav: AccountNav, profile?: { values: Record<string, string>; errors: Record<string, string> }) {
    const loaded = await Promise.all(sections.map(async (s) => ({ template: s.template, vars: await s.load(deps, account) })));
    deps.views.render(
      ctx,
      'account',
      {
        title: 'Your account',
        accountNav: nav,
        user: account.user,
        assurance: account.assurance,
        sections: loaded,
        notice: profile ? undefined : accountNoticeText(ctx.query.notice),
        profile: profile?.values ?? { name: account.user.name ?? '', picture: account.user.picture ?? '' },
        profileErrors: profile?.errors,
      },
      profile ? 400 : 200,
    );
  }

  router.get('/account', async (ctx) => {
    const nav = await accountNav(deps, ctx, 'profile');
    const account = await requireAccount(deps, ctx, `/account${nav.query}`);
    await renderAccount(ctx, account, nav);
  });

  router.post('/account/profile', async (ctx) => {
    const raw = ((ctx.request as { body?: unknown }).body ?? {}) as Record<string, unknown>;
    const target = await returnTarget(deps, raw.client_id, raw.return_to);
    const query = targetQuery(target);
    const account = await requireAccount(deps, ctx, `/account${query}`);
    const parsed = profileForm.safeParse(raw);
    if (!parsed.success) {
      const errors = Object.fromEntries(parsed.error.issues.map((i) => [String(i.path[0]), i.message]));
      const values = { name: typeof raw.name === 'string' ? raw.name : '', picture: typeof raw.picture === 'string' ? raw.picture : '' };
      const nav: AccountNav = { current: 'profile', query, ...navBack(target) };
      return renderAccount(ctx, account, nav, { values, errors });
    }
    await deps.db('users')
      .where({ id: account.user.id })
      .update({ name: parsed.data.name || null, picture: parsed.data.picture || null, updated_at: deps.db.fn.now() });
    await deps.audit(ctx, { type: 'profile.updated', userId: account.user.id });
    ctx.status = 303;
    ctx.redirect(withNotice('/account', query, 'profile-updated'));
  });

  router.get('/account/callback', async (ctx) => {
    ctx.status = 303;
    ctx.redirect(accountCallback(deps, ctx));
  });

  // Re-authentication offers every method the user has: password, authenticator app, passkey.
  // `factor`: an action asked for one factor (the user's strongest, see requireStrongRecentAuth):
  // only that one is offered.
  async function renderReauth(ctx: Context, account: AccountSession, returnTo: string, error?: string, factor?: 'passkey' | 'totp') {
    const enrolled = await deps.factors.enrolled(account.user.id);
    const offered = {
      password: !factor && Boolean(account.user.password_hash),
      totp: (!factor || factor === 'totp') && enrolled.totp,
      passkey: (!factor || factor === 'passkey') && enrolled.passkeys > 0,
    };
    deps.views.render(ctx, 'reauth', { title: 'Confirm it’s you', email: account.user.email, returnTo, error, factor, ...offered }, error ? 401 : 200);
  }

  const factorParam = (value: unknown) => (value === 'passkey' || value === 'totp' ? value : undefined);

  async function reauthenticated(ctx: Context, account: AccountSession, success: MethodSuccess, reservation: Reservation) {
    await reservation.refund();
    await recordAccountProof(deps, account, success);
    await rotateSessionId(deps, ctx, account);
    await deps.audit(ctx, { type: 'login.success', userId: account.user.id, data: { method: success.method, via: 'reauth' } });
  }

  const reauthForm = z.object({
    password: z.string().min(1).max(1024).optional(),
    code: z.string().trim().min(1).max(64).optional(),
    return_to: z.string().max(2048).optional(),
    factor: z.string().max(16).optional(),
  });

  router.get('/account/reauth', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    await renderReauth(ctx, account, safeReturnPath(ctx.query.return_to), undefined, factorParam(ctx.query.factor));
  });

  router.post('/account/reauth', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    const parsed = reauthForm.safeParse((ctx.request as { body?: unknown }).body);
    const form = parsed.success ? parsed.data : {};
    const returnTo = safeReturnPath(form.return_to);
    const factor = factorParam(form.factor);
    const method = form.password ? 'password' : form.code ? 'code' : undefined;
    if (!method) return renderReauth(ctx, account, returnTo, 'Enter your password or a code from your authenticator app.', factor);
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
      return renderReauth(ctx, account, returnTo, form.code ? 'That code is not valid or was already used.' : 'That password is not correct.', factor);
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
