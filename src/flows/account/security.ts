// Account page security: authenticator app, recovery codes and passkeys. Anything that adds or
// removes a way to sign in needs a recent authentication.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { PasskeyError } from '../../methods/passkey/index.ts';
import { parseJsonBody, passkeyRegistrationBody } from '../../http/forms.ts';
import type { FlowDeps } from '../context.ts';
import { redirectSeeOther } from '../interaction.ts';
import { reportFactorChange } from '../notify.ts';
import { accountNoticeUrl, type AccountNotice } from './notices.ts';
import type { AccountSection } from './routes.ts';
import { reauthFailed, requireAccount, requireRecentAuth, reserveReauth, type AccountSession } from './session.ts';

export const securitySection: AccountSection = {
  template: 'partials/account-security.njk',
  async load(deps, account) {
    const enrolled = await deps.factors.enrolled(account.user.id);
    const passkeys = await deps.passkeys.list(account.user.id);
    return { enrolled, passkeys: passkeys.map((p) => ({ id: p.id, name: p.name, createdAt: p.created_at, lastUsedAt: p.last_used_at })) };
  },
};

const codeForm = z.object({ code: z.string().trim().min(1).max(64) });
const nameForm = z.object({ name: z.string().trim().min(1, 'Give the passkey a name.').max(100) });

function back(ctx: Context, notice: AccountNotice) {
  redirectSeeOther(ctx, accountNoticeUrl(notice));
}

export function registerSecurityRoutes(router: Router, deps: FlowDeps) {
  /** Recovery codes exist while the user has any second factor, and go when the last one goes. */
  async function afterFactorChange(account: AccountSession): Promise<string[] | undefined> {
    const enrolled = await deps.factors.enrolled(account.user.id);
    if (!deps.factors.hasSecondFactor(enrolled)) {
      await deps.recoveryCodes.clear(account.user.id);
      return undefined;
    }
    return enrolled.recoveryCodes === 0 ? deps.recoveryCodes.generate(account.user.id) : undefined;
  }

  async function renderTotpSetup(ctx: Context, account: AccountSession, error?: string) {
    const totp = (await deps.totp.pendingEnrollment(account.user.id, account.user.email)) ?? (await deps.totp.beginEnrollment(account.user.id, account.user.email));
    deps.views.render(ctx, 'totp-setup', { title: 'Set up an authenticator app', totp, error }, error ? 400 : 200);
  }

  router.get('/account/totp/setup', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    requireRecentAuth(deps, account, '/account/totp/setup');
    if (await deps.totp.isEnrolled(account.user.id)) return back(ctx, 'totp-already-on');
    await renderTotpSetup(ctx, account);
  });

  router.post('/account/totp/setup', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    requireRecentAuth(deps, account, '/account/totp/setup');
    const parsed = codeForm.safeParse((ctx.request as { body?: unknown }).body);
    if (!parsed.success || !(await deps.totp.confirmEnrollment(account.user.id, parsed.data.code))) {
      return renderTotpSetup(ctx, account, 'That code did not match. Check the time on your device and enter the current code.');
    }
    await reportFactorChange(deps, ctx, account.user, 'added', 'totp', 'account');
    const codes = await afterFactorChange(account);
    if (codes) return deps.views.render(ctx, 'recovery-codes', { title: 'Save your recovery codes', codes, continueUrl: '/account' });
    back(ctx, 'totp-on');
  });

  router.post('/account/totp/disable', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    requireRecentAuth(deps, account, '/account');
    const parsed = codeForm.safeParse((ctx.request as { body?: unknown }).body);
    // A valid current code as well: whoever disables it must still hold the device. Each try is
    // paid for first, like any other code.
    const reservation = await reserveReauth(deps, ctx, account, 'code');
    if (!parsed.success || !(await deps.totp.verify(account.user.id, parsed.data.code))) {
      await reauthFailed(deps, ctx, account, 'totp', reservation);
      return back(ctx, 'totp-still-on');
    }
    await reservation.refund();
    await deps.totp.disable(account.user.id);
    await afterFactorChange(account);
    await reportFactorChange(deps, ctx, account.user, 'removed', 'totp', 'account');
    back(ctx, 'totp-off');
  });

  router.post('/account/recovery-codes', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    requireRecentAuth(deps, account, '/account');
    if (!deps.factors.hasSecondFactor(await deps.factors.enrolled(account.user.id))) return back(ctx, 'recovery-needs-factor');
    const codes = await deps.recoveryCodes.generate(account.user.id);
    await reportFactorChange(deps, ctx, account.user, 'recovery-codes', 'recovery-code', 'account');
    deps.views.render(ctx, 'recovery-codes', { title: 'Save your recovery codes', codes, continueUrl: '/account' });
  });

  router.post('/account/passkeys/options', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    requireRecentAuth(deps, account, '/account');
    ctx.body = await deps.passkeys.registrationOptions(account.user, account.sessionUid);
  });

  router.post('/account/passkeys', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    requireRecentAuth(deps, account, '/account');
    const body = parseJsonBody(ctx, passkeyRegistrationBody);
    try {
      await deps.passkeys.register(account.user.id, account.sessionUid, body.response, body.name ?? 'Passkey');
    } catch (err) {
      if (!(err instanceof PasskeyError)) throw err;
      ctx.status = 400;
      ctx.body = { error: 'invalid_passkey', error_description: err.message };
      return;
    }
    await reportFactorChange(deps, ctx, account.user, 'added', 'passkey', 'account');
    // The first second factor brings recovery codes: the next page creates and shows them once.
    const enrolled = await deps.factors.enrolled(account.user.id);
    ctx.body = { redirect: enrolled.recoveryCodes === 0 ? '/account/recovery-codes/new' : accountNoticeUrl('passkey-added') };
  });

  router.get('/account/recovery-codes/new', async (ctx) => {
    const account = await requireAccount(deps, ctx);
    requireRecentAuth(deps, account, '/account');
    const codes = await afterFactorChange(account);
    if (!codes) return back(ctx, 'passkey-added');
    deps.views.render(ctx, 'recovery-codes', { title: 'Save your recovery codes', codes, continueUrl: '/account' });
  });

  router.post('/account/passkeys/:id/rename', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    const parsed = nameForm.safeParse((ctx.request as { body?: unknown }).body);
    if (!parsed.success) return back(ctx, 'passkey-name-invalid');
    const renamed = await deps.passkeys.rename(account.user.id, ctx.params.id!, parsed.data.name);
    if (renamed) await deps.audit(ctx, { type: 'passkey.renamed', userId: account.user.id });
    back(ctx, renamed ? 'passkey-renamed' : 'passkey-not-found');
  });

  router.post('/account/passkeys/:id/delete', async (ctx) => {
    const account = await requireAccount(deps, ctx, '/account');
    requireRecentAuth(deps, account, '/account');
    const enrolled = await deps.factors.enrolled(account.user.id);
    // Never remove the last way to sign in.
    if (!account.user.password_hash && enrolled.passkeys <= 1) return back(ctx, 'passkey-last');
    if (!(await deps.passkeys.remove(account.user.id, ctx.params.id!))) return back(ctx, 'passkey-not-found');
    await afterFactorChange(account);
    await reportFactorChange(deps, ctx, account.user, 'removed', 'passkey', 'account');
    back(ctx, 'passkey-removed');
  });
}
