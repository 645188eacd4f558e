// The part of sign-in after the first factor: second factors, step-up for a stronger acr,
// and inline enrolment when the user has nothing that could meet the request.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { findUserById, type User } from '../../identity/users.ts';
import { PasskeyError } from '../../methods/passkey/index.ts';
import { totpProof } from '../../methods/totp/index.ts';
import type { MethodSuccess } from '../../methods/types.ts';
import type { Proof } from '../../oidc/assurance.ts';
import { mergeProofs } from '../../sessions/proofs.ts';
import type { FlowDeps } from '../context.ts';
import { interactionResultUrl, loadInteraction, loginResultUrl, redirectSeeOther, timedProofs, type InteractionDetails } from '../interaction.ts';
import { clearPending, loadPending, savePending } from './pending.ts';
import { createRateLimit } from '../../security/rate-limit.ts';
import { nextStep, wantedLevels } from './plan.ts';

function claimsParam(details: InteractionDetails) {
  try {
    return typeof details.params.claims === 'string' ? JSON.parse(details.params.claims) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Decides what the sign-in needs after `proofs`, and returns where the browser goes: the RP
 * (done), the second-factor page, inline enrolment, or the RP with unmet_authentication_requirements.
 */
export async function continueSignIn(deps: FlowDeps, ctx: Context, details: InteractionDetails, userId: string, proofs: Proof[]): Promise<string> {
  const enrolled = await deps.factors.enrolled(userId);
  const wanted = wantedLevels(deps.assurance, details.params, claimsParam(details));
  const step = nextStep(deps.assurance, deps.factors, enrolled, wanted, proofs);
  if (step.kind === 'done') {
    await clearPending(deps.db, details.uid);
    return loginResultUrl(deps, ctx, userId, proofs);
  }
  if (step.kind === 'unmet' && deps.config.stepUp.enroll === 'deny') {
    await clearPending(deps.db, details.uid);
    await deps.audit(ctx, { type: 'login.unmet_requirements', userId, clientId: String(details.params.client_id), data: { wanted } });
    return interactionResultUrl(deps, ctx, { error: 'unmet_authentication_requirements', error_description: 'the requested authentication level cannot be met for this user' }, false);
  }
  await savePending(deps.db, details.uid, { userId, proofs }, deps.config.ttl.interaction);
  return `/interaction/${details.uid}/${step.kind === 'factor' ? 'factor' : 'enroll'}`;
}

/** The pending sign-in of this interaction, or back to its start when there is none. */
async function requirePending(deps: FlowDeps, ctx: Context, details: InteractionDetails) {
  const pending = await loadPending(deps.db, details.uid);
  if (!pending) throw Object.assign(new Error('This step has expired. Start signing in again from the application.'), { status: 400, expose: true });
  const user = await findUserById(deps.db, pending.userId);
  if (!user || user.status !== 'active') throw Object.assign(new Error('This account is not available.'), { status: 400, expose: true });
  return { pending, user };
}

const codeForm = z.object({ code: z.string().trim().min(1).max(64) });

export function registerStepUpRoutes(router: Router, deps: FlowDeps) {
  async function renderFactorPage(ctx: Context, details: InteractionDetails, error?: string, status = 200) {
    const { pending, user } = await requirePending(deps, ctx, details);
    const enrolled = await deps.factors.enrolled(user.id);
    const step = nextStep(deps.assurance, deps.factors, enrolled, wantedLevels(deps.assurance, details.params, claimsParam(details)), pending.proofs);
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

  /** Records a wrong second factor; after too many, the attempt is over (password again). */
  async function failed(ctx: Context, details: InteractionDetails, userId: string | undefined, method: string, extra: Record<string, unknown> = {}, auditUserId = userId) {
    deps.metrics.loginAttempts.inc({ method, result: 'failure' });
    await deps.audit(ctx, { type: 'login.failure', userId: auditUserId, clientId: String(details.params.client_id), data: { method, ...extra } });
    if (userId && (await deps.loginThrottle.secondFactorFailure(details.uid, userId))) {
      await clearPending(deps.db, details.uid);
      await deps.audit(ctx, { type: 'login.throttled', userId, clientId: String(details.params.client_id), data: { method } });
      throw Object.assign(new Error('Too many wrong codes. Go back to the application and sign in again.'), { status: 429, expose: true });
    }
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
      const parsed = codeForm.safeParse((ctx.request as { body?: unknown }).body);
      const success = parsed.success ? await verify(user.id, parsed.data.code) : null;
      if (!success) {
        await failed(ctx, details, user.id, method);
        return renderFactorPage(ctx, details, refusal, 401);
      }
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
    const response = (ctx.request as { body?: unknown }).body as AuthenticationResponseJSON;
    if (!response || typeof response !== 'object' || typeof response.id !== 'string') {
      throw Object.assign(new Error('A passkey response is required.'), { status: 400, expose: true });
    }
    try {
      const result = await deps.passkeys.authenticate(details.uid, response, pending?.userId);
      ctx.body = { redirect: await proved(ctx, details, result.userId, pending?.proofs ?? [], result.proof, 'passkey') };
    } catch (err) {
      if (!(err instanceof PasskeyError)) throw err;
      // Throttled against the pending sign-in only; audited against the credential's owner too.
      await failed(ctx, details, pending?.userId, 'passkey', err.audit ? { signal: err.audit } : {}, pending?.userId ?? err.userId);
      // Passwordless has no pending user: the event names the credential's owner.
      if (err.audit === 'counter_rollback') await deps.audit(ctx, { type: 'passkey.counter_rollback', userId: err.userId ?? pending?.userId, data: { credential: response.id.slice(0, 12) } });
      ctx.status = 401;
      ctx.body = { error: 'invalid_passkey', error_description: err.message };
    }
  });

  // Inline enrolment: the RP asked for a level this user cannot reach yet.
  async function renderEnroll(ctx: Context, details: InteractionDetails, error?: string, status = 200) {
    const { user } = await requirePending(deps, ctx, details);
    const enrolled = await deps.factors.enrolled(user.id);
    const totp = enrolled.totp ? undefined : ((await deps.totp.pendingEnrollment(user.id, user.email)) ?? (await deps.totp.beginEnrollment(user.id, user.email)));
    deps.views.render(ctx, 'enroll', { title: 'Add a second step', uid: details.uid, email: user.email, totp, error }, status);
  }

  router.get('/interaction/:uid/enroll', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    await renderEnroll(ctx, details);
  });

  router.post('/interaction/:uid/enroll/totp', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { pending, user } = await requirePending(deps, ctx, details);
    const parsed = codeForm.safeParse((ctx.request as { body?: unknown }).body);
    if (!parsed.success || !(await deps.totp.confirmEnrollment(user.id, parsed.data.code))) {
      return renderEnroll(ctx, details, 'That code did not match. Check the time on your device and enter the current code.', 400);
    }
    await deps.audit(ctx, { type: 'factor.enrolled', userId: user.id, data: { method: 'totp', via: 'sign-in' } });
    const codes = await deps.recoveryCodes.generate(user.id);
    // Entering a valid code from the new authenticator proves possession of it.
    await savePending(deps.db, details.uid, { userId: user.id, proofs: mergeProofs(pending.proofs, timedProofs([totpProof])) }, deps.config.ttl.interaction);
    deps.views.render(ctx, 'recovery-codes', { title: 'Save your recovery codes', codes, continueAction: `/interaction/${details.uid}/continue` });
  });

  router.post('/interaction/:uid/passkey/register-options', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { user } = await requirePending(deps, ctx, details);
    ctx.body = await deps.passkeys.registrationOptions(user, details.uid);
  });

  router.post('/interaction/:uid/passkey/register', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { user } = await requirePending(deps, ctx, details);
    const body = (ctx.request as { body?: { response?: RegistrationResponseJSON; name?: string } }).body;
    try {
      await deps.passkeys.register(user.id, details.uid, body?.response as RegistrationResponseJSON, String(body?.name ?? 'Passkey'));
    } catch (err) {
      if (!(err instanceof PasskeyError)) throw err;
      ctx.status = 400;
      ctx.body = { error: 'invalid_passkey', error_description: err.message };
      return;
    }
    await deps.audit(ctx, { type: 'factor.enrolled', userId: user.id, data: { method: 'passkey', via: 'sign-in' } });
    // Registering is not signing in: after the recovery codes, the new passkey is used on the
    // second-factor page.
    ctx.body = { redirect: `/interaction/${details.uid}/recovery-codes` };
  });

  router.get('/interaction/:uid/recovery-codes', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { user } = await requirePending(deps, ctx, details);
    const enrolled = await deps.factors.enrolled(user.id);
    if (!deps.factors.hasSecondFactor(enrolled) || enrolled.recoveryCodes > 0) return redirectSeeOther(ctx, `/interaction/${details.uid}/factor`);
    const codes = await deps.recoveryCodes.generate(user.id);
    deps.views.render(ctx, 'recovery-codes', { title: 'Save your recovery codes', codes, continueAction: `/interaction/${details.uid}/continue` });
  });

  router.post('/interaction/:uid/continue', async (ctx) => {
    const details = await loadInteraction(deps, ctx);
    const { pending, user } = await requirePending(deps, ctx, details);
    redirectSeeOther(ctx, await continueSignIn(deps, ctx, details, user.id, pending.proofs));
  });
}
