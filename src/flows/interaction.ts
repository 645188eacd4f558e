// Shared steps of every sign-in journey: load the pending OIDC interaction and finish it.
import Provider, { errors, type InteractionResults } from 'oidc-provider';
import type { Context } from 'koa';
import type { FlowDeps } from './context.ts';
import { assess, type Proof } from '../oidc/assurance.ts';
import { loadSessionProofs, mergeProofs } from '../sessions/proofs.ts';
import type { MethodSuccess } from '../methods/types.ts';

export type InteractionDetails = Awaited<ReturnType<Provider['interactionDetails']>>;

export class InteractionExpiredError extends Error {
  status = 400;
  expose = true;
  constructor() {
    super('This sign-in link has expired or was already used. Go back to the application and start signing in again.');
  }
}

/** The pending interaction for this browser, or a friendly error when it is gone or not this one. */
export async function loadInteraction(deps: FlowDeps, ctx: Context): Promise<InteractionDetails> {
  try {
    const details = await deps.provider().interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid) throw new InteractionExpiredError();
    return details;
  } catch (err) {
    if (err instanceof errors.SessionNotFound) throw new InteractionExpiredError();
    throw err;
  }
}

export async function finishInteraction(deps: FlowDeps, ctx: Context, result: InteractionResults, merge = true): Promise<void> {
  const redirectTo = await deps.provider().interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
  ctx.status = 303;
  ctx.redirect(redirectTo);
}

export function timedProofs(successes: MethodSuccess[], at = Math.floor(Date.now() / 1000)): Proof[] {
  return successes.map(({ method, amr, factor, phishingResistant }) => ({ method, amr: [...amr], factor, phishingResistant, at }));
}

/** What the browser's existing session already proved, when it belongs to `accountId`. */
export async function existingProofs(deps: FlowDeps, details: InteractionDetails, accountId: string): Promise<Proof[]> {
  if (!details.session?.uid || details.session.accountId !== accountId) return [];
  const stored = await loadSessionProofs(deps.db, details.session.uid);
  return stored?.userId === accountId ? stored.proofs : [];
}

/**
 * Completes the login prompt with what the user just proved, added to what this session had
 * already proved (step-up proves only what is missing). The per-factor proofs travel in the
 * interaction result and are stored against the session uid when the provider resumes.
 */
export async function finishLogin(deps: FlowDeps, ctx: Context, details: InteractionDetails, accountId: string, successes: MethodSuccess[]): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const proofs = mergeProofs(await existingProofs(deps, details, accountId), timedProofs(successes, now));
  const { acr, amr, authTime } = assess(proofs, deps.assurance, now);
  const result: InteractionResults = { login: { accountId, acr, amr, ts: authTime, remember: true }, latchkey: { proofs } };
  await finishInteraction(deps, ctx, result, false);
}

export function clientName(details: InteractionDetails, client?: { clientName?: string; clientId: string }): string | undefined {
  return client?.clientName ?? client?.clientId ?? (details.params.client_id as string | undefined);
}
