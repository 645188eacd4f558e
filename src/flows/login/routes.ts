// Sign-in: the entry page of every interaction, and the password form. What follows the first
// factor (second factor, step-up, enrolment) is the step-up flow's.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { RateLimitedError } from '../../security/rate-limit.ts';
import type { FlowDeps } from '../context.ts';
import { clientName, existingProofs, finishInteraction, loadInteraction, redirectSeeOther, setRememberChoice, timedProofs, type InteractionDetails } from '../interaction.ts';
import { showConsent } from '../consent/routes.ts';
import { continueSignIn, pendingProofs } from '../sign-in/next-step.ts';
import { loadPending } from '../sign-in/pending.ts';
import { findUserByEmail, findUserById } from '../../identity/users.ts';
import { mergeProofs } from '../../sessions/proofs.ts';
import { showVerifyEmailPrompt } from '../verify-email/routes.ts';
import { VERIFY_EMAIL_PROMPT } from '../../oidc/verified-email.ts';
import { PasswordBusyError } from '../../methods/password/index.ts';
import { wantsJson } from '../../http/request-context.ts';

const loginForm = z.object({
  email: z.string().trim().min(1).max(320),
  password: z.string().min(1).max(1024),
});

const INVALID = 'Incorrect email or password.';
// Reasons that only ask for more assurance: the signed-in user proves what is missing.
const STEP_UP_REASONS = new Set(['acr_values', 'essential_acr', 'essential_acrs']);

async function clientLabel(deps: FlowDeps, details: InteractionDetails): Promise<string | undefined> {
  return clientName(details, await deps.provider().Client.find(String(details.params.client_id)));
}

export async function renderLogin(deps: FlowDeps, ctx: Context, details: InteractionDetails, extra: Record<string, unknown> = {}, status = 200) {
  deps.views.render(
    ctx,
    'login',
    {
      title: 'Sign in',
      uid: details.uid,
      clientName: await clientLabel(deps, details),
      email: (details.params.login_hint as string | undefined) ?? '',
      forgotPasswordUrl: `/forgot-password?uid=${details.uid}`,
      magicLinkAction: `/interaction/${details.uid}/magic-link`,
      ...extra,
    },
    status,
  );
}

/** Too many sign-ins at once (the argon2 pool's queue is full): a fast 503 with Retry-After, nothing checked. */
async function renderBusy(deps: FlowDeps, ctx: Context, details: InteractionDetails, email: string, err: PasswordBusyError) {
  deps.metrics.loginAttempts.inc({ method: 'password', result: 'busy' });
  ctx.set('Retry-After', String(err.retryAfterSeconds));
  if (wantsJson(ctx)) {
    ctx.status = 503;
    ctx.body = { error: 'temporarily_unavailable', error_description: err.message };
    return;
  }
  return renderLogin(deps, ctx, details, { email, error: err.message }, 503);
}

export function registerLoginRoutes(router: Router, deps: FlowDeps) {
  router.get('/interaction/:uid', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    ctx.set('Cache-Control', 'no-store');
    if (details.prompt.name === 'consent') return showConsent(deps, ctx, details);
    if (details.prompt.name === VERIFY_EMAIL_PROMPT) return showVerifyEmailPrompt(deps, ctx, details);
    if (details.prompt.name !== 'login') throw Object.assign(new Error(`unsupported prompt ${details.prompt.name}`), { status: 500 });
    const accountId = details.session?.accountId;
    if (accountId && details.prompt.reasons.length > 0 && details.prompt.reasons.every((r) => STEP_UP_REASONS.has(r))) {
      return redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, accountId, await existingProofs(deps, details, accountId)));
    }
    return renderLogin(deps, ctx, details);
  });

  router.post('/interaction/:uid/login', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    if (details.prompt.name !== 'login') throw Object.assign(new Error('This step is already complete.'), { status: 400, expose: true });
    const body = ((ctx.request as { body?: Record<string, unknown> }).body ?? {}) as Record<string, unknown>;
    const parsed = loginForm.safeParse(body);
    if (!parsed.success) {
      const typedEmail = typeof body.email === 'string' ? body.email.slice(0, 320) : '';
      return renderLogin(deps, ctx, details, { email: typedEmail, error: 'Enter your email and password.' }, 400);
    }

    const clientId = String(details.params.client_id);
    const { email, password } = parsed.data;
    try {
      deps.password.pool.admit();
    } catch (err) {
      if (err instanceof PasswordBusyError) return renderBusy(deps, ctx, details, email, err);
      throw err;
    }
    const user = await findUserByEmail(deps.db, email);
    // The attempt is paid for before argon2 runs; a success gets the points back.
    let reservation;
    try {
      reservation = await deps.loginThrottle.reservePassword(ctx, email, user);
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      deps.metrics.loginAttempts.inc({ method: 'password', result: 'throttled' });
      await deps.audit(ctx, { type: 'login.throttled', userId: user?.id, clientId, data: { method: 'password', emailRef: deps.audit.emailRef(email) } });
      ctx.set('Retry-After', String(err.retryAfterSeconds));
      const minutes = Math.max(1, Math.ceil(err.retryAfterSeconds / 60));
      return renderLogin(deps, ctx, details, { email, error: `Too many failed attempts. Try again in ${minutes} minute${minutes === 1 ? '' : 's'}, or reset your password.` }, 429);
    }
    let result;
    try {
      result = await deps.password.verifyUser(user, password, { shed: true });
    } catch (err) {
      if (!(err instanceof PasswordBusyError)) throw err;
      await reservation.refund(); // the password was not checked
      return renderBusy(deps, ctx, details, email, err);
    }
    if (!result) {
      deps.metrics.loginAttempts.inc({ method: 'password', result: 'failure' });
      // Against the account when it exists: its owner sees failed attempts in the login history.
      await deps.audit(ctx, { type: 'login.failure', userId: user?.id, clientId, data: { method: 'password', emailRef: deps.audit.emailRef(email) } });
      // This failure used the account's last point: sign-in by password is blocked until the window ends.
      if (user && reservation.spentOut.includes('login_fail_account')) {
        await deps.audit(ctx, { type: 'account.locked', userId: user.id, clientId, data: { method: 'password', budget: 'login_fail_account' } });
      }
      return renderLogin(deps, ctx, details, { email, error: INVALID }, 401);
    }
    await reservation.refund();
    setRememberChoice(deps, ctx, details.uid, body.remember === 'yes');
    deps.metrics.loginAttempts.inc({ method: 'password', result: 'success' });
    await deps.audit(ctx, { type: 'login.success', userId: result.user.id, clientId, data: { method: 'password' } });
    // A password entered again during this sign-in (its earlier proofs had grown old) adds to them.
    const earlier = await pendingProofs(deps, details.uid, result.user.id);
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, result.user.id, mergeProofs(earlier, timedProofs([result]))));
  });

  // The first factor again, for a signed-in user whose proofs are too old for what is asked next.
  router.get('/interaction/:uid/reauthenticate', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const pending = await loadPending(deps.db, details.uid);
    const user = pending ? await findUserById(deps.db, pending.userId) : undefined;
    ctx.set('Cache-Control', 'no-store');
    return renderLogin(deps, ctx, details, { email: user?.email ?? '', notice: 'For your security, confirm it’s you to continue.' });
  });

  router.post('/interaction/:uid/abort', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    await deps.audit(ctx, { type: 'consent.denied', userId: details.session?.accountId, clientId: String(details.params.client_id) });
    await finishInteraction(deps, ctx, { error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
  });
}
