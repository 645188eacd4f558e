// The signed-in user's account page (/account) and re-authentication for sensitive actions.
import type Router from '@koa/router';
import { z } from 'zod';
import type { FlowDeps } from '../context.ts';
import { accountCallback, handleRedirects, recordAccountProof, requireAccount, safeReturnPath } from './session.ts';

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
      notice: typeof ctx.query.notice === 'string' ? ctx.query.notice.slice(0, 200) : undefined,
    });
  });

  router.get('/account/callback', async (ctx) => {
    ctx.status = 303;
    ctx.redirect(accountCallback(deps, ctx));
  });

  router.get('/account/reauth', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    deps.views.render(ctx, 'reauth', { title: 'Confirm it’s you', email: account.user.email, returnTo: safeReturnPath(ctx.query.return_to) });
  });

  const reauthForm = z.object({ password: z.string().min(1).max(1024), return_to: z.string().optional() });
  router.post('/account/reauth', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    const parsed = reauthForm.safeParse((ctx.request as { body?: unknown }).body);
    const returnTo = safeReturnPath(parsed.success ? parsed.data.return_to : undefined);
    const result = parsed.success ? await deps.password.verify(account.user.email, parsed.data.password) : null;
    if (!result || result.user.id !== account.user.id) {
      await deps.audit(ctx, { type: 'login.failure', userId: account.user.id, data: { method: 'password', via: 'reauth' } });
      return deps.views.render(ctx, 'reauth', { title: 'Confirm it’s you', email: account.user.email, returnTo, error: 'That password is not correct.' }, 401);
    }
    await recordAccountProof(deps, account, result);
    await deps.audit(ctx, { type: 'login.success', userId: account.user.id, data: { method: 'password', via: 'reauth' } });
    ctx.status = 303;
    ctx.redirect(returnTo);
  });
}
