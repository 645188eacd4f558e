// The pages of a sign-in after the first factor: second factors, step-up for a stronger acr,
// and inline enrolment when the user has nothing that could meet the request. What comes next
// after each is decided by the sign-in's state machine (../sign-in/next-step.ts).
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { findUserById, type User } from '../../identity/users.ts';
import { PasskeyError } from '../../methods/passkey/index.ts';
import { totpProof } from '../../methods/totp/index.ts';
import type { MethodSuccess } from '../../methods/types.ts';
import type { Proof } from '../../assurance/index.ts';
import { mergeProofs } from '../../sessions/proofs.ts';
import type { FlowDeps } from '../context.ts';
import { loadInteraction, redirectSeeOther, timedProofs, type InteractionDetails } from '../interaction.ts';
import { clearPending, loadPending, owePendingRecoveryCodes, savePending, takeRecoveryCodesDue } from '../sign-in/pending.ts';
import { continueSignIn, planFor } from '../sign-in/next-step.ts';
import { createRateLimit, RateLimitedError } from '../../security/rate-limit.ts';
import type { Reservation } from '../../security/login-throttle.ts';
import { parseJsonBody, passkeyAssertionBody, passkeyRegistrationBody } from '../../http/forms.ts';
import { reportFactorChange } from '../notify.ts';

/** The pending sign-in of this interaction, or back to its start when there is none. */
async function requirePending(deps: FlowDeps, ctx: Context, details: InteractionDetails) {
  const pending = await loadPending(deps.db, details.uid);
  if (!pending) throw Object.assign(new Error('This step has expired. Start signing in again from the application.'), { status: 400, expose: true });
  const user = await findUserById(deps.db, pending.userId);
  if (!user || user.status !== 'active') throw Object.assign(new Error('This account is not available.'), { status: 400, expose: true });
  return { pending, user };
}

class StepNotAllowedError extends Error {
  status = 403;
  expose = true;
  constructor() {
    super('This step is not available for this sign-in. Go back to the application and sign in again.');
  }
}

/** The pending sign-in, only when its plan says enrolment is the next step (never from a password alone). */
async function requireEnrolment(deps: FlowDeps, ctx: Context, details: InteractionDetails) {
  const { pending, user } = await requirePending(deps, ctx, details);
  const { step, enrolled } = await planFor(deps, details, user.id, pending.proofs);
  if (step.kind !== 'enroll') throw new StepNotAllowedError();
  return { pending, user, enrolled };
}

const codeForm = z.object({ code: z.string().trim().min(1).max(64) });

export function registerStepUpRoutes(router: Router, deps: FlowDeps) {
  async function renderFactorPage(ctx: Context, details: InteractionDetails, error?: string, status = 200) {
    const { pending, user } = await requirePending(deps, ctx, details);
    const { step, enrolled } = await planFor(deps, details, user.id, pending.proofs);
    if (step.kind !== 'factor') return redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, user.id, pending.proofs));
    // For the phishing-resistant level only a passkey will do.
    const passkeyOnly = step.need === 'phr';
    deps.views.render(
      ctx,
      'factor',
      {
        title: 'Two-step verification',
        uid: details.uid,
        email: user.email,
        passkeyOnly,
        totp: !passkeyOnly && enrolled.totp,
        recovery: !passkeyOnly && enrolled.recoveryCodes > 0,
        passkey: enrolled.passkeys > 0,
        error,
      },
      status,
    );
  }

  async function proved(ctx: Context, details: InteractionDetails, userId: string, earlier: Proof[], success: MethodSuccess, method: string) {
    await deps.audit(ctx, { type: 'login.success', userId, clientId: String(details.params.client_id), data: { method } });
    deps.metrics.loginAttempts.inc({ method, result: 'success' });
    return continueSignIn(deps, ctx, details, userId, mergeProofs(earlier, timedProofs([success])));
  }

  /** The attempt is over: the pending state goes, and the browser must start with the password again. */
  async function endAttempt(ctx: Context, details: InteractionDetails, userId: string, method: string, retryAfterSeconds?: number): Promise<never> {
    await clearPending(deps.db, details.uid);
    deps.metrics.loginAttempts.inc({ method, result: 'throttled' });
    await deps.audit(ctx, { type: 'login.throttled', userId, clientId: String(details.params.client_id), data: { method } });
    throw Object.assign(new Error('Too many wrong codes. Go back to the application and sign in again.'), { status: 429, expose: true, retryAfterSeconds });
  }

  /** Spends a second-factor attempt before anything is verified; ends the attempt when none is left. */
  async function reserveFactorAttempt(ctx: Context, details: InteractionDetails, userId: string, method: string): Promise<Reservation> {
    try {
      return await deps.loginThrottle.reserveSecondFactor(details.uid, userId);
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      return endAttempt(ctx, details, userId, method, err.retryAfterSeconds);
    }
  }

  /** Records a wrong second factor; after the last allowed one, the attempt is over (password again). */
  async function failed(ctx: Context, details: InteractionDetails, userId: string | undefined, method: string, reservation: Reservation | undefined, extra: Record<string, unknown> = {}, auditUserId = userId) {
    deps.metrics.loginAttempts.inc({ method, result: 'failure' });
    await deps.audit(ctx, { type: 'login.failure', userId: auditUserId, clientId: String(details.params.client_id), data: { method, ...extra } });
    if (userId && reservation?.last) await endAttempt(ctx, details, userId, method);
  }

  router.get('/interaction/:uid/factor', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    await renderFactorPage(ctx, details);
  });

  /** A typed second factor (authenticator code, recovery code): verify, or show the page again. */
  function codeFactorRoute(
    path: string,
    method: string,
    verify: (userId: string, code: string) => Promise<MethodSuccess | null>,
    refusal: string,
    afterSuccess?: (ctx: Context, user: User) => Promise<void>,
  ) {
    router.post(`/interaction/:uid/factor/${path}`, async (ctx) => {
      const details = await loadInteraction(deps, ctx);
      const { pending, user } = await requirePending(deps, ctx, details);
      const reservation = await reserveFactorAttempt(ctx, details, user.id, method);
      const parsed = codeForm.safeParse((ctx.request as { body?: unknown }).body);
      const success = parsed.success ? await verify(user.id, parsed.data.code) : null;
      if (!success) {
        await failed(ctx, details, user.id, method, reservation);
        return renderFactorPage(ctx, details, refusal, 401);
      }
      await reservation.refund();
      await afterSuccess?.(ctx, user);
      redirectSeeOther(ctx, await proved(ctx, details, user.id, pending.proofs, success, method));
    });
  }

  codeFactorRoute('totp', 'totp', deps.totp.verify, 'That code is not valid or was already used. Enter the current code from your app.');
  codeFactorRoute('recovery', 'recovery-code', deps.recoveryCodes.verify, 'That recovery code is not valid or was already used.', async (ctx, user) => {
    const remaining = await deps.recoveryCodes.remaining(user.id);
    await deps.audit(ctx, { type: 'recovery_code.used', userId: user.id, data: { remaining } });
    await deps.notify?.(user, 'recovery-code-used', { remaining });
  });

  // Passkeys in the sign-in: passwordless (no pending state: the credential names the user) or
  // as the second factor of the pending user. JSON endpoints for the page's script.
  // Each options request stores a challenge: bounded per IP so nobody fills the table.
  const challengeLimit = createRateLimit(deps.db, 'passkey_challenge_ip', 60, 60);
  router.post('/interaction/:uid/passkey/options', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    await challengeLimit.consume(ctx.ip);
    const pending = await loadPending(deps.db, details.uid);
    ctx.body = await deps.passkeys.authenticationOptions(details.uid, pending?.userId);
  });

  router.post('/interaction/:uid/passkey/verify', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const pending = await loadPending(deps.db, details.uid);
    const response = parseJsonBody(ctx, passkeyAssertionBody);
    // As a second factor the pending user's budget is spent first, like a typed code.
    const reservation = pending ? await reserveFactorAttempt(ctx, details, pending.userId, 'passkey') : undefined;
    try {
      const result = await deps.passkeys.authenticate(details.uid, response, pending?.userId);
      await reservation?.refund();
      ctx.body = { redirect: await proved(ctx, details, result.userId, pending?.proofs ?? [], result.proof, 'passkey') };
    } catch (err) {
      if (!(err instanceof PasskeyError)) throw err;
      // Throttled against the pending sign-in only; audited against the credential's owner too.
      await failed(ctx, details, pending?.userId, 'passkey', reservation, err.audit ? { signal: err.audit } : {}, pending?.userId ?? err.userId);
      // Passwordless has no pending user: the event names the credential's owner.
      if (err.audit === 'counter_rollback') await deps.audit(ctx, { type: 'passkey.counter_rollback', userId: err.userId ?? pending?.userId, data: { credential: response.id.slice(0, 12) } });
      ctx.status = 401;
      ctx.body = { error: 'invalid_passkey', error_description: err.message };
    }
  });

  // Inline enrolment: the RP asked for a level this user cannot reach yet, and this sign-in has
  // just proven every factor the user already has (see plan.ts).
  async function renderEnroll(ctx: Context, details: InteractionDetails, error?: string, status = 200) {
    const { user, enrolled } = await requireEnrolment(deps, ctx, details);
    const totp = enrolled.totp ? undefined : ((await deps.totp.pendingEnrollment(user.id, user.email)) ?? (await deps.totp.beginEnrollment(user.id, user.email)));
    deps.views.render(ctx, 'enroll', { title: 'Add a second step', uid: details.uid, email: user.email, totp, error }, status);
  }

  router.get('/interaction/:uid/enroll', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { pending, user } = await requirePending(deps, ctx, details);
    const { step } = await planFor(deps, details, user.id, pending.proofs);
    if (step.kind !== 'enroll') return redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, user.id, pending.proofs));
    await renderEnroll(ctx, details);
  });

  router.post('/interaction/:uid/enroll/totp', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { pending, user, enrolled } = await requireEnrolment(deps, ctx, details);
    const parsed = codeForm.safeParse((ctx.request as { body?: unknown }).body);
    if (enrolled.totp || !parsed.success || !(await deps.totp.confirmEnrollment(user.id, parsed.data.code))) {
      return renderEnroll(ctx, details, 'That code did not match. Check the time on your device and enter the current code.', 400);
    }
    await reportFactorChange(deps, ctx, user, 'added', 'totp', 'sign-in');
    // Entering a valid code from the new authenticator proves possession of it.
    await savePending(deps.db, details.uid, { userId: user.id, proofs: mergeProofs(pending.proofs, timedProofs([totpProof])) }, deps.config.ttl.interaction);
    // Recovery codes come with the first second factor only: never replaced from a sign-in.
    if (deps.factors.hasSecondFactor(enrolled)) return redirectSeeOther(ctx, `/interaction/${details.uid}/factor`);
    const codes = await deps.recoveryCodes.generate(user.id);
    deps.views.render(ctx, 'recovery-codes', { title: 'Save your recovery codes', codes, continueAction: `/interaction/${details.uid}/continue` });
  });

  router.post('/interaction/:uid/passkey/register-options', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { user } = await requireEnrolment(deps, ctx, details);
    ctx.body = await deps.passkeys.registrationOptions(user, details.uid);
  });

  router.post('/interaction/:uid/passkey/register', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { user, enrolled } = await requireEnrolment(deps, ctx, details);
    const body = parseJsonBody(ctx, passkeyRegistrationBody);
    try {
      await deps.passkeys.register(user.id, details.uid, body.response, body.name ?? 'Passkey');
    } catch (err) {
      if (!(err instanceof PasskeyError)) throw err;
      ctx.status = 400;
      ctx.body = { error: 'invalid_passkey', error_description: err.message };
      return;
    }
    await reportFactorChange(deps, ctx, user, 'added', 'passkey', 'sign-in');
    if (!deps.factors.hasSecondFactor(enrolled)) await owePendingRecoveryCodes(deps.db, details.uid);
    // Registering is not signing in: after the recovery codes (when owed), the new passkey is
    // used on the second-factor page.
    ctx.body = { redirect: `/interaction/${details.uid}/recovery-codes` };
  });

  // Shown once, and only to the sign-in that just enrolled the user's first second factor.
  router.get('/interaction/:uid/recovery-codes', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { pending, user } = await requirePending(deps, ctx, details);
    if (!(await takeRecoveryCodesDue(deps.db, details.uid, user.id))) return redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, user.id, pending.proofs));
    const codes = await deps.recoveryCodes.generate(user.id);
    deps.views.render(ctx, 'recovery-codes', { title: 'Save your recovery codes', codes, continueAction: `/interaction/${details.uid}/continue` });
  });

  router.post('/interaction/:uid/continue', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { pending, user } = await requirePending(deps, ctx, details);
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, user.id, pending.proofs));
  });
}
