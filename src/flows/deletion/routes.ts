// Deleting an account from the hosted pages, also when a relying party sends the user
// (RP-initiated: /account/delete?client_id=…&return_to=…), and the page a sign-in during the
// grace period ends on ("Cancel deletion": no client gets a code until the user cancels).
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { FlowDeps } from '../context.ts';
import { InteractionExpiredError, loadInteraction, redirectSeeOther } from '../interaction.ts';
import { continueSignIn } from '../sign-in/next-step.ts';
import { loadPending } from '../sign-in/pending.ts';
import { findScheduledDeletion } from '../../identity/deletion.ts';
import { findUserById } from '../../identity/users.ts';
import { currentAccount, endAccountSession, handleRedirects, requireAccount, requireStrongRecentAuth } from '../account/session.ts';
import { navBack, returnTarget, targetQuery, type ReturnTarget } from '../account/nav.ts';
import type { DeletionService } from './service.ts';

const deleteForm = z.object({
  client_id: z.string().max(128).optional(),
  return_to: z.string().max(2048).optional(),
  confirm: z.string().max(16).optional(),
  action: z.enum(['delete', 'keep']).optional(),
});

/** This page's own address with only what was validated (it survives sign-in and re-authentication). */
function selfPath(target: ReturnTarget | undefined): string {
  if (!target) return '/account/delete';
  const params = new URLSearchParams({ client_id: target.clientId, ...(target.returnTo ? { return_to: target.returnTo } : {}) });
  return `/account/delete?${params.toString()}`;
}

function backTo(returnTo: string, params: Record<string, string>): string {
  const url = new URL(returnTo);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

export function registerDeletionRoutes(router: Router, deps: FlowDeps, deletion: DeletionService) {
  router.use('/account/delete', handleRedirects);

  function renderConfirm(ctx: Context, email: string, target: ReturnTarget | undefined, error?: string) {
    const deletionDate = new Date(Date.now() + deps.config.deletion.graceDays * 86_400_000);
    deps.views.render(
      ctx,
      'delete-account',
      {
        title: 'Delete your account',
        email,
        graceDays: deps.config.deletion.graceDays,
        deletionDate: deletionDate.toUTCString(),
        deletionDateIso: deletionDate.toISOString(),
        accountNav: { current: 'delete', query: targetQuery(target), ...navBack(target) },
        clientId: target?.clientId,
        clientName: target?.clientName,
        returnTo: target?.returnTo,
        error,
      },
      error ? 400 : 200,
    );
  }

  router.get('/account/delete', async (ctx) => {
    const target = await returnTarget(deps, ctx.query.client_id, ctx.query.return_to);
    const self = selfPath(target);
    const account = await requireAccount(deps, ctx, self);
    await requireStrongRecentAuth(deps, account, self);
    renderConfirm(ctx, account.user.email, target);
  });

  router.post('/account/delete', async (ctx) => {
    const parsed = deleteForm.safeParse((ctx.request as { body?: unknown }).body);
    const form = parsed.success ? parsed.data : {};
    const target = await returnTarget(deps, form.client_id, form.return_to);
    const self = selfPath(target);
    const account = await requireAccount(deps, ctx, self);
    if (form.action === 'keep') {
      return redirectSeeOther(ctx, target?.returnTo ? backTo(target.returnTo, { status: 'cancelled' }) : '/account');
    }
    await requireStrongRecentAuth(deps, account, self);
    if (form.confirm !== 'yes') return renderConfirm(ctx, account.user.email, target, 'Tick the box to confirm that you want your account deleted.');
    const { deleteAfter } = await deletion.schedule(account.user, { requestedBy: 'user', clientId: target?.clientId, ctx });
    // Every session was revoked; this browser's cookie goes too.
    await endAccountSession(deps, ctx, account);
    if (target?.returnTo) return redirectSeeOther(ctx, backTo(target.returnTo, { status: 'scheduled', deletion_date: deleteAfter.toISOString() }));
    deps.views.render(ctx, 'message', {
      title: 'Account deletion scheduled',
      heading: 'Your account will be deleted',
      message: `Your account will be deleted on ${deleteAfter.toUTCString()}. You were signed out everywhere. Until then you can sign in and cancel the deletion; we sent you an email with a link.`,
    });
  });

  // The mail's cancel link: signing in leads to the grace page (see continueSignIn), whose
  // button cancels; a browser that comes back here afterwards is told it worked.
  router.get('/account/delete/cancel', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    const scheduled = await findScheduledDeletion(deps.db, account.user.id);
    if (scheduled) return renderGrace(ctx, scheduled.deleteAfter, '/account/delete/cancel');
    deps.views.render(ctx, 'message', { title: 'Deletion cancelled', heading: 'Your account will not be deleted', message: 'Your account is active. Applications will ask you to sign in again.', actionUrl: '/account', actionText: 'Go to your account' });
  });

  router.post('/account/delete/cancel', async (ctx) => {
    const account = await currentAccount(deps, ctx);
    if (account) await deletion.cancel(account.user.id, ctx);
    redirectSeeOther(ctx, '/account/delete/cancel');
  });

  function renderGrace(ctx: Context, deleteAfter: Date, action: string) {
    deps.views.render(ctx, 'deletion-pending', { title: 'Your account is being deleted', deletionDate: deleteAfter.toUTCString(), deletionDateIso: deleteAfter.toISOString(), action });
  }

  /** The sign-in of a user whose account is in its grace period: proven, but not finished. */
  async function graceSignIn(ctx: Context) {
    const details = await loadInteraction(deps, ctx);
    const pending = await loadPending(deps.db, details.uid);
    if (!pending) throw new InteractionExpiredError();
    return { details, pending };
  }

  router.get('/interaction/:uid/deletion', async (ctx) => {
    const { details, pending } = await graceSignIn(ctx);
    const scheduled = await findScheduledDeletion(deps.db, pending.userId);
    if (!scheduled) return redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, pending.userId, pending.proofs));
    renderGrace(ctx, scheduled.deleteAfter, `/interaction/${details.uid}/deletion/cancel`);
  });

  router.post('/interaction/:uid/deletion/cancel', async (ctx) => {
    const { details, pending } = await graceSignIn(ctx);
    const user = await findUserById(deps.db, pending.userId);
    if (!user) throw new InteractionExpiredError();
    await deletion.cancel(user.id, ctx);
    // Sign-in works again: this one carries on to the application with what it proved.
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, user.id, pending.proofs));
  });
}
