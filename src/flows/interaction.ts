// Shared steps of every sign-in journey: load the pending OIDC interaction and finish it.
import Provider, { errors, type InteractionResults } from 'oidc-provider';
import type { Context } from 'koa';
import type { FlowDeps } from './context.ts';
import { assess, type Proof } from '../oidc/assurance.ts';
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

/** Completes the login prompt with what the user just proved. */
export async function finishLogin(deps: FlowDeps, ctx: Context, accountId: string, proofs: MethodSuccess[]): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const timed: Proof[] = proofs.map((p) => ({ ...p, at: now }));
  const { acr, amr, authTime } = assess(timed, deps.assurance, now);
  await finishInteraction(deps, ctx, { login: { accountId, acr, amr, ts: authTime, remember: true } }, false);
}

export function clientName(details: InteractionDetails, client?: { clientName?: string; clientId: string }): string | undefined {
  return client?.clientName ?? client?.clientId ?? (details.params.client_id as string | undefined);
}
