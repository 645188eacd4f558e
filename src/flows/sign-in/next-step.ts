// The sign-in's state machine: after any proof (password, second factor, passkey, sign-in
// link, SAML), where the browser goes next: the first factor again, a second factor, inline
// enrolment, the RP with an error, or the end of the login prompt (the provider then asks for
// email verification and consent as its policy says). Every way of proving who someone is
// calls continueSignIn exactly as the password form does.
import type { Context } from 'koa';
import { findUserById } from '../../identity/users.ts';
import { isDeletionScheduled } from '../../identity/deletion.ts';
import { pendingLink } from '../../federation/saml/links.ts';
import { wantedLevels, type Proof } from '../../assurance/index.ts';
import type { FlowDeps } from '../context.ts';
import { interactionResultUrl, loginResultUrl, type InteractionDetails } from '../interaction.ts';
import { clearPending, loadPending, savePending } from './pending.ts';
import { nextStep, type StepPolicy } from './plan.ts';

function claimsParam(details: InteractionDetails) {
  try {
    return typeof details.params.claims === 'string' ? JSON.parse(details.params.claims) : undefined;
  } catch {
    return undefined;
  }
}

export function stepPolicy(deps: FlowDeps): StepPolicy {
  return { assurance: deps.assurance, enroll: deps.config.stepUp.enroll, recentAuthSeconds: deps.config.recentAuthSeconds };
}

/** What this sign-in needs next for `userId` after `proofs`, with the user's enrolled factors. */
export async function planFor(deps: FlowDeps, details: InteractionDetails, userId: string, proofs: Proof[]) {
  const enrolled = await deps.factors.enrolled(userId);
  const wanted = wantedLevels(deps.assurance, details.params, claimsParam(details));
  return { enrolled, wanted, step: nextStep(stepPolicy(deps), deps.factors, enrolled, wanted, proofs) };
}

const STEP_PAGES = { 'first-factor': 'reauthenticate', factor: 'factor', enroll: 'enroll' } as const;

/**
 * Decides what the sign-in needs after `proofs`, and returns where the browser goes: the RP
 * (done), the first factor again, the second-factor page, inline enrolment, or the RP with
 * unmet_authentication_requirements.
 */
export async function continueSignIn(deps: FlowDeps, ctx: Context, details: InteractionDetails, userId: string, proofs: Proof[]): Promise<string> {
  const { step, wanted } = await planFor(deps, details, userId, proofs);
  if (step.kind === 'done') {
    // Independent lookups, asked at once.
    const [deleting, link, user] = await Promise.all([isDeletionScheduled(deps.db, userId), pendingLink(deps.db, details.uid), findUserById(deps.db, userId)]);
    // During a deletion's grace period the sign-in ends on the page that offers to cancel it
    // (flows/deletion): no client gets a code, whatever proved who the user is.
    if (deleting) {
      await savePending(deps.db, details.uid, { userId, proofs }, deps.config.ttl.interaction);
      return `/interaction/${details.uid}/deletion`;
    }
    // A SAML identity waiting to be linked to this account: its owner, now signed in locally,
    // confirms the link before anything else (flows/saml).
    if (link?.userId === userId) {
      await savePending(deps.db, details.uid, { userId, proofs }, deps.config.ttl.interaction);
      return `/interaction/${details.uid}/saml/link`;
    }
    await clearPending(deps.db, details.uid);
    // Only a browser that completed every factor becomes one the owner is known to use.
    if (user) deps.loginThrottle.rememberDevice(ctx, user);
    return loginResultUrl(deps, ctx, userId, proofs, { interactionUid: details.uid, sessionUid: details.session?.accountId === userId ? details.session.uid : undefined });
  }
  if (step.kind === 'unmet') {
    await clearPending(deps.db, details.uid);
    await deps.audit(ctx, { type: 'login.unmet_requirements', userId, clientId: String(details.params.client_id), data: { wanted } });
    return interactionResultUrl(deps, ctx, { error: 'unmet_authentication_requirements', error_description: 'the requested authentication level cannot be met for this user' }, false);
  }
  await savePending(deps.db, details.uid, { userId, proofs }, deps.config.ttl.interaction);
  return `/interaction/${details.uid}/${STEP_PAGES[step.kind]}`;
}

/** What this sign-in has proven for `userId` so far (nothing when it is another user's). */
export async function pendingProofs(deps: FlowDeps, interactionUid: string, userId: string): Promise<Proof[]> {
  const pending = await loadPending(deps.db, interactionUid);
  return pending?.userId === userId ? pending.proofs : [];
}

