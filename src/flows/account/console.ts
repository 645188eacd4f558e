// The account console's own sections: the profile form (/account), sign-in and security
// (/account/security) and the applications with access (/account/apps). Every section keeps the
// relying party that sent the user (client_id + an exactly registered return_to) in its links
// and forms, for the "Back to <client>" link.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { FlowDeps } from '../context.ts';
import { redirectSeeOther } from '../interaction.ts';
import { removeAppAccess, listGrantedApps } from './apps.ts';
import { accountNav, returnTarget, targetQuery, type AccountSectionKey } from './nav.ts';
import { accountNoticeText, type AccountNotice } from './notices.ts';
import { securitySection } from './security.ts';
import { handleRedirects, requireAccount } from './session.ts';

const SCOPE_LABELS: Record<string, string> = {
  openid: 'Sign you in',
  profile: 'Your name and picture',
  email: 'Your email address',
  offline_access: 'Stay connected when you are not using it',
  roles: 'Your roles and groups',
  'account:read': 'See your account, devices and applications',
  'account:write': 'Manage your devices and applications, and delete your account',
};

const targetForm = z.object({ client_id: z.string().max(128).optional(), return_to: z.string().max(2048).optional() });

function body(ctx: Context): unknown {
  return (ctx.request as { body?: unknown }).body;
}

/** `path?notice=…` keeping the validated client and return_to. */
export function withNotice(path: string, query: string, notice: AccountNotice): string {
  return `${path}${query ? `${query}&` : '?'}notice=${notice}`;
}

export function registerConsoleRoutes(router: Router, deps: FlowDeps) {
  router.use(['/account/security', '/account/apps'], handleRedirects);

  /** The signed-in user and the navigation of `section`; sign-in comes back here with the target. */
  async function open(ctx: Context, path: string, section: AccountSectionKey) {
    const nav = await accountNav(deps, ctx, section);
    const account = await requireAccount(deps, ctx, `${path}${nav.query}`);
    return { account, nav };
  }

  router.get('/account/security', async (ctx) => {
    const { account, nav } = await open(ctx, '/account/security', 'security');
    deps.views.render(ctx, 'account-security', {
      title: 'Sign-in and security',
      accountNav: nav,
      user: account.user,
      notice: accountNoticeText(ctx.query.notice),
      security: await securitySection.load(deps, account),
    });
  });

  router.get('/account/apps', async (ctx) => {
    const { account, nav } = await open(ctx, '/account/apps', 'apps');
    const apps = await listGrantedApps(deps.db, account.user.id);
    const provider = deps.provider();
    const shown = await Promise.all(
      apps.map(async (app) => {
        const client = await provider.Client.find(app.clientId).catch(() => undefined);
        return {
          clientId: app.clientId,
          name: client?.clientName ?? app.clientId,
          scopes: app.scopes.map((s) => ({ name: s, label: SCOPE_LABELS[s] ?? s })),
          grantedAt: app.grantedAt.toUTCString(),
          grantedAtIso: app.grantedAt.toISOString(),
          lastGrantedAt: app.lastGrantedAt.toUTCString(),
          lastGrantedAtIso: app.lastGrantedAt.toISOString(),
        };
      }),
    );
    deps.views.render(ctx, 'account-apps', { title: 'Applications', accountNav: nav, user: account.user, apps: shown, notice: accountNoticeText(ctx.query.notice) });
  });

  router.post('/account/apps/:clientId/remove', async (ctx) => {
    const parsed = targetForm.safeParse(body(ctx));
    const query = targetQuery(parsed.success ? await returnTarget(deps, parsed.data.client_id, parsed.data.return_to) : undefined);
    const account = await requireAccount(deps, ctx, `/account/apps${query}`);
    const clientId = ctx.params.clientId!;
    const removed = await removeAppAccess(deps.db, account.user.id, clientId);
    if (removed > 0) await deps.audit(ctx, { type: 'access.removed', userId: account.user.id, clientId, data: { via: 'account', rows: removed } });
    redirectSeeOther(ctx, withNotice('/account/apps', query, 'access-removed'));
  });
}
